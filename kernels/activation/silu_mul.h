// SwiGLU gating: out[t, i] = silu(gate[t, i]) * up[t, i], silu(x) = x / (1 + e^-x).
#pragma once

#include <cstdint>

namespace tern::kernels {

// gate, up, out: [num_tokens, width] with the given row strides (elements).
void SiluMulReference(int64_t num_tokens, int64_t width, const float* gate, int64_t gate_stride,
                      const float* up, int64_t up_stride, float* out, int64_t out_stride);

}  // namespace tern::kernels
