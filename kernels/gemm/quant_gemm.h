// Quantized linear layers: the arithmetic each weight scheme computes, as CPU
// references that the CPU backend runs and that GPU kernels are checked
// against. y[m, n] = sum_i x[m, i] * W[n, i] + bias[n], W stored
// [n = out_features, k = in_features] in one of these forms:
//
// Weight-only (W4A16, W8A16): unsigned codes, bits = 4 or 8, with a scale and
// a zero code per (output row, group of group_size consecutive columns):
//   W[n, i] = (code[n, i] - zero[n, i / group_size]) * scale[n, i / group_size]
// evaluated in fp32 (exact for fp16 scales: a small integer times an fp16).
// codes: 8 bits [n, k] one byte each; 4 bits [n, k / 2], column 2j in the low
// nibble of byte j and column 2j + 1 in the high nibble. scales fp32 and zeros
// uint8 [n, k / group_size]; zero codes lie in [0, 2^bits] (GPTQ's original
// format can yield 2^bits, see runtime/model/README.md). With act-order
// checkpoints the columns are stored permuted so that groups are contiguous:
// column j holds input channel input_order[j] (input_order [k], or null for
// the identity), and a kernel gathers x's columns in that order.
//
// W8A8 (INT8 or FP8 E4M3): weights symmetric, one fp32 scale per output row;
// activations quantized per row (token) at run time, or with one static
// scale, after an optional division by per-channel smoothing factors
// (SmoothQuant):
//   x'[m, i] = x[m, i] / smoothing[i]                      (smoothing null: x)
//   dynamic: absmax = max_i |x'[m, i]|
//     INT8: s[m] = absmax / 127, inv = absmax > 0 ? 127 / absmax : 0
//     FP8:  s[m] = max(absmax / 448, 1 / (448 * 512)),  inv = 1 / s[m]
//   static:  s[m] = static_scale, inv = 1 / static_scale
//   INT8: q = clamp(round_half_even(x' * inv), -128, 127);  FP8: q = e4m3(x' * inv)
//   (nearest, ties to even, saturating at +-448: kernels/common/float8.h)
// then the dot products of the quantized values, INT8 summed exactly in
// int32, FP8 products (exact in fp32) summed in fp32, and the scales applied
// once per output in the epilogue:
//   y[m, n] = s[m] * (w_scale[n] * float(acc[m, n])) + bias[n]
// A kernel that fuses the activation quantization into the op producing x
// (RMSNorm, SwiGLU) must reproduce q and s[m] exactly as above.
#pragma once

#include <cstdint>

namespace tern::kernels {

struct WeightOnlyParams {
  int64_t n = 0;           // output features
  int64_t k = 0;           // input features
  int64_t group_size = 0;  // columns per scale group; divides k
  int32_t bits = 4;        // 4 or 8
};

// w [n, k] fp32 = the dequantized weight in stored column order.
void DequantizeWeightOnlyReference(const WeightOnlyParams& params, const uint8_t* codes, const float* scales,
                                   const uint8_t* zeros, float* w);

// y [rows, n] (row stride y_stride) = x' W^T + bias, x [rows, k] (row stride
// x_stride) gathered by input_order (null: identity), accumulated in double.
// bias [n] or null.
void WeightOnlyGemmReference(const WeightOnlyParams& params, int64_t rows, const float* x, int64_t x_stride,
                             const int32_t* input_order, const uint8_t* codes, const float* scales,
                             const uint8_t* zeros, const float* bias, float* y, int64_t y_stride);

enum class ActivationQuant { kInt8, kFp8E4M3 };

struct ActivationQuantParams {
  ActivationQuant type = ActivationQuant::kInt8;
  int64_t rows = 0;
  int64_t k = 0;
  int64_t x_stride = 0;              // elements between rows of x
  float static_scale = 0.0f;         // > 0: one static scale; 0: dynamic per row
  const float* smoothing = nullptr;  // [k] divisors, or null
};

// q [rows, k] bytes (INT8 two's complement, or e4m3 bits) and row_scales
// [rows] from x, as the header comment defines them.
void QuantizeActivationsReference(const ActivationQuantParams& params, const float* x, uint8_t* q, float* row_scales);

struct W8A8GemmParams {
  ActivationQuant type = ActivationQuant::kInt8;
  int64_t rows = 0;
  int64_t n = 0;
  int64_t k = 0;
  int64_t y_stride = 0;
};

// y [rows, n] from quantized activations xq [rows, k] with row_scales [rows]
// and weights wq [n, k] with w_scales [n]; bias [n] or null. INT8 sums are
// exact; FP8 sums are taken in double here. Kernels' FP8 sums differ: on
// Hopper tensor cores each 32-input MMA step aligns its products and the
// running sum to the largest of them and keeps 13 fraction bits
// (truncating), and cuBLASLt adds those partial sums in fp32 every 128
// inputs, so compare them with a tolerance of about (k / 32) * 2^-13 of the
// output's scale.
void W8A8GemmReference(const W8A8GemmParams& params, const uint8_t* xq, const float* row_scales, const uint8_t* wq,
                       const float* w_scales, const float* bias, float* y);

// The epilogue shared by every W8A8 implementation.
inline float W8A8Epilogue(float acc, float row_scale, float w_scale, float bias) {
  return row_scale * (w_scale * acc) + bias;
}

}  // namespace tern::kernels
