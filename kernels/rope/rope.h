// Rotary position embedding, "rotate half" (GPT-NeoX / Hugging Face Llama)
// layout: within each head of head_dim d, element i pairs with i + d/2:
//   x'[i]       = x[i] * cos(p * f[i]) - x[i + d/2] * sin(p * f[i])
//   x'[i + d/2] = x[i + d/2] * cos(p * f[i]) + x[i] * sin(p * f[i])
// for i < d/2, position p, and inverse frequencies f (already scaled).
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

struct RopeParams {
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;    // even
  int64_t row_stride = 0;  // elements between tokens (>= num_heads * head_dim)
};

// In place on x [num_tokens, row_stride]; positions [num_tokens];
// inv_freq [head_dim / 2]. Angles are computed in fp32 as Hugging Face does.
void RopeReference(const RopeParams& params, const int32_t* positions, const float* inv_freq, float* x);

#if defined(TERN_WITH_CUDA)
// In place on device x of `type`; positions and inv_freq on the device.
cudaError_t LaunchRope(ScalarType type, const RopeParams& params, const int32_t* positions, const float* inv_freq,
                       void* x, cudaStream_t stream);
#endif

}  // namespace tern::kernels
