#include <algorithm>
#include <cmath>

#include "kernels/dit/dit_softmax.h"

namespace tern::kernels {

void DitRowSoftmaxReference(int64_t rows, int64_t cols, const float* s, int64_t s_stride, float* p,
                            int64_t p_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* sr = s + r * s_stride;
    float* pr = p + r * p_stride;
    float max = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) max = std::max(max, sr[c]);
    float sum = 0.0f;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(sr[c] - max);
    for (int64_t c = 0; c < cols; ++c) pr[c] = std::exp(sr[c] - max) / sum;
  }
}

}  // namespace tern::kernels
