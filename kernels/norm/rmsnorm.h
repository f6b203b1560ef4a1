// RMSNorm: y[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight[:].
//
// Shapes: x and y are [num_tokens, hidden] row-major with row strides in
// elements; weight is [hidden]. Accumulation is fp32 for every dtype. x and y
// may alias (in place). num_tokens == 0 is a no-op.
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

struct RmsNormParams {
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  int64_t x_row_stride = 0;  // elements between consecutive rows of x
  int64_t y_row_stride = 0;  // elements between consecutive rows of y
  float eps = 1e-6f;
};

// CPU reference, fp32. Used by the CPU backend and as the oracle for the GPU.
void RmsNormReference(const RmsNormParams& params, const float* x, const float* weight, float* y);

#if defined(TERN_WITH_CUDA)
// x, weight and y all of `type`; fp32 accumulation. Device pointers; enqueued
// on `stream`. x and y may alias.
cudaError_t LaunchRmsNorm(ScalarType type, const RmsNormParams& params, const void* x, const void* weight,
                          void* y, cudaStream_t stream);
#endif

}  // namespace tern::kernels
