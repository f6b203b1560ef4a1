#include <cmath>

#include "kernels/activation/silu_mul.h"

namespace tern::kernels {

void SiluMulReference(int64_t num_tokens, int64_t width, const float* gate, int64_t gate_stride,
                      const float* up, int64_t up_stride, float* out, int64_t out_stride) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t i = 0; i < width; ++i) {
      const float g = gate[t * gate_stride + i];
      out[t * out_stride + i] = g / (1.0f + std::exp(-g)) * up[t * up_stride + i];
    }
  }
}

}  // namespace tern::kernels
