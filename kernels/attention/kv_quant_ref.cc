#include <algorithm>
#include <cmath>

#include "kernels/attention/kv_quant.h"
#include "kernels/common/float8.h"

namespace tern::kernels {

float QuantizeKvHeadInt8(const float* x, int32_t head_dim, int8_t* q) {
  float absmax = 0.0f;
  for (int32_t d = 0; d < head_dim; ++d) absmax = std::max(absmax, std::fabs(x[d]));
  const float scale = absmax / 127.0f;
  const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
  for (int32_t d = 0; d < head_dim; ++d) {
    const float r = std::nearbyint(x[d] * inv);  // the default rounding mode: nearest, ties to even
    q[d] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, r)));
  }
  return scale;
}

float QuantizeKvHeadFp8(const float* x, int32_t head_dim, float head_scale, uint8_t* q) {
  const float inv = 1.0f / head_scale;
  for (int32_t d = 0; d < head_dim; ++d) q[d] = FloatToFp8E4M3(x[d] * inv);
  return head_scale;
}

void DequantizeKvHead(KvElement element, const uint8_t* q, int32_t head_dim, float scale, float* out) {
  if (element == KvElement::kInt8) {
    for (int32_t d = 0; d < head_dim; ++d) out[d] = float(static_cast<int8_t>(q[d])) * scale;
  } else {
    for (int32_t d = 0; d < head_dim; ++d) out[d] = Fp8E4M3ToFloat(q[d]) * scale;
  }
}

void WriteKvQuantizedReference(const KvWriteQuantParams& p, const float* k, const float* v, const int32_t* slots,
                               uint8_t* k_cache, uint8_t* v_cache, float* k_scales, float* v_scales) {
  const int64_t width = int64_t(p.num_kv_heads) * p.head_dim;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (slots[t] < 0) continue;  // a padding row: nothing to store
    const int64_t slot = slots[t];
    for (int32_t h = 0; h < p.num_kv_heads; ++h) {
      const float* kh = k + t * p.k_row_stride + int64_t(h) * p.head_dim;
      const float* vh = v + t * p.v_row_stride + int64_t(h) * p.head_dim;
      uint8_t* kq = k_cache + slot * width + int64_t(h) * p.head_dim;
      uint8_t* vq = v_cache + slot * width + int64_t(h) * p.head_dim;
      if (p.element == KvElement::kInt8) {
        k_scales[slot * p.num_kv_heads + h] = QuantizeKvHeadInt8(kh, p.head_dim, reinterpret_cast<int8_t*>(kq));
        v_scales[slot * p.num_kv_heads + h] = QuantizeKvHeadInt8(vh, p.head_dim, reinterpret_cast<int8_t*>(vq));
      } else {
        QuantizeKvHeadFp8(kh, p.head_dim, k_scales[h], kq);
        QuantizeKvHeadFp8(vh, p.head_dim, v_scales[h], vq);
      }
    }
  }
}

}  // namespace tern::kernels
