#include <cmath>

#include "kernels/norm/rmsnorm.h"

namespace tern::kernels {

void RmsNormReference(const RmsNormParams& params, const float* x, const float* weight, float* y) {
  for (int64_t t = 0; t < params.num_tokens; ++t) {
    const float* row = x + t * params.x_row_stride;
    float* out = y + t * params.y_row_stride;
    // Double accumulation keeps the reference strictly more accurate than the
    // fp32-accumulating kernels it judges.
    double sum_sq = 0.0;
    for (int64_t i = 0; i < params.hidden; ++i) sum_sq += double(row[i]) * double(row[i]);
    const double inv_rms = 1.0 / std::sqrt(sum_sq / double(params.hidden) + double(params.eps));
    for (int64_t i = 0; i < params.hidden; ++i) {
      out[i] = static_cast<float>(double(row[i]) * inv_rms * double(weight[i]));
    }
  }
}

void AddRmsNormReference(const AddRmsNormParams& params, float* x, const float* residual, const float* weight,
                         float* y) {
  const RmsNormParams& n = params.norm;
  for (int64_t t = 0; t < n.num_tokens; ++t) {
    float* row = x + t * n.x_row_stride;
    const float* add = residual + t * params.residual_row_stride;
    for (int64_t i = 0; i < n.hidden; ++i) row[i] += add[i];
  }
  RmsNormReference(n, x, weight, y);
}

}  // namespace tern::kernels
