#include <cmath>

#include "kernels/rope/rope.h"

namespace tern::kernels {

void RopeReference(const RopeParams& p, const int32_t* positions, const float* inv_freq, float* x) {
  const int64_t half = p.head_dim / 2;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const float position = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = position * inv_freq[i];
      const float c = std::cos(angle);
      const float s = std::sin(angle);
      for (int64_t h = 0; h < p.num_heads; ++h) {
        float* head = x + t * p.row_stride + h * p.head_dim;
        const float a = head[i];
        const float b = head[i + half];
        head[i] = a * c - b * s;
        head[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace tern::kernels
