#include <algorithm>
#include <cstdint>

#include "kernels/common/dispatch.cuh"
#include "kernels/dit/dit_cache_kernels.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;

// Blocks stride over (sample, row) pairs, threads over columns.
template <typename T>
__global__ void CopySamplesKernel(int32_t count, const int32_t* from, const int32_t* to, int64_t rows_per_sample,
                                  int64_t cols, const T* src, int64_t src_stride, T* dst, int64_t dst_stride) {
  const int64_t total = int64_t(count) * rows_per_sample;
  for (int64_t k = blockIdx.x; k < total; k += gridDim.x) {
    const int64_t i = k / rows_per_sample;
    const int64_t r = k - i * rows_per_sample;
    const T* s = src + (int64_t(from[i]) * rows_per_sample + r) * src_stride;
    T* d = dst + (int64_t(to[i]) * rows_per_sample + r) * dst_stride;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
  }
}

template <typename T>
__global__ void SubtractKernel(int64_t rows, int64_t cols, const T* x, int64_t x_stride, const T* y,
                               int64_t y_stride, T* out, int64_t out_stride) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      out[r * out_stride + c] = FromFloat<T>(ToFloat(x[r * x_stride + c]) - ToFloat(y[r * y_stride + c]));
    }
  }
}

unsigned Blocks(int64_t rows) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(rows, 1 << 20))); }

}  // namespace

cudaError_t LaunchDitCopySamples(ScalarType type, int32_t count, const int32_t* from, const int32_t* to,
                                 int64_t rows_per_sample, int64_t cols, const void* src, int64_t src_stride, void* dst,
                                 int64_t dst_stride, cudaStream_t stream) {
  if (count < 0 || rows_per_sample < 0 || cols < 0) return cudaErrorInvalidValue;
  if (count == 0 || rows_per_sample == 0 || cols == 0) return cudaSuccess;
  const unsigned blocks = Blocks(int64_t(count) * rows_per_sample);
  TERN_DISPATCH_SCALAR(type, T,
                       CopySamplesKernel<T><<<blocks, kThreads, 0, stream>>>(
                           count, from, to, rows_per_sample, cols, static_cast<const T*>(src), src_stride,
                           static_cast<T*>(dst), dst_stride));
  return cudaGetLastError();
}

cudaError_t LaunchDitSubtract(ScalarType type, int64_t rows, int64_t cols, const void* x, int64_t x_stride,
                              const void* y, int64_t y_stride, void* out, int64_t out_stride, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       SubtractKernel<T><<<Blocks(rows), kThreads, 0, stream>>>(
                           rows, cols, static_cast<const T*>(x), x_stride, static_cast<const T*>(y), y_stride,
                           static_cast<T*>(out), out_stride));
  return cudaGetLastError();
}

}  // namespace tern::kernels
