#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/attention/paged_attention.h"

namespace tern::kernels {
namespace {

// The reference loop over any cache: load(cache, scales, slot, kv_head, row)
// returns the fp32 values [head_dim] of one cached head row, in the cache
// itself or decoded into `row`.
template <typename Cache, typename Load>
void AttentionLoop(const PagedAttentionParams& p, const float* q, const Cache* k_cache, const Cache* v_cache,
                   float* out, int32_t seq_begin, int32_t seq_end, Load load) {
  const int32_t group = p.num_heads / p.num_kv_heads;
  std::vector<double> scores;
  std::vector<int32_t> keys;
  std::vector<double> acc(p.head_dim);
  std::vector<float> k_row(p.head_dim), v_row(p.head_dim);
  for (int32_t s = seq_begin; s < seq_end; ++s) {
    const int32_t n_q = p.query_start[s + 1] - p.query_start[s];
    const int32_t context = p.context_lens[s];
    const int32_t* blocks = p.block_ids + p.block_indptr[s];
    for (int32_t i = 0; i < n_q; ++i) {
      const int32_t row = p.query_start[s] + i;
      const int32_t position = context - n_q + i;
      for (int32_t h = 0; h < p.num_heads; ++h) {
        // The keys this head's query attends: all up to its position, the
        // last sliding_window of them, or its sink and band (MoA spans).
        keys.clear();
        if (p.spans.active()) {
          const int32_t sink_end = p.spans.SinkEnd(h, position + 1);
          const int32_t band = std::max(sink_end, p.spans.BandStart(p.num_heads, h, position + 1));
          for (int32_t j = 0; j < sink_end; ++j) keys.push_back(j);
          for (int32_t j = band; j <= position; ++j) keys.push_back(j);
        } else {
          const int32_t first = p.sliding_window > 0 ? std::max(0, position - p.sliding_window + 1) : 0;
          for (int32_t j = first; j <= position; ++j) keys.push_back(j);
        }
        scores.resize(keys.size());
        const float* qh = q + row * p.q_row_stride + int64_t(h) * p.head_dim;
        const int32_t kv_head = h / group;
        double max_score = -INFINITY;
        for (size_t k = 0; k < keys.size(); ++k) {
          const int32_t j = keys[k];
          const int64_t slot = int64_t(blocks[j / p.block_size]) * p.block_size + j % p.block_size;
          const float* kj = load(k_cache, p.k_scales, slot, kv_head, k_row.data());
          double dot = 0.0;
          for (int32_t d = 0; d < p.head_dim; ++d) dot += double(qh[d]) * double(kj[d]);
          scores[k] = dot * p.scale;
          max_score = std::max(max_score, scores[k]);
        }
        double denom = 0.0;
        for (auto& score : scores) {
          score = std::exp(score - max_score);
          denom += score;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (size_t k = 0; k < keys.size(); ++k) {
          const int32_t j = keys[k];
          const int64_t slot = int64_t(blocks[j / p.block_size]) * p.block_size + j % p.block_size;
          const float* vj = load(v_cache, p.v_scales, slot, kv_head, v_row.data());
          const double w = scores[k] / denom;
          for (int32_t d = 0; d < p.head_dim; ++d) acc[d] += w * vj[d];
        }
        float* oh = out + row * p.out_row_stride + int64_t(h) * p.head_dim;
        for (int32_t d = 0; d < p.head_dim; ++d) oh[d] = static_cast<float>(acc[d]);
      }
    }
  }
}

}  // namespace

void PagedAttentionReference(const PagedAttentionParams& p, const float* q, const float* k_cache,
                             const float* v_cache, float* out, int32_t seq_begin, int32_t seq_end) {
  const int64_t token_stride = int64_t(p.num_kv_heads) * p.head_dim;
  AttentionLoop(p, q, k_cache, v_cache, out, seq_begin, seq_end,
                [&](const float* cache, const float*, int64_t slot, int32_t kv_head, float*) {
                  return cache + slot * token_stride + int64_t(kv_head) * p.head_dim;
                });
}

void PagedAttentionQuantizedReference(const PagedAttentionParams& p, const float* q, const uint8_t* k_cache,
                                      const uint8_t* v_cache, float* out, int32_t seq_begin, int32_t seq_end) {
  const int64_t token_stride = int64_t(p.num_kv_heads) * p.head_dim;
  AttentionLoop(p, q, k_cache, v_cache, out, seq_begin, seq_end,
                [&](const uint8_t* cache, const float* scales, int64_t slot, int32_t kv_head, float* row) {
                  const float scale =
                      p.kv_element == KvElement::kInt8 ? scales[slot * p.num_kv_heads + kv_head] : scales[kv_head];
                  DequantizeKvHead(p.kv_element, cache + slot * token_stride + int64_t(kv_head) * p.head_dim,
                                   p.head_dim, scale, row);
                  return static_cast<const float*>(row);
                });
}

void WriteKvReference(int64_t num_tokens, int32_t num_kv_heads, int32_t head_dim, const float* k,
                      int64_t k_row_stride, const float* v, int64_t v_row_stride, const int32_t* slots,
                      float* k_cache, float* v_cache) {
  const int64_t width = int64_t(num_kv_heads) * head_dim;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;  // a padding row: nothing to store
    const int64_t base = int64_t(slots[t]) * width;
    std::copy(k + t * k_row_stride, k + t * k_row_stride + width, k_cache + base);
    std::copy(v + t * v_row_stride, v + t * v_row_stride + width, v_cache + base);
  }
}

}  // namespace tern::kernels
