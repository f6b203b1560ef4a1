// Device halves of per-token activation quantization (quant_gemm.h's
// QuantizeActivationsReference), shared by the W8A8 quantizer
// (kernels/gemm/w8a8.cu) and the producers that write quantized rows
// themselves (the DiT's LayerNorm + modulate, kernels/dit/dit_kernels.cu), so
// both give the reference's scales and codes bit for bit: the fp32
// expressions of quant_gemm.h, IEEE division, rintf (half to even), and
// __nv_cvt_float_to_fp8 (nearest even, saturating at 448).
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/common/float8.h"
#include "kernels/gemm/quant_gemm.h"

namespace tern::kernels {

// A row's dynamic scale and its inverse from the row's largest magnitude.
__device__ __forceinline__ void DynamicRowScale(ActivationQuant type, float absmax, float* scale, float* inv) {
  if (type == ActivationQuant::kInt8) {
    *scale = absmax / 127.0f;
    *inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
  } else {
    *scale = fmaxf(absmax / kFp8E4M3Max, 1.0f / (kFp8E4M3Max * 512.0f));
    *inv = 1.0f / *scale;
  }
}

// One value's code: INT8 two's complement, or e4m3 bits.
__device__ __forceinline__ uint8_t QuantCode(ActivationQuant type, float v, float inv) {
  if (type == ActivationQuant::kInt8) return uint8_t(int8_t(fminf(fmaxf(rintf(v * inv), -128.0f), 127.0f)));
  return uint8_t(__nv_cvt_float_to_fp8(v * inv, __NV_SATFINITE, __NV_E4M3));
}

}  // namespace tern::kernels
