// Rotary position embedding, "rotate half" (GPT-NeoX / Hugging Face Llama)
// layout: within each head of head_dim d, element i pairs with i + d/2:
//   x'[i]       = x[i] * cos(p * f[i]) - x[i + d/2] * sin(p * f[i])
//   x'[i + d/2] = x[i + d/2] * cos(p * f[i]) + x[i] * sin(p * f[i])
// for i < d/2, position p, and inverse frequencies f (already scaled).
#pragma once

#include <cstdint>

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

}  // namespace tern::kernels
