// One block per token row; partial sums are reduced with warp shuffles and
// one shared-memory pass. Rows that fit (RowNormKernel) are held in registers
// and read once; others take the strided two-pass kernels.
#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/norm/rmsnorm.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ float BlockSum(float value) {
  __shared__ float warp_sums[kWarps];
  value = WarpSum(value);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  float total = lane < kWarps ? warp_sums[lane] : 0.0f;
  return WarpSum(total);  // valid in every thread
}

template <typename T>
__global__ void RmsNormKernel(RmsNormParams p, const T* x, const T* __restrict__ weight, T* y) {
  const T* row = x + blockIdx.x * p.x_row_stride;
  T* out = y + blockIdx.x * p.y_row_stride;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < p.hidden; i += kThreads) {
    const float v = ToFloat(row[i]);
    sum_sq += v * v;
  }
  const float total = BlockSum(sum_sq);
  const float inv_rms = rsqrtf(total / static_cast<float>(p.hidden) + p.eps);
  for (int64_t i = threadIdx.x; i < p.hidden; i += kThreads) {
    // As Hugging Face: normalize in fp32, round to T, then scale by the weight.
    const T normed = FromFloat<T>(ToFloat(row[i]) * inv_rms);
    out[i] = FromFloat<T>(ToFloat(normed) * ToFloat(weight[i]));
  }
}

// The sum is rounded to T before it is stored and before it is squared, so the
// result equals Add followed by RmsNorm bit for bit. The second pass re-reads
// the row this block just wrote, which is still in L1/L2.
template <typename T>
__global__ void AddRmsNormKernel(AddRmsNormParams p, T* x, const T* residual, const T* __restrict__ weight, T* y) {
  const RmsNormParams& n = p.norm;
  T* row = x + blockIdx.x * n.x_row_stride;
  const T* add = residual + blockIdx.x * p.residual_row_stride;
  T* out = y + blockIdx.x * n.y_row_stride;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < n.hidden; i += kThreads) {
    const T v = FromFloat<T>(ToFloat(row[i]) + ToFloat(add[i]));
    row[i] = v;
    const float f = ToFloat(v);
    sum_sq += f * f;
  }
  const float total = BlockSum(sum_sq);
  const float inv_rms = rsqrtf(total / static_cast<float>(n.hidden) + n.eps);
  for (int64_t i = threadIdx.x; i < n.hidden; i += kThreads) {
    const T normed = FromFloat<T>(ToFloat(row[i]) * inv_rms);
    out[i] = FromFloat<T>(ToFloat(normed) * ToFloat(weight[i]));
  }
}

// Rows of at most kThreads * kVecs * 16 bytes, 16-byte aligned: each thread
// keeps its kVecs 16-byte pieces of the row in registers, so x is read once.
// The same per-thread and block summation order serves both the plain and
// the fused-add form, so AddRmsNorm still equals Add followed by RmsNorm bit
// for bit. Launched with PDL: the weights are loaded before waiting for the
// kernel that writes x.
template <typename T, int kVecs, bool kAdd>
__global__ void __launch_bounds__(kThreads) RowNormKernel(AddRmsNormParams p, T* x, const T* residual,
                                                          const T* __restrict__ weight, T* y) {
  PdlAllowDependents();
  constexpr int kVec = 16 / sizeof(T);
  const RmsNormParams& n = p.norm;
  const auto index = [](int v) { return (int64_t(v) * kThreads + threadIdx.x) * kVec; };
  uint4 wv[kVecs], xv[kVecs];
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    if (index(v) < n.hidden) wv[v] = *reinterpret_cast<const uint4*>(weight + index(v));
  }
  PdlWaitForPrior();
  T* row = x + blockIdx.x * n.x_row_stride;
  float sum_sq = 0.0f;
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    if (index(v) >= n.hidden) continue;
    xv[v] = *reinterpret_cast<const uint4*>(row + index(v));
    T* e = reinterpret_cast<T*>(&xv[v]);
    if constexpr (kAdd) {
      const uint4 add = *reinterpret_cast<const uint4*>(residual + blockIdx.x * p.residual_row_stride + index(v));
      const T* a = reinterpret_cast<const T*>(&add);
#pragma unroll
      for (int i = 0; i < kVec; ++i) e[i] = FromFloat<T>(ToFloat(e[i]) + ToFloat(a[i]));
      *reinterpret_cast<uint4*>(row + index(v)) = xv[v];
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float f = ToFloat(e[i]);
      sum_sq += f * f;
    }
  }
  const float total = BlockSum(sum_sq);
  const float inv_rms = rsqrtf(total / static_cast<float>(n.hidden) + n.eps);
  T* out = y + blockIdx.x * n.y_row_stride;
