// Quantized paged KV cache: how K and V elements are stored and what the
// append and the attention kernels compute from them. The CPU references
// below are the contract every GPU kernel meets.
//
// Element types (KvElement):
//   kNative   the cache holds the compute dtype (fp32, fp16 or bf16).
//   kFp8E4M3  one byte per element, OCP e4m3 (kernels/common/float8.h), with a
//             static scale per (layer, kv head) for K and one for V:
//               q = e4m3(x * (1 / scale))   (nearest even, saturating at 448)
//               x' = float(q) * scale
//             The scales come with the model (a checkpoint's k_scale / v_scale,
//             or 1.0): `head_scales` [num_kv_heads] of the layer.
//   kInt8     one byte per element, symmetric, one scale per (token, kv head)
//             computed at append and stored beside the page:
//               absmax = max_d |x[d]|, s = absmax / 127,
//               inv = absmax > 0 ? 127 / absmax : 0,
//               q = clamp(round_half_even(x[d] * inv), -127, 127)
//               x' = float(q) * s
//             `token_scales` [num_blocks * block_size, num_kv_heads]: slot-major
//             like the data, so a block's scales are the rows
//             [block * block_size, (block + 1) * block_size), and a block copy
//             copies them with the data.
//
// Data layout of a quantized layer (K and V alike) is the native one with
// one byte per element: [num_blocks, block_size, num_kv_heads, head_dim].
// Attention dequantizes x' as above (one fp32 multiply) and then computes
// exactly what it computes on a native cache of x' values.
#pragma once

#include <cstdint>

namespace tern::kernels {

enum class KvElement : int32_t { kNative = 0, kFp8E4M3 = 1, kInt8 = 2 };

// Bytes of one cached element of `element` (native: `native_bytes`).
inline int32_t KvElementBytes(KvElement element, int32_t native_bytes) {
  return element == KvElement::kNative ? native_bytes : 1;
}

inline const char* KvElementName(KvElement element) {
  switch (element) {
    case KvElement::kFp8E4M3:
      return "fp8";
    case KvElement::kInt8:
      return "int8";
    case KvElement::kNative:
      break;
  }
  return "auto";
}

// Stores rows of k and v (fp32, num_kv_heads heads of head_dim each) at their
// slots, quantized as `element` (kFp8E4M3 or kInt8). fp8: k_scales and
// v_scales are the layer's [num_kv_heads] head scales, read. int8: they are
// the layer's [slots, num_kv_heads] token scales, written at each row's slot.
// A negative slot is a padding row: nothing is stored.
struct KvWriteQuantParams {
  KvElement element = KvElement::kInt8;
  int64_t num_tokens = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int64_t k_row_stride = 0;  // elements between rows of k
  int64_t v_row_stride = 0;
};
void WriteKvQuantizedReference(const KvWriteQuantParams& params, const float* k, const float* v, const int32_t* slots,
                               uint8_t* k_cache, uint8_t* v_cache, float* k_scales, float* v_scales);

// One head row (head_dim values) quantized per the contract above: int8
// returns the token scale it stores; fp8 takes the head scale and returns it.
float QuantizeKvHeadInt8(const float* x, int32_t head_dim, int8_t* q);
float QuantizeKvHeadFp8(const float* x, int32_t head_dim, float head_scale, uint8_t* q);

// x'[d] = float(q[d]) * scale for one head row of either quantized type.
void DequantizeKvHead(KvElement element, const uint8_t* q, int32_t head_dim, float scale, float* out);

}  // namespace tern::kernels
