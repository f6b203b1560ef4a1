#include "kernels/gemm/skinny_gemm.h"

namespace tern::kernels {

void SkinnyGemmReference(const SkinnyGemmParams& params, const float* x, const float* w, float* y) {
  for (int64_t m = 0; m < params.rows; ++m) {
    const float* xr = x + m * params.x_row_stride;
    for (int64_t n = 0; n < params.n; ++n) {
      const float* wr = w + n * params.k;
      double sum = 0.0;
      for (int64_t i = 0; i < params.k; ++i) sum += double(xr[i]) * double(wr[i]);
      y[m * params.y_row_stride + n] = static_cast<float>(sum);
    }
  }
}

}  // namespace tern::kernels
