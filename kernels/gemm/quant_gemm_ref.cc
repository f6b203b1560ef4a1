#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/float8.h"
#include "kernels/gemm/quant_gemm.h"

namespace tern::kernels {
namespace {

inline int32_t CodeAt(const uint8_t* codes, int32_t bits, int64_t k, int64_t row, int64_t col) {
  if (bits == 8) return codes[row * k + col];
  const uint8_t byte = codes[row * (k / 2) + col / 2];
  return (col & 1) ? (byte >> 4) : (byte & 0xf);
}

inline float Decode(ActivationQuant type, uint8_t q) {
  return type == ActivationQuant::kInt8 ? float(int8_t(q)) : Fp8E4M3ToFloat(q);
}

}  // namespace

void DequantizeWeightOnlyReference(const WeightOnlyParams& p, const uint8_t* codes, const float* scales,
                                   const uint8_t* zeros, float* w) {
  const int64_t groups = p.k / p.group_size;
  for (int64_t r = 0; r < p.n; ++r) {
    for (int64_t c = 0; c < p.k; ++c) {
      const int64_t g = r * groups + c / p.group_size;
      w[r * p.k + c] = float(CodeAt(codes, p.bits, p.k, r, c) - int32_t(zeros[g])) * scales[g];
    }
  }
}

void WeightOnlyGemmReference(const WeightOnlyParams& p, int64_t rows, const float* x, int64_t x_stride,
                             const int32_t* input_order, const uint8_t* codes, const float* scales,
                             const uint8_t* zeros, const float* bias, float* y, int64_t y_stride) {
  std::vector<float> w(size_t(p.n * p.k));
  DequantizeWeightOnlyReference(p, codes, scales, zeros, w.data());
  for (int64_t m = 0; m < rows; ++m) {
    const float* xr = x + m * x_stride;
    for (int64_t n = 0; n < p.n; ++n) {
      double sum = 0.0;
      for (int64_t j = 0; j < p.k; ++j) {
        const int64_t i = input_order != nullptr ? input_order[j] : j;
        sum += double(xr[i]) * double(w[n * p.k + j]);
      }
      y[m * y_stride + n] = float(sum) + (bias != nullptr ? bias[n] : 0.0f);
    }
  }
}

void QuantizeActivationsReference(const ActivationQuantParams& p, const float* x, uint8_t* q, float* row_scales) {
  std::vector<float> row(size_t(p.k));
  for (int64_t m = 0; m < p.rows; ++m) {
    const float* xr = x + m * p.x_stride;
    float absmax = 0.0f;
    for (int64_t i = 0; i < p.k; ++i) {
      row[i] = p.smoothing != nullptr ? xr[i] / p.smoothing[i] : xr[i];
      absmax = std::max(absmax, std::fabs(row[i]));
    }
    float scale, inv;
    if (p.static_scale > 0.0f) {
      scale = p.static_scale;
      inv = 1.0f / scale;
    } else if (p.type == ActivationQuant::kInt8) {
      scale = absmax / 127.0f;
      inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
    } else {
      scale = std::max(absmax / kFp8E4M3Max, 1.0f / (kFp8E4M3Max * 512.0f));
      inv = 1.0f / scale;
    }
    row_scales[m] = scale;
    uint8_t* qr = q + m * p.k;
    if (p.type == ActivationQuant::kInt8) {
      for (int64_t i = 0; i < p.k; ++i) {
        const float v = std::clamp(std::nearbyint(row[i] * inv), -128.0f, 127.0f);
        qr[i] = uint8_t(int8_t(v));
      }
    } else {
      for (int64_t i = 0; i < p.k; ++i) qr[i] = FloatToFp8E4M3(row[i] * inv);
    }
  }
}

void W8A8GemmReference(const W8A8GemmParams& p, const uint8_t* xq, const float* row_scales, const uint8_t* wq,
                       const float* w_scales, const float* bias, float* y) {
  double fp8_values[256];
  for (int code = 0; code < 256; ++code) fp8_values[code] = double(Decode(ActivationQuant::kFp8E4M3, uint8_t(code)));
  for (int64_t m = 0; m < p.rows; ++m) {
    for (int64_t n = 0; n < p.n; ++n) {
      float acc;
      if (p.type == ActivationQuant::kInt8) {
        int32_t sum = 0;
        for (int64_t i = 0; i < p.k; ++i) sum += int32_t(int8_t(xq[m * p.k + i])) * int32_t(int8_t(wq[n * p.k + i]));
        acc = float(sum);
      } else {
        // The e4m3 values through a table (the same values Decode gives).
        double sum = 0.0;
        const uint8_t* xr = xq + m * p.k;
        const uint8_t* wr = wq + n * p.k;
        for (int64_t i = 0; i < p.k; ++i) sum += fp8_values[xr[i]] * fp8_values[wr[i]];
        acc = float(sum);
      }
      y[m * p.y_stride + n] = W8A8Epilogue(acc, row_scales[m], w_scales[n], bias != nullptr ? bias[n] : 0.0f);
    }
  }
}

}  // namespace tern::kernels
