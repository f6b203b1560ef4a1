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

// Fused residual add + RMSNorm, the pre-norm transformer's seam between
// sublayers: x[t, :] += residual[t, :] (x is updated in place, rounded to its
// dtype), then y[t, :] = RMSNorm(x[t, :]) * weight. residual rows use
// `residual_row_stride`; y must not alias x or residual.
struct AddRmsNormParams {
  RmsNormParams norm;
  int64_t residual_row_stride = 0;
};

// CPU reference, fp32.
void AddRmsNormReference(const AddRmsNormParams& params, float* x, const float* residual, const float* weight,
                         float* y);

#if defined(TERN_WITH_CUDA)
// x, weight and y all of `type`; fp32 accumulation. Device pointers; enqueued
// on `stream`. x and y may alias. `pdl`: the row kernel is launched with
// programmatic dependent launch (common/pdl.cuh).
cudaError_t LaunchRmsNorm(ScalarType type, const RmsNormParams& params, const void* x, const void* weight,
                          void* y, cudaStream_t stream, bool pdl = true);

// One pass over x instead of an add kernel and a norm kernel: x is read once,
// written once, and the norm uses the sum rounded to `type` exactly as an
// unfused add followed by RMSNorm would.
cudaError_t LaunchAddRmsNorm(ScalarType type, const AddRmsNormParams& params, void* x, const void* residual,
                             const void* weight, void* y, cudaStream_t stream, bool pdl = true);
#endif

}  // namespace tern::kernels
