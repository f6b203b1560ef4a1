// Mixture-of-experts routing on the device, so a MoE layer needs no host
// round trip per expert: softmax over each token's router logits (fp32),
// the top-k experts (ties: the lower expert id), weights renormalized over
// the k (Mixtral), then a stable counting sort of the token x k entries by
// expert, giving each expert one contiguous block of rows for a grouped GEMM.
// Combine then sums each token's k expert outputs back, in ascending expert
// order and rounding like Hugging Face's per-expert index_add_.
//
// Shapes, with N = num_tokens * top_k entries (entry i = token i / top_k):
//   topk_ids       [N]   the token's experts, ascending id within a token
//   topk_weights   [N]   their renormalized weights (fp32)
//   expert_offsets [num_experts + 1]  rows of expert e: [offsets[e], offsets[e+1])
//   sorted_tokens  [N]   token of each sorted row; ascending within an expert
//   sorted_weights [N]   weight of each sorted row
//   entry_rows     [N]   the sorted row of entry i
#pragma once

#include <cstdint>
#include <vector>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

inline constexpr int32_t kMoeMaxExperts = 256;
inline constexpr int32_t kMoeMaxTopK = 8;

struct MoeRoutingParams {
  int64_t num_tokens = 0;
  int32_t num_experts = 0;      // 1 .. kMoeMaxExperts
  int32_t top_k = 0;            // 1 .. min(kMoeMaxTopK, num_experts)
  int64_t logits_row_stride = 0;  // elements between router-logit rows
};

struct MoeRouting {
  std::vector<int32_t> topk_ids, expert_offsets, sorted_tokens, entry_rows;
  std::vector<float> topk_weights, sorted_weights;
};

// CPU reference (fp32 logits).
MoeRouting MoeRouteReference(const MoeRoutingParams& params, const float* logits);

// out[t] = sum over the token's entries in ascending expert order of
// round(w * y[row]), accumulated in fp32 here (the kernel rounds to its type
// at each step as Hugging Face does).
void MoeCombineReference(int64_t num_tokens, int32_t top_k, int64_t hidden, const int32_t* entry_rows,
                         const float* sorted_weights, const float* y, int64_t y_stride, float* out,
                         int64_t out_stride);

#if defined(TERN_WITH_CUDA)
// cudaErrorInvalidValue for parameters out of range. Device pointers; logits
// of `type`. num_tokens == 0 only zeroes expert_offsets.
cudaError_t LaunchMoeRoute(ScalarType type, const MoeRoutingParams& params, const void* logits, int32_t* topk_ids,
                           float* topk_weights, int32_t* expert_offsets, int32_t* sorted_tokens,
                           float* sorted_weights, int32_t* entry_rows, cudaStream_t stream);

// y and out of `type`; out may not alias y.
cudaError_t LaunchMoeCombine(ScalarType type, int64_t num_tokens, int32_t top_k, int64_t hidden,
                             const int32_t* entry_rows, const float* sorted_weights, const void* y, int64_t y_stride,
                             void* out, int64_t out_stride, cudaStream_t stream);
#endif

}  // namespace tern::kernels
