#include <cstddef>
#include <vector>

#include "kernels/rope/rope.h"
#include "kernels/rope/rope_kv_append.h"

namespace tern::kernels {

void RopeKvAppendReference(const RopeKvAppendParams& p, const int32_t* positions, const float* inv_freq,
                           const int32_t* slots, float* q, const float* k, const float* v, float* k_cache,
                           float* v_cache) {
  RopeReference({p.num_tokens, p.num_heads, p.head_dim, p.q_row_stride}, positions, inv_freq, q);
  const int64_t width = int64_t(p.num_kv_heads) * p.head_dim;
  std::vector<float> rotated(static_cast<size_t>(p.num_tokens * width));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    for (int64_t c = 0; c < width; ++c) rotated[t * width + c] = k[t * p.k_row_stride + c];
  }
  RopeReference({p.num_tokens, p.num_kv_heads, p.head_dim, width}, positions, inv_freq, rotated.data());
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (slots[t] < 0) continue;
    const int64_t base = int64_t(slots[t]) * width;
    for (int64_t c = 0; c < width; ++c) {
      k_cache[base + c] = rotated[t * width + c];
      v_cache[base + c] = v[t * p.v_row_stride + c];
    }
  }
}

}  // namespace tern::kernels