#pragma unroll
  for (int v = 0; v < kVecs; ++v) {
    if (index(v) >= n.hidden) continue;
    const T* e = reinterpret_cast<const T*>(&xv[v]);
    const T* g = reinterpret_cast<const T*>(&wv[v]);
    uint4 o;
    T* r = reinterpret_cast<T*>(&o);
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const T normed = FromFloat<T>(ToFloat(e[i]) * inv_rms);
      r[i] = FromFloat<T>(ToFloat(normed) * ToFloat(g[i]));
    }
    *reinterpret_cast<uint4*>(out + index(v)) = o;
  }
}

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Launches RowNormKernel when the row fits its registers and every access is
// 16-byte aligned; returns false (nothing launched) otherwise.
template <typename T, bool kAdd>
bool LaunchRowNorm(const AddRmsNormParams& p, void* x, const void* residual, const void* weight, void* y,
                   cudaStream_t stream, bool pdl, cudaError_t* error) {
  constexpr int64_t kVec = 16 / sizeof(T);
  const RmsNormParams& n = p.norm;
  const bool strides_ok = n.hidden % kVec == 0 && n.x_row_stride % kVec == 0 && n.y_row_stride % kVec == 0 &&
                          (!kAdd || p.residual_row_stride % kVec == 0);
  const bool pointers_ok = Aligned16(x) && Aligned16(weight) && Aligned16(y) && (!kAdd || Aligned16(residual));
  if (!strides_ok || !pointers_ok) return false;
  const int64_t vecs = (n.hidden / kVec + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(n.num_tokens));
  const auto launch = [&](auto kernel) {
    *error = LaunchWithPdl(pdl, kernel, grid, dim3(kThreads), 0, stream, p, static_cast<T*>(x),
                           static_cast<const T*>(residual), static_cast<const T*>(weight), static_cast<T*>(y));
    return true;
  };
  if (vecs <= 1) return launch(RowNormKernel<T, 1, kAdd>);
  if (vecs <= 2) return launch(RowNormKernel<T, 2, kAdd>);
  if (vecs <= 4) return launch(RowNormKernel<T, 4, kAdd>);
  return false;
}

}  // namespace

cudaError_t LaunchAddRmsNorm(ScalarType type, const AddRmsNormParams& params, void* x, const void* residual,
                             const void* weight, void* y, cudaStream_t stream, bool pdl) {
  const RmsNormParams& n = params.norm;
  if (n.num_tokens == 0) return cudaSuccess;
  if (n.num_tokens < 0 || n.hidden <= 0 || n.num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  cudaError_t error = cudaSuccess;
  bool launched = false;
  TERN_DISPATCH_SCALAR(type, T, launched = LaunchRowNorm<T, true>(params, x, residual, weight, y, stream, pdl, &error));
  if (launched) return error;
  TERN_DISPATCH_SCALAR(type, T,
                       AddRmsNormKernel<T><<<static_cast<unsigned>(n.num_tokens), kThreads, 0, stream>>>(
                           params, static_cast<T*>(x), static_cast<const T*>(residual),
                           static_cast<const T*>(weight), static_cast<T*>(y)));
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(ScalarType type, const RmsNormParams& params, const void* x, const void* weight,
                          void* y, cudaStream_t stream, bool pdl) {
  if (params.num_tokens == 0) return cudaSuccess;
  if (params.num_tokens < 0 || params.hidden <= 0 || params.num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  cudaError_t error = cudaSuccess;
  bool launched = false;
  const AddRmsNormParams plain{params, 0};
  TERN_DISPATCH_SCALAR(type, T,
                       launched = LaunchRowNorm<T, false>(plain, const_cast<void*>(x), nullptr, weight, y, stream,
                                                          pdl, &error));
  if (launched) return error;
  TERN_DISPATCH_SCALAR(type, T,
                       RmsNormKernel<T><<<static_cast<unsigned>(params.num_tokens), kThreads, 0, stream>>>(
                           params, static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<T*>(y)));
  return cudaGetLastError();
}

}  // namespace tern::kernels
