// CPU reference of the MoE expert GEMM (moe_expert_gemm.h), and the row
// bound of its use.
#include "kernels/moe/moe_expert_gemm.h"

#include "kernels/gemm/skinny_gemm.h"

namespace tern::kernels {

int64_t MoeExpertGemmMaxRows(int32_t num_experts) {
  return num_experts > 0 ? int64_t(4) * kSkinnyGemmMaxRows * num_experts : 0;
}

void MoeExpertGemmReference(const MoeExpertGemmParams& p, const int32_t* expert_offsets, const float* x,
                            const float* const* weights, float* y) {
  for (int32_t e = 0; e < p.num_experts; ++e) {
    const float* w = weights[e];
    for (int64_t r = expert_offsets[e]; r < expert_offsets[e + 1]; ++r) {
      for (int64_t f = 0; f < p.n; ++f) {
        double sum = 0.0;
        for (int64_t i = 0; i < p.k; ++i) sum += double(x[r * p.x_row_stride + i]) * double(w[f * p.k + i]);
        y[r * p.y_row_stride + f] = float(sum);
      }
    }
  }
}

}  // namespace tern::kernels
