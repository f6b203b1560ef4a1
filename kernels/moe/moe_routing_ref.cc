#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/moe/moe_routing.h"

namespace tern::kernels {

MoeRouting MoeRouteReference(const MoeRoutingParams& p, const float* logits) {
  MoeRouting r;
  const int64_t n = p.num_tokens * p.top_k;
  r.topk_ids.resize(n);
  r.topk_weights.resize(n);
  std::vector<double> probs(p.num_experts);
  std::vector<int32_t> order(p.num_experts);
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const float* row = logits + t * p.logits_row_stride;
    const double max_logit = *std::max_element(row, row + p.num_experts);
    double sum = 0.0;
    for (int32_t e = 0; e < p.num_experts; ++e) sum += probs[e] = std::exp(double(row[e]) - max_logit);
    for (auto& q : probs) q /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + p.top_k, order.end(),
                      [&](int32_t a, int32_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
    std::sort(order.begin(), order.begin() + p.top_k);
    double kept = 0.0;
    for (int32_t j = 0; j < p.top_k; ++j) kept += probs[order[j]];
    for (int32_t j = 0; j < p.top_k; ++j) {
      r.topk_ids[t * p.top_k + j] = order[j];
      r.topk_weights[t * p.top_k + j] = float(probs[order[j]] / kept);
    }
  }
  r.expert_offsets.assign(p.num_experts + 1, 0);
  for (int32_t e : r.topk_ids) ++r.expert_offsets[e + 1];
  std::partial_sum(r.expert_offsets.begin(), r.expert_offsets.end(), r.expert_offsets.begin());
  std::vector<int32_t> cursor(r.expert_offsets.begin(), r.expert_offsets.end() - 1);
  r.sorted_tokens.resize(n);
  r.sorted_weights.resize(n);
  r.entry_rows.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t row = cursor[r.topk_ids[i]]++;
    r.sorted_tokens[row] = int32_t(i / p.top_k);
    r.sorted_weights[row] = r.topk_weights[i];
    r.entry_rows[i] = row;
  }
  return r;
}

void MoeCombineReference(int64_t num_tokens, int32_t top_k, int64_t hidden, const int32_t* entry_rows,
                         const float* sorted_weights, const float* y, int64_t y_stride, float* out,
                         int64_t out_stride) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* dst = out + t * out_stride;
    std::fill_n(dst, hidden, 0.0f);
    for (int32_t j = 0; j < top_k; ++j) {
      const int32_t row = entry_rows[t * top_k + j];
      for (int64_t c = 0; c < hidden; ++c) dst[c] += sorted_weights[row] * y[row * y_stride + c];
    }
  }
}

}  // namespace tern::kernels
