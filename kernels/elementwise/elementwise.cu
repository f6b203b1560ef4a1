#include "kernels/common/dispatch.cuh"
#include "kernels/elementwise/elementwise.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;

dim3 RowGrid(int64_t rows, int64_t cols) {
  return dim3(static_cast<unsigned>(std::min<int64_t>((cols + kThreads - 1) / kThreads, 32)),
              static_cast<unsigned>(rows));
}

#define TERN_FOR_COLS(cols) \
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < (cols); c += int64_t(gridDim.x) * blockDim.x)

template <typename T>
__global__ void EmbeddingKernel(int64_t width, const int32_t* ids, const T* table, T* out, int64_t out_stride) {
  const int64_t t = blockIdx.y;
  const T* src = table + int64_t(ids[t]) * width;
  TERN_FOR_COLS(width) out[t * out_stride + c] = src[c];
}

template <typename T>
__global__ void AddKernel(int64_t cols, T* x, int64_t x_stride, const T* y, int64_t y_stride) {
  const int64_t r = blockIdx.y;
  TERN_FOR_COLS(cols) x[r * x_stride + c] = FromFloat<T>(ToFloat(x[r * x_stride + c]) + ToFloat(y[r * y_stride + c]));
}

template <typename T>
__global__ void AddBiasKernel(int64_t cols, T* x, int64_t x_stride, const T* bias) {
  const int64_t r = blockIdx.y;
  TERN_FOR_COLS(cols) x[r * x_stride + c] = FromFloat<T>(ToFloat(x[r * x_stride + c]) + ToFloat(bias[c]));
}

template <typename T>
__global__ void GatherRowsKernel(int64_t cols, const int32_t* rows, const T* x, int64_t x_stride, T* out,
                                 int64_t out_stride) {
  const int64_t i = blockIdx.y;
  const T* src = x + int64_t(rows[i]) * x_stride;
  TERN_FOR_COLS(cols) out[i * out_stride + c] = src[c];
}

template <typename T>
__global__ void ToFloatKernel(int64_t cols, const T* x, int64_t x_stride, float* out) {
  const int64_t r = blockIdx.y;
  TERN_FOR_COLS(cols) out[r * cols + c] = ToFloat(x[r * x_stride + c]);
}

template <typename T>
__global__ void FromFloatKernel(int64_t count, const float* x, T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = FromFloat<T>(x[i]);
  }
}

bool BadRows(int64_t rows) { return rows < 0 || rows > 65535 * 1024; }

}  // namespace

cudaError_t LaunchEmbedding(ScalarType type, int64_t num_tokens, int64_t width, const int32_t* ids,
                            const void* table, void* out, int64_t out_stride, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (BadRows(num_tokens)) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       EmbeddingKernel<T><<<RowGrid(num_tokens, width), kThreads, 0, stream>>>(
                           width, ids, static_cast<const T*>(table), static_cast<T*>(out), out_stride));
  return cudaGetLastError();
}

cudaError_t LaunchAdd(ScalarType type, int64_t rows, int64_t cols, void* x, int64_t x_stride, const void* y,
                      int64_t y_stride, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (BadRows(rows)) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       AddKernel<T><<<RowGrid(rows, cols), kThreads, 0, stream>>>(
                           cols, static_cast<T*>(x), x_stride, static_cast<const T*>(y), y_stride));
  return cudaGetLastError();
}

cudaError_t LaunchAddBias(ScalarType type, int64_t rows, int64_t cols, void* x, int64_t x_stride, const void* bias,
                          cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (BadRows(rows)) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       AddBiasKernel<T><<<RowGrid(rows, cols), kThreads, 0, stream>>>(
                           cols, static_cast<T*>(x), x_stride, static_cast<const T*>(bias)));
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(ScalarType type, int64_t num_rows, int64_t cols, const int32_t* rows, const void* x,
                             int64_t x_stride, void* out, int64_t out_stride, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (BadRows(num_rows)) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       GatherRowsKernel<T><<<RowGrid(num_rows, cols), kThreads, 0, stream>>>(
                           cols, rows, static_cast<const T*>(x), x_stride, static_cast<T*>(out), out_stride));
  return cudaGetLastError();
}

cudaError_t LaunchToFloat(ScalarType type, int64_t rows, int64_t cols, const void* x, int64_t x_stride, float* out,
                          cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (BadRows(rows)) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       ToFloatKernel<T><<<RowGrid(rows, cols), kThreads, 0, stream>>>(
                           cols, static_cast<const T*>(x), x_stride, out));
  return cudaGetLastError();
}

cudaError_t LaunchFromFloat(ScalarType type, int64_t count, const float* x, void* out, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((count + kThreads - 1) / kThreads, 4096));
  TERN_DISPATCH_SCALAR(type, T, FromFloatKernel<T><<<blocks, kThreads, 0, stream>>>(count, x, static_cast<T*>(out)));
  return cudaGetLastError();
}

}  // namespace tern::kernels
