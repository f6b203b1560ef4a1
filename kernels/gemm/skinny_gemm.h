// Skinny GEMM for decode: y[m, n] = sum_k x[m, k] * w[n, k] for a handful of
// rows m (one decode step of a small batch), where the weight matrix is read
// once from memory and the step is bound by its bytes, not by FLOPs.
//
// Layouts: x [rows, k] with row stride x_row_stride, w [n, k] row-major
// (nn.Linear's [out_features, in_features]), y [rows, n] with row stride
// y_row_stride, all of one ScalarType (fp16 or bf16). Accumulation is fp32;
// each output is rounded once. Each output feature is one warp's dot product
// over 16-byte weight loads that bypass L1, so every weight byte crosses the
// memory bus once per call whatever the number of rows.
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

inline constexpr int64_t kSkinnyGemmMaxRows = 8;

struct SkinnyGemmParams {
  int64_t rows = 0;  // 0 .. kSkinnyGemmMaxRows
  int64_t n = 0;     // output features
  int64_t k = 0;     // input features
  int64_t x_row_stride = 0;
  int64_t y_row_stride = 0;
};

// fp32 reference (double accumulation).
void SkinnyGemmReference(const SkinnyGemmParams& params, const float* x, const float* w, float* y);

#if defined(TERN_WITH_CUDA)
// Whether LaunchSkinnyGemm handles this shape and these pointers: fp16/bf16,
// rows <= kSkinnyGemmMaxRows, k and both strides multiples of 8 elements,
// x and w 16-byte aligned. Callers use a general GEMM otherwise.
bool SkinnyGemmSupported(ScalarType type, const SkinnyGemmParams& params, const void* x, const void* w);

// cudaErrorNotSupported when !SkinnyGemmSupported; rows == 0 is a no-op.
// `pdl`: launched with programmatic dependent launch (common/pdl.cuh).
cudaError_t LaunchSkinnyGemm(ScalarType type, const SkinnyGemmParams& params, const void* x, const void* w, void* y,
                             cudaStream_t stream, bool pdl = true);
#endif

}  // namespace tern::kernels
