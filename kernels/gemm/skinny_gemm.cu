// One warp per output feature, kWarps features per block. A lane walks the
// weight row in 16-byte chunks (8 elements), in groups of kInFlight loads with
// the next group requested before the current one is used, and multiplies
// each chunk into every row's fp32 accumulator; x rows are tiny and stay in
// L1/L2. Warp shuffles reduce the row sums.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/gemm/skinny_gemm.h"

namespace tern::kernels {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kInFlight = 4;  // 16-byte weight chunks a lane loads per group

// Streams a 16-byte weight chunk past L1: it is used exactly once.
__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float2 Pair(uint32_t bits, __half) {
  return __half22float2(*reinterpret_cast<const __half2*>(&bits));
}
__device__ __forceinline__ float2 Pair(uint32_t bits, __nv_bfloat16) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
}

template <typename T>
__device__ __forceinline__ float Dot8(const uint4& a, const uint4& b) {
  const uint32_t av[4] = {a.x, a.y, a.z, a.w};
  const uint32_t bv[4] = {b.x, b.y, b.z, b.w};
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 fa = Pair(av[i], T());
    const float2 fb = Pair(bv[i], T());
    sum = fmaf(fa.x, fb.x, sum);
    sum = fmaf(fa.y, fb.y, sum);
  }
  return sum;
}

template <typename T, int kMaxRows>
__device__ __forceinline__ void AccumulateGroup(const uint4 (&wv)[kInFlight], const T* __restrict__ x,
                                                int64_t x_row_stride, int rows, int64_t c, float (&acc)[kMaxRows]) {
#pragma unroll
  for (int r = 0; r < kMaxRows; ++r) {
    if (r < rows) {
      const uint4* xrow = reinterpret_cast<const uint4*>(x + r * x_row_stride);
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) acc[r] += Dot8<T>(wv[u], __ldg(xrow + c + 32 * u));
    }
  }
}

// Weight loads run one group ahead of the arithmetic (two groups, 8 x 16
// bytes per lane, in flight). Launched with PDL: the first group is requested
// before waiting for the kernel that writes x, so the weight stream starts
// while that kernel drains.
template <typename T, int kMaxRows>
__global__ void __launch_bounds__(kThreads) SkinnyGemmKernel(SkinnyGemmParams p, const T* __restrict__ x,
                                                             const T* __restrict__ w, T* __restrict__ y) {
  PdlAllowDependents();
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t feature = int64_t(blockIdx.x) * kWarps + warp;
  if (feature >= p.n) return;  // touches no memory
  const int64_t chunks = p.k / 8;
  const uint4* wrow = reinterpret_cast<const uint4*>(w + feature * p.k);
  const int rows = int(p.rows);
  float acc[kMaxRows];
#pragma unroll
  for (int r = 0; r < kMaxRows; ++r) acc[r] = 0.0f;
  constexpr int64_t kGroup = 32 * kInFlight;  // chunks one group of a warp covers
  const auto whole_group = [&](int64_t at) { return at + 32 * (kInFlight - 1) < chunks; };
  int64_t c = lane;
  uint4 current[kInFlight];
  bool have = whole_group(c);
  if (have) {
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) current[u] = LoadStreaming(wrow + c + 32 * u);
  }
  PdlWaitForPrior();
  while (have) {
    uint4 next[kInFlight];
    const bool have_next = whole_group(c + kGroup);
    if (have_next) {
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) next[u] = LoadStreaming(wrow + c + kGroup + 32 * u);
    }
    AccumulateGroup<T, kMaxRows>(current, x, p.x_row_stride, rows, c, acc);
    c += kGroup;
    have = have_next;
    if (have) {
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) current[u] = next[u];
    }
  }
  for (; c < chunks; c += 32) {
    const uint4 wv = LoadStreaming(wrow + c);
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) {
      if (r < rows) acc[r] += Dot8<T>(wv, __ldg(reinterpret_cast<const uint4*>(x + r * p.x_row_stride) + c));
    }
  }
#pragma unroll
  for (int r = 0; r < kMaxRows; ++r) {
    if (r < rows) {
      const float sum = WarpSum(acc[r]);
      if (lane == 0) y[r * p.y_row_stride + feature] = FromFloat<T>(sum);
    }
  }
}

template <typename T>
cudaError_t Launch(const SkinnyGemmParams& p, const void* x, const void* w, void* y, cudaStream_t stream, bool pdl) {
  const dim3 grid(static_cast<unsigned>((p.n + kWarps - 1) / kWarps));
  const T* xt = static_cast<const T*>(x);
  const T* wt = static_cast<const T*>(w);
  T* yt = static_cast<T*>(y);
  const auto launch = [&](auto kernel) {
    return LaunchWithPdl(pdl, kernel, grid, dim3(kThreads), 0, stream, p, xt, wt, yt);
  };
  if (p.rows <= 1) return launch(SkinnyGemmKernel<T, 1>);
  if (p.rows <= 2) return launch(SkinnyGemmKernel<T, 2>);
  if (p.rows <= 4) return launch(SkinnyGemmKernel<T, 4>);
  return launch(SkinnyGemmKernel<T, 8>);
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool SkinnyGemmSupported(ScalarType type, const SkinnyGemmParams& p, const void* x, const void* w) {
  return type != ScalarType::kF32 && p.rows >= 0 && p.rows <= kSkinnyGemmMaxRows && p.n > 0 && p.k > 0 &&
         p.k % 8 == 0 && p.x_row_stride % 8 == 0 && p.y_row_stride >= p.n && Aligned16(x) && Aligned16(w) &&
         (p.n + kWarps - 1) / kWarps <= INT32_MAX;
}

cudaError_t LaunchSkinnyGemm(ScalarType type, const SkinnyGemmParams& params, const void* x, const void* w, void* y,
                             cudaStream_t stream, bool pdl) {
  if (params.rows == 0) return cudaSuccess;
  if (!SkinnyGemmSupported(type, params, x, w)) return cudaErrorNotSupported;
  return type == ScalarType::kF16 ? Launch<__half>(params, x, w, y, stream, pdl)
                                  : Launch<__nv_bfloat16>(params, x, w, y, stream, pdl);
}

}  // namespace tern::kernels
