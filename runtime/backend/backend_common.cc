#include "runtime/backend/backend_common.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace tern::runtime {

bool IsFloatDType(DType dtype) { return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16; }

absl::StatusOr<FusedLinearShape> CheckFusedLinear(const std::vector<TensorView>& weights,
                                                  const std::vector<TensorView>& biases) {
  if (weights.empty()) return absl::InvalidArgumentError("fused linear of no weights");
  if (!biases.empty() && biases.size() != weights.size()) {
    return absl::InvalidArgumentError("fused linear: biases must be given for all parts or none");
  }
  FusedLinearShape shape;
  shape.in_features = weights[0].shape.size() == 2 ? weights[0].shape[1] : -1;
  for (size_t i = 0; i < weights.size(); ++i) {
    const TensorView& part = weights[i];
    if (part.shape.size() != 2 || part.shape[1] != shape.in_features || !IsFloatDType(part.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("linear weight \"", part.name, "\" has shape ", part.ShapeString(),
                                                     "; expected [out, ", shape.in_features, "] of a float dtype"));
    }
    if (!biases.empty() && biases[i].shape != std::vector<int64_t>{part.shape[0]}) {
      return absl::InvalidArgumentError(absl::StrCat("bias \"", biases[i].name, "\" does not match its weight"));
    }
    shape.out_features += part.shape[0];
  }
  return shape;
}

std::vector<std::vector<std::pair<int32_t, float>>> RouteTopK(const float* router_logits, int64_t num_tokens,
                                                              int64_t num_experts, int32_t top_k) {
  std::vector<std::vector<std::pair<int32_t, float>>> routed(num_experts);
  std::vector<float> probs(num_experts);
  std::vector<int64_t> order(num_experts);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* logits = router_logits + t * num_experts;
    const float max_logit = *std::max_element(logits, logits + num_experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < num_experts; ++e) sum += probs[e] = std::exp(logits[e] - max_logit);
    for (auto& p : probs) p /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                      [&](int64_t a, int64_t b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
    float kept = 0.0f;
    for (int32_t i = 0; i < top_k; ++i) kept += probs[order[i]];
    for (int32_t i = 0; i < top_k; ++i) routed[order[i]].emplace_back(int32_t(t), probs[order[i]] / kept);
  }
  return routed;
}

}  // namespace tern::runtime
