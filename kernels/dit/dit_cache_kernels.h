// DiTFastAttn's data movement on the GPU (runtime/dit/dit_fast_attention.h):
// copying whole samples between activations and the per-request cache pool,
// and the window residual (full minus window attention output). Reference:
// CpuDitOps::CopySamples and CpuDitOps::Subtract (runtime/dit/cpu_dit_ops.cc),
// compared in tests/runtime/dit/cuda_dit_fast_attention_test.cc.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"

namespace tern::kernels {

// For i in [0, count): rows [to[i] * rows_per_sample, +rows_per_sample) of
// dst <- rows [from[i] * rows_per_sample, ...) of src, `cols` elements a row.
// from and to are device int32 arrays of `count`; a sample written must not
// be read by another i (src may be dst).
cudaError_t LaunchDitCopySamples(ScalarType type, int32_t count, const int32_t* from, const int32_t* to,
                                 int64_t rows_per_sample, int64_t cols, const void* src, int64_t src_stride, void* dst,
                                 int64_t dst_stride, cudaStream_t stream);

// out = x - y, computed in fp32 and rounded once (out may alias x or y).
cudaError_t LaunchDitSubtract(ScalarType type, int64_t rows, int64_t cols, const void* x, int64_t x_stride,
                              const void* y, int64_t y_stride, void* out, int64_t out_stride, cudaStream_t stream);

}  // namespace tern::kernels
