// Device-side helpers shared by the .cu files: float conversion for each
// ScalarType and the dispatch macro that turns a runtime ScalarType into a
// template argument.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/scalar_type.h"

namespace tern::kernels {

template <typename T>
__device__ __forceinline__ float ToFloat(T v);
template <>
__device__ __forceinline__ float ToFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ float ToFloat<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

}  // namespace tern::kernels

// TERN_DISPATCH_SCALAR(type, T, ...): runs the body with T bound to the C++
// type of `type`.
#define TERN_DISPATCH_SCALAR(type, T, ...)                  \
  switch (type) {                                           \
    case ::tern::kernels::ScalarType::kF32: {               \
      using T = float;                                      \
      __VA_ARGS__;                                          \
      break;                                                \
    }                                                       \
    case ::tern::kernels::ScalarType::kF16: {               \
      using T = __half;                                     \
      __VA_ARGS__;                                          \
      break;                                                \
    }                                                       \
    case ::tern::kernels::ScalarType::kBF16: {              \
      using T = __nv_bfloat16;                              \
      __VA_ARGS__;                                          \
      break;                                                \
    }                                                       \
  }
