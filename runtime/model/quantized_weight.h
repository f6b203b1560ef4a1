// A linear layer's weights as a typed scheme, in the layout tern's kernels
// read (kernels/gemm/quant_gemm.h states the arithmetic of each scheme).
//
//   kDense      float weights (fp32/fp16/bf16 as stored; the backend converts)
//   kW8A16      8-bit weight codes, group-wise scale and zero; fp activations
//   kW4A16      4-bit weight codes, group-wise scale and zero; fp activations
//   kW8A8Int8   int8 weights, per-output-channel scale; int8 activations
//               quantized per token at run time (or one static scale)
//   kW8A8Fp8    float8 e4m3 weights, per-output-channel scale; e4m3
//               activations quantized per token (or one static scale)
//
// Checkpoint loaders (quantized_checkpoint.h) and the round-to-nearest
// quantizer (rtn_quantizer.h) produce QuantizedLinear values once at load;
// Backend::PrepareQuantizedLinear turns them into device objects.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::runtime {

enum class WeightScheme { kDense, kW8A16, kW4A16, kW8A8Int8, kW8A8Fp8 };

// "dense", "w8a16", "w4a16", "w8a8-int8", "w8a8-fp8".
const char* WeightSchemeName(WeightScheme scheme);
// Bits per stored weight: 16 for dense (nominal), 8 or 4.
int32_t WeightSchemeBits(WeightScheme scheme);
bool IsWeightOnly(WeightScheme scheme);  // kW8A16, kW4A16
bool IsW8A8(WeightScheme scheme);        // kW8A8Int8, kW8A8Fp8

// A scheme with its parameters: what one linear layer is (or is asked to be).
struct LinearScheme {
  WeightScheme scheme = WeightScheme::kDense;
  // Weight-only: input channels per scale group; 0 means one group spanning
  // all inputs (per output channel). Unused for W8A8 (always per channel).
  int64_t group_size = 0;
  // Weight-only: true when every zero code is the midpoint 2^(bits-1).
  bool symmetric = true;

  // "w4a16-g128", "w8a16" (per channel), "w4a16-g128-asym", "w8a8-fp8", "dense".
  std::string ToString() const;
  bool operator==(const LinearScheme& other) const = default;
};

struct QuantizedLinear {
  LinearScheme scheme;  // scheme.scheme != kDense
  int64_t out_features = 0;
  int64_t in_features = 0;
  // Weight-only: group_size (== in_features when per channel), so
  // in_features / group_size groups per row. W8A8: in_features.
  int64_t group_size = 0;

  // kW4A16: [out, in / 2] bytes, unsigned 4-bit codes, column 2j in the low
  //         nibble of byte j, 2j + 1 in the high nibble.
  // kW8A16: [out, in] unsigned 8-bit codes.
  // kW8A8Int8: [out, in] int8 (two's complement).
  // kW8A8Fp8:  [out, in] float8 e4m3 bits.
  std::vector<uint8_t> weight;
  // [out, num_groups] fp32 (W8A8: [out]). Checkpoint scales are fp16, bf16
  // or fp32; fp32 holds each exactly.
  std::vector<float> scales;
  // Weight-only: [out, num_groups] zero codes in [0, 2^bits]. Empty for W8A8.
  std::vector<uint8_t> zeros;
  // Act-order (GPTQ desc_act): stored column j is input channel
  // input_order[j], a permutation of [0, in) under which groups are
  // contiguous. Empty: the identity.
  std::vector<int32_t> input_order;
  // W8A8: one static activation scale, or 0 for dynamic per-token scales.
  float input_scale = 0.0f;
  // W8A8: per-input-channel divisors applied before quantizing the
  // activations (SmoothQuant smoothing not folded into a norm). Empty: none.
  std::vector<float> input_smoothing;
  // [out] or empty.
  std::vector<float> bias;

  int64_t num_groups() const { return group_size > 0 ? in_features / group_size : 0; }
  // Bytes of weight, scales, zeros and order (what a device would hold).
  size_t StorageBytes() const;
};

// Checks sizes and value ranges against the scheme; INVALID_ARGUMENT naming
// `what` (the layer) and the broken field.
absl::Status ValidateQuantizedLinear(const QuantizedLinear& linear, const std::string& what);

// The fp32 weight [out, in] the layer computes with, in the original input
// order (input_order undone). Weight-only: (code - zero) * scale; W8A8:
// value * scale.
std::vector<float> DequantizeLinear(const QuantizedLinear& linear);

// The rows-concatenation of `parts` (fused QKV, fused gate/up): same scheme,
// group size, input order and smoothing required; a static input scale
// becomes the largest of the parts' (the fused layer quantizes its input
// once), as vLLM does. INVALID_ARGUMENT naming `names[i]` otherwise.
absl::StatusOr<QuantizedLinear> ConcatQuantizedLinears(std::vector<QuantizedLinear> parts,
                                                       const std::vector<std::string>& names);

}  // namespace tern::runtime
