// SwiGLU gating: out[t, i] = silu(gate[t, i]) * up[t, i], silu(x) = x / (1 + e^-x).
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

// gate, up, out: [num_tokens, width] with the given row strides (elements).
void SiluMulReference(int64_t num_tokens, int64_t width, const float* gate, int64_t gate_stride,
                      const float* up, int64_t up_stride, float* out, int64_t out_stride);

#if defined(TERN_WITH_CUDA)
// Device tensors of `type`; silu in fp32, gate rounded to T first as HF does.
// `pdl`: launched with programmatic dependent launch (common/pdl.cuh).
cudaError_t LaunchSiluMul(ScalarType type, int64_t num_tokens, int64_t width, const void* gate, int64_t gate_stride,
                          const void* up, int64_t up_stride, void* out, int64_t out_stride, cudaStream_t stream,
                          bool pdl = true);
#endif

}  // namespace tern::kernels
