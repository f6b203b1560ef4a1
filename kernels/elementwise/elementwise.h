// Small data-movement kernels of the model step: embedding lookup, residual
// add, bias add, row gather, and conversion to fp32 for the host. Device
// pointers, row-major 2-D tensors with explicit row strides (elements).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"

namespace tern::kernels {

// out[t, :] = table[ids[t], :]; table [vocab, width], out [num_tokens, out_stride].
cudaError_t LaunchEmbedding(ScalarType type, int64_t num_tokens, int64_t width, const int32_t* ids,
                            const void* table, void* out, int64_t out_stride, cudaStream_t stream);

// x[t, :] += y[t, :] (rounded to the type, as a framework add would).
cudaError_t LaunchAdd(ScalarType type, int64_t rows, int64_t cols, void* x, int64_t x_stride, const void* y,
                      int64_t y_stride, cudaStream_t stream);

// x[t, :] += bias[:].
cudaError_t LaunchAddBias(ScalarType type, int64_t rows, int64_t cols, void* x, int64_t x_stride, const void* bias,
                          cudaStream_t stream);

// out[i, :] = x[rows[i], :].
cudaError_t LaunchGatherRows(ScalarType type, int64_t num_rows, int64_t cols, const int32_t* rows, const void* x,
                             int64_t x_stride, void* out, int64_t out_stride, cudaStream_t stream);

// out (fp32, dense [rows, cols]) = x converted.
cudaError_t LaunchToFloat(ScalarType type, int64_t rows, int64_t cols, const void* x, int64_t x_stride, float* out,
                          cudaStream_t stream);

// out (type, dense) = x (fp32, dense) converted; for uploading weights.
cudaError_t LaunchFromFloat(ScalarType type, int64_t count, const float* x, void* out, cudaStream_t stream);

}  // namespace tern::kernels
