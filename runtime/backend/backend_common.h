// Host-side logic every Backend shares: checking the parts of a (fused)
// linear layer, and Mixtral-style top-k expert routing.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {

// The shape of a fused linear layer built from row blocks.
struct FusedLinearShape {
  int64_t out_features = 0;
  int64_t in_features = 0;
};

// Checks that `weights` are 2-D float tensors sharing in_features and that
// `biases` are given for all parts or none and match their parts.
absl::StatusOr<FusedLinearShape> CheckFusedLinear(const std::vector<TensorView>& weights,
                                                  const std::vector<TensorView>& biases);

// True for F32, F16 and BF16.
bool IsFloatDType(DType dtype);

// Mixtral routing of `num_tokens` rows of router logits [num_tokens,
// num_experts]: softmax in fp32, the top_k experts (ties: lower index), their
// probabilities renormalized to sum to 1. Returns, per expert, the (token,
// weight) pairs routed to it, tokens ascending.
std::vector<std::vector<std::pair<int32_t, float>>> RouteTopK(const float* router_logits, int64_t num_tokens,
                                                              int64_t num_experts, int32_t top_k);

}  // namespace tern::runtime
