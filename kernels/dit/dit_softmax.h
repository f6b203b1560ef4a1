// Row softmax for attention computed as two GEMMs (the VAE decoder's
// single-head mid-block attention, head_dim 512, beyond the flash kernel):
//   p[r, :] = exp(s[r, :] - max_r) / sum_r, rounded once to `type`,
// where max_r is the row's largest score and sum_r = sum over the row of
// exp(s[r, c] - max_r), both in fp32 (expf; the sum in each thread's column
// order, then across the block). s is fp32 [rows, cols] with row stride
// s_stride (the scores, already scaled); p [rows, cols] of `type` with row
// stride p_stride. One block per row; a row's result depends on that row
// alone. Reference: DitRowSoftmaxReference (the CPU loop of the same
// arithmetic, up to the order of the fp32 sum), checked in
// tests/kernels/dit_softmax_cuda_test.cc.
#pragma once

#include <cstdint>

namespace tern::kernels {

// The CPU reference in fp32, p written as fp32 (the caller rounds).
void DitRowSoftmaxReference(int64_t rows, int64_t cols, const float* s, int64_t s_stride, float* p,
                            int64_t p_stride);

}  // namespace tern::kernels

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"

namespace tern::kernels {

// cudaErrorInvalidValue for cols < 1, rows < 0 or strides shorter than cols.
cudaError_t LaunchDitRowSoftmax(ScalarType type, int64_t rows, int64_t cols, const float* s, int64_t s_stride,
                                void* p, int64_t p_stride, cudaStream_t stream);

}  // namespace tern::kernels
#endif
