// Device side of kernels/attention/kv_quant.h: quantizing one value for the
// append, dequantizing 8 stored bytes for attention. Rounds exactly as the
// CPU references do (the quantization is bit for bit the reference's).
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/attention/kv_quant.h"

namespace tern::kernels {

// int8: round_half_even(x * inv) clamped to [-127, 127].
__device__ __forceinline__ uint8_t QuantizeInt8(float x, float inv) {
  const float r = fminf(127.0f, fmaxf(-127.0f, rintf(x * inv)));
  return static_cast<uint8_t>(static_cast<int8_t>(r));
}

// fp8: e4m3(x * inv), nearest even, saturating at +-448.
__device__ __forceinline__ uint8_t QuantizeFp8(float x, float inv) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x * inv, __NV_SATFINITE, __NV_E4M3));
}

// The 8 stored values of `raw` (bytes in memory order) as floats, unscaled.
template <KvElement E>
__device__ __forceinline__ void DecodeKv8(const uint2& raw, float* out);

template <>
__device__ __forceinline__ void DecodeKv8<KvElement::kInt8>(const uint2& raw, float* out) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[i] = float(int32_t(raw.x << (24 - 8 * i)) >> 24);
    out[4 + i] = float(int32_t(raw.y << (24 - 8 * i)) >> 24);
  }
}

template <>
__device__ __forceinline__ void DecodeKv8<KvElement::kFp8E4M3>(const uint2& raw, float* out) {
  const uint32_t words[2] = {raw.x, raw.y};
#pragma unroll
  for (int w = 0; w < 2; ++w) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      // Two e4m3 values to two halves (exact), low byte first.
      const __half2_raw h =
          __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(words[w] >> (16 * i)), __NV_E4M3);
      const float2 f = __half22float2(__half2(h));
      out[4 * w + 2 * i] = f.x;
      out[4 * w + 2 * i + 1] = f.y;
    }
  }
}

// One stored element, unscaled.
template <KvElement E>
__device__ __forceinline__ float DecodeKv1(uint8_t bits) {
  if constexpr (E == KvElement::kInt8) {
    return float(static_cast<int8_t>(bits));
  } else {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw(bits, __NV_E4M3)));
  }
}

// The scale of a cached head row: fp8 per kv head, int8 per (slot, kv head).
template <KvElement E>
__device__ __forceinline__ float KvRowScale(const float* scales, int64_t slot, int32_t num_kv_heads,
                                            int32_t kv_head) {
  if constexpr (E == KvElement::kInt8) return scales[slot * num_kv_heads + kv_head];
  if constexpr (E == KvElement::kFp8E4M3) return scales[kv_head];
  return 1.0f;
}

}  // namespace tern::kernels
