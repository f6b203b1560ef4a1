// One block per token row; each thread strides over the row, partial sums are
// reduced with warp shuffles and one shared-memory pass.
#include "kernels/common/dispatch.cuh"
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

}  // namespace

cudaError_t LaunchAddRmsNorm(ScalarType type, const AddRmsNormParams& params, void* x, const void* residual,
                             const void* weight, void* y, cudaStream_t stream) {
  const RmsNormParams& n = params.norm;
  if (n.num_tokens == 0) return cudaSuccess;
  if (n.num_tokens < 0 || n.hidden <= 0 || n.num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       AddRmsNormKernel<T><<<static_cast<unsigned>(n.num_tokens), kThreads, 0, stream>>>(
                           params, static_cast<T*>(x), static_cast<const T*>(residual),
                           static_cast<const T*>(weight), static_cast<T*>(y)));
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(ScalarType type, const RmsNormParams& params, const void* x, const void* weight,
                          void* y, cudaStream_t stream) {
  if (params.num_tokens == 0) return cudaSuccess;
  if (params.num_tokens < 0 || params.hidden <= 0 || params.num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       RmsNormKernel<T><<<static_cast<unsigned>(params.num_tokens), kThreads, 0, stream>>>(
                           params, static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<T*>(y)));
  return cudaGetLastError();
}

}  // namespace tern::kernels
