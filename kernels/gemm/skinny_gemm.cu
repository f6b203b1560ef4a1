// One warp per output feature, kWarps features per block, each warp's dot
// products as skinny_gemm_warp.cuh streams them; warp shuffles reduce the
// row sums.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/gemm/skinny_gemm.h"
#include "kernels/gemm/skinny_gemm_warp.cuh"

namespace tern::kernels {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;

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
  const uint4* wrow = reinterpret_cast<const uint4*>(w + feature * p.k);
  float acc[kMaxRows];
  SkinnyWarpDots<T, kMaxRows>(x, p.x_row_stride, wrow, p.k / 8, int(p.rows), acc, [] { PdlWaitForPrior(); });
  const int rows = int(p.rows);
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
