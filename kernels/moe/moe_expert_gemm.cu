// One warp per output feature, kWarps features of one expert per block
// (grid: feature blocks x experts); the expert's rows in chunks of
// kSkinnyGemmMaxRows, each chunk one pass over the block's weight rows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/gemm/skinny_gemm.h"
#include "kernels/gemm/skinny_gemm_warp.cuh"
#include "kernels/moe/moe_expert_gemm.h"
#include "kernels/moe/moe_routing.h"

namespace tern::kernels {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;

template <typename T, int kMaxRows>
__global__ void __launch_bounds__(kThreads)
    MoeExpertGemmKernel(MoeExpertGemmParams p, const T* __restrict__ x, const void* const* __restrict__ weights,
                        const int32_t* __restrict__ offsets, T* __restrict__ y) {
  PdlAllowDependents();
  PdlWaitForPrior();  // the routing wrote the offsets, the gather x
  const int32_t e = int32_t(blockIdx.y);
  const int64_t begin = offsets[e];
  const int64_t rows = offsets[e + 1] - begin;
  const int64_t feature = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (rows <= 0 || feature >= p.n) return;  // an idle expert reads no weight
  const uint4* wrow = reinterpret_cast<const uint4*>(static_cast<const T*>(weights[e]) + feature * p.k);
  const int lane = threadIdx.x % 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxRows) {
    const int chunk = int(rows - r0 < kMaxRows ? rows - r0 : kMaxRows);
    const T* xr = x + (begin + r0) * p.x_row_stride;
    float acc[kMaxRows];
    SkinnyWarpDots<T, kMaxRows>(xr, p.x_row_stride, wrow, p.k / 8, chunk, acc, [] {});
    T* yr = y + (begin + r0) * p.y_row_stride + feature;
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) {
      if (r < chunk) {
        const float sum = WarpSum(acc[r]);
        if (lane == 0) yr[r * p.y_row_stride] = FromFloat<T>(sum);
      }
    }
  }
}

template <typename T>
cudaError_t Launch(const MoeExpertGemmParams& p, const void* x, const void* const* weights, const int32_t* offsets,
                   void* y, cudaStream_t stream, bool pdl) {
  const dim3 grid(unsigned((p.n + kWarps - 1) / kWarps), unsigned(p.num_experts));
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  const auto launch = [&](auto kernel) {
    return LaunchWithPdl(pdl, kernel, grid, dim3(kThreads), 0, stream, p, xt, weights, offsets, yt);
  };
  // No expert has more rows than the step: fewer accumulators for small steps.
  if (p.rows <= 1) return launch(MoeExpertGemmKernel<T, 1>);
  if (p.rows <= 2) return launch(MoeExpertGemmKernel<T, 2>);
  if (p.rows <= 4) return launch(MoeExpertGemmKernel<T, 4>);
  return launch(MoeExpertGemmKernel<T, kSkinnyGemmMaxRows>);
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool MoeExpertGemmSupported(ScalarType type, const MoeExpertGemmParams& p, const void* x) {
  return type != ScalarType::kF32 && p.rows >= 0 && p.num_experts >= 1 && p.num_experts <= kMoeMaxExperts &&
         p.n > 0 && p.k > 0 && p.k % 8 == 0 && p.x_row_stride % 8 == 0 && p.x_row_stride >= p.k &&
         p.y_row_stride >= p.n && Aligned16(x) && (p.n + kWarps - 1) / kWarps <= INT32_MAX;
}

cudaError_t LaunchMoeExpertGemm(ScalarType type, const MoeExpertGemmParams& params, const void* x,
                                const void* const* weights, const int32_t* expert_offsets, void* y,
                                cudaStream_t stream, bool pdl) {
  if (params.rows == 0) return cudaSuccess;
  if (!MoeExpertGemmSupported(type, params, x)) return cudaErrorNotSupported;
  return type == ScalarType::kF16 ? Launch<__half>(params, x, weights, expert_offsets, y, stream, pdl)
                                  : Launch<__nv_bfloat16>(params, x, weights, expert_offsets, y, stream, pdl);
}

}  // namespace tern::kernels
