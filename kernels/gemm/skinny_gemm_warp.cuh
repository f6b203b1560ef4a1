// The skinny GEMM's per-warp dot products (skinny_gemm.h), shared by the
// dense skinny GEMM and the MoE expert GEMM (moe/moe_expert_gemm.h): one warp
// streams one weight row of k elements in 16-byte chunks that bypass L1, in
// groups of kSkinnyInFlight loads with the next group requested before the
// current one is used, and multiplies each chunk into every row's fp32
// accumulator; x rows are tiny and stay in L1/L2. Device code only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/common/streaming_load.cuh"

namespace tern::kernels {

inline constexpr int kSkinnyInFlight = 4;  // 16-byte weight chunks a lane loads per group

__device__ __forceinline__ float2 SkinnyPair(uint32_t bits, __half) {
  return __half22float2(*reinterpret_cast<const __half2*>(&bits));
}
__device__ __forceinline__ float2 SkinnyPair(uint32_t bits, __nv_bfloat16) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
}

template <typename T>
__device__ __forceinline__ float SkinnyDot8(const uint4& a, const uint4& b) {
  const uint32_t av[4] = {a.x, a.y, a.z, a.w};
  const uint32_t bv[4] = {b.x, b.y, b.z, b.w};
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 fa = SkinnyPair(av[i], T());
    const float2 fb = SkinnyPair(bv[i], T());
    sum = fmaf(fa.x, fb.x, sum);
    sum = fmaf(fa.y, fb.y, sum);
  }
  return sum;
}

template <typename T, int kMaxRows>
__device__ __forceinline__ void SkinnyAccumulateGroup(const uint4 (&wv)[kSkinnyInFlight], const T* __restrict__ x,
                                                      int64_t x_row_stride, int rows, int64_t c,
                                                      float (&acc)[kMaxRows]) {
#pragma unroll
  for (int r = 0; r < kMaxRows; ++r) {
    if (r < rows) {
      const uint4* xrow = reinterpret_cast<const uint4*>(x + r * x_row_stride);
#pragma unroll
      for (int u = 0; u < kSkinnyInFlight; ++u) acc[r] += SkinnyDot8<T>(wv[u], __ldg(xrow + c + 32 * u));
    }
  }
}

// acc[r] (this lane's share; the caller sums the warp) = the dot product of
// weight row `wrow` (k / 8 16-byte chunks, `chunks`) with x row r, for
// r < rows <= kMaxRows. `after_first_loads` runs once the first group's
// loads are issued and before x is read (a PDL wait for x's producer).
template <typename T, int kMaxRows, typename AfterFirstLoads>
__device__ __forceinline__ void SkinnyWarpDots(const T* __restrict__ x, int64_t x_row_stride, const uint4* wrow,
                                               int64_t chunks, int rows, float (&acc)[kMaxRows],
                                               AfterFirstLoads&& after_first_loads) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < kMaxRows; ++r) acc[r] = 0.0f;
  constexpr int64_t kGroup = 32 * kSkinnyInFlight;  // chunks one group of a warp covers
  const auto whole_group = [&](int64_t at) { return at + 32 * (kSkinnyInFlight - 1) < chunks; };
  int64_t c = lane;
  uint4 current[kSkinnyInFlight];
  bool have = whole_group(c);
  if (have) {
#pragma unroll
    for (int u = 0; u < kSkinnyInFlight; ++u) current[u] = LoadStreaming16(wrow + c + 32 * u);
  }
  after_first_loads();
  while (have) {
    uint4 next[kSkinnyInFlight];
    const bool have_next = whole_group(c + kGroup);
    if (have_next) {
#pragma unroll
      for (int u = 0; u < kSkinnyInFlight; ++u) next[u] = LoadStreaming16(wrow + c + kGroup + 32 * u);
    }
    SkinnyAccumulateGroup<T, kMaxRows>(current, x, x_row_stride, rows, c, acc);
    c += kGroup;
    have = have_next;
    if (have) {
#pragma unroll
      for (int u = 0; u < kSkinnyInFlight; ++u) current[u] = next[u];
    }
  }
  for (; c < chunks; c += 32) {
    const uint4 wv = LoadStreaming16(wrow + c);
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) {
      if (r < rows) acc[r] += SkinnyDot8<T>(wv, __ldg(reinterpret_cast<const uint4*>(x + r * x_row_stride) + c));
    }
  }
}

}  // namespace tern::kernels
