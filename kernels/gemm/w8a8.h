// The GPU halves of a W8A8 linear layer (INT8 or FP8 E4M3) around the
// quantized GEMM, which runs in cuBLASLt (runtime/cuda/cuda_w8a8_linear.h):
//   LaunchQuantizeActivations  x -> q, row_scales exactly as
//                              QuantizeActivationsReference (quant_gemm.h)
//   LaunchW8A8Epilogue         acc -> y = s[m] * (w_scale[n] * acc) + bias[n]
//                              (W8A8Epilogue), rounded once to the type
// Pointers: x [rows, k] (row stride x_row_stride) in `type`; q [rows, k]
// bytes (row stride q_row_stride; int8 two's complement or e4m3 bits);
// row_scales [rows] fp32; acc [rows, n] (row stride acc_row_stride) fp32 or
// int32; w_scales [n] fp32; bias [n] fp32 or null; y [rows, n] (row stride
// y_row_stride) in `type`. Launchers never allocate and never wait.
#pragma once

#include <cstdint>

#include "kernels/gemm/quant_gemm.h"

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

#if defined(TERN_WITH_CUDA)
// params.x_stride is x's row stride; one block per row.
cudaError_t LaunchQuantizeActivations(ScalarType type, const ActivationQuantParams& params, const void* x, uint8_t* q,
                                      int64_t q_row_stride, float* row_scales, cudaStream_t stream);

struct W8A8EpilogueParams {
  int64_t rows = 0;
  int64_t n = 0;
  int64_t acc_row_stride = 0;
  int64_t y_row_stride = 0;
  bool int32_acc = false;  // acc holds int32 (INT8 GEMM), else fp32 (FP8 GEMM)
};

cudaError_t LaunchW8A8Epilogue(ScalarType type, const W8A8EpilogueParams& params, const void* acc,
                               const float* row_scales, const float* w_scales, const float* bias, void* y,
                               cudaStream_t stream);
#endif

}  // namespace tern::kernels
