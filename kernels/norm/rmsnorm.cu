// One block per token row; each thread strides over the row, partial sums are
// reduced with warp shuffles and one shared-memory pass.
#include "kernels/norm/rmsnorm.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ float BlockSum(float value) {
  __shared__ float warp_sums[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  float total = lane < kWarps ? warp_sums[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_xor_sync(0xffffffffu, total, offset);
  return total;  // valid in every thread
}

__global__ void RmsNormF32Kernel(RmsNormParams p, const float* __restrict__ x,
                                 const float* __restrict__ weight, float* y) {
  const float* row = x + blockIdx.x * p.x_row_stride;
  float* out = y + blockIdx.x * p.y_row_stride;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < p.hidden; i += kThreads) sum_sq += row[i] * row[i];
  const float total = BlockSum(sum_sq);
  const float inv_rms = rsqrtf(total / static_cast<float>(p.hidden) + p.eps);
  for (int64_t i = threadIdx.x; i < p.hidden; i += kThreads) out[i] = row[i] * inv_rms * weight[i];
}

}  // namespace

cudaError_t LaunchRmsNormF32(const RmsNormParams& params, const float* x, const float* weight,
                             float* y, cudaStream_t stream) {
  if (params.num_tokens == 0) return cudaSuccess;
  if (params.num_tokens < 0 || params.hidden <= 0 || params.num_tokens > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  RmsNormF32Kernel<<<static_cast<unsigned>(params.num_tokens), kThreads, 0, stream>>>(params, x, weight, y);
  return cudaGetLastError();
}

}  // namespace tern::kernels
