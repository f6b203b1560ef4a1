#include "kernels/dit/dit_softmax.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/dispatch.cuh"

namespace tern::kernels {
namespace {

constexpr int kSoftmaxThreads = 256;
// Scores a thread keeps in registers between the passes: rows up to
// 256 * 16 = 4,096 columns (a 64x64 latent's pixels) are read once.
constexpr int kSoftmaxCached = 16;

__device__ float BlockReduce(float v, bool max, float* shared) {
  v = max ? WarpMax(v) : WarpSum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read from the previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = shared[0];
  for (int w = 1; w < kSoftmaxThreads / 32; ++w) r = max ? fmaxf(r, shared[w]) : r + shared[w];
  return r;
}

template <typename T>
__global__ void __launch_bounds__(kSoftmaxThreads)
    RowSoftmaxKernel(int64_t cols, const float* __restrict__ s, int64_t s_stride, T* __restrict__ p,
                     int64_t p_stride) {
  __shared__ float partial[kSoftmaxThreads / 32];
  const int64_t row = blockIdx.x;
  const float* sr = s + row * s_stride;
  T* pr = p + row * p_stride;
  float cached[kSoftmaxCached];
  float max = -INFINITY;
#pragma unroll
  for (int i = 0; i < kSoftmaxCached; ++i) {
    const int64_t c = threadIdx.x + int64_t(i) * kSoftmaxThreads;
    cached[i] = c < cols ? sr[c] : -INFINITY;
    max = fmaxf(max, cached[i]);
  }
  for (int64_t c = threadIdx.x + int64_t(kSoftmaxCached) * kSoftmaxThreads; c < cols; c += kSoftmaxThreads) {
    max = fmaxf(max, sr[c]);
  }
  max = BlockReduce(max, /*max=*/true, partial);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kSoftmaxCached; ++i) {
    const int64_t c = threadIdx.x + int64_t(i) * kSoftmaxThreads;
    if (c < cols) sum += expf(cached[i] - max);
  }
  for (int64_t c = threadIdx.x + int64_t(kSoftmaxCached) * kSoftmaxThreads; c < cols; c += kSoftmaxThreads) {
    sum += expf(sr[c] - max);
  }
  sum = BlockReduce(sum, /*max=*/false, partial);
#pragma unroll
  for (int i = 0; i < kSoftmaxCached; ++i) {
    const int64_t c = threadIdx.x + int64_t(i) * kSoftmaxThreads;
    if (c < cols) pr[c] = FromFloat<T>(expf(cached[i] - max) / sum);
  }
  for (int64_t c = threadIdx.x + int64_t(kSoftmaxCached) * kSoftmaxThreads; c < cols; c += kSoftmaxThreads) {
    pr[c] = FromFloat<T>(expf(sr[c] - max) / sum);
  }
}

}  // namespace

cudaError_t LaunchDitRowSoftmax(ScalarType type, int64_t rows, int64_t cols, const float* s, int64_t s_stride,
                                void* p, int64_t p_stride, cudaStream_t stream) {
  if (rows < 0 || cols < 1 || s_stride < cols || p_stride < cols || rows > 0x7fffffff) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T, {
    RowSoftmaxKernel<T><<<unsigned(rows), kSoftmaxThreads, 0, stream>>>(cols, s, s_stride, static_cast<T*>(p),
                                                                        p_stride);
  });
  return cudaGetLastError();
}

}  // namespace tern::kernels
