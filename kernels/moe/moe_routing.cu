// Routing: one warp per token (each lane holds up to kMoeMaxExperts / 32
// logits in registers); k rounds of a warp argmax pick the experts. Sorting:
// one block, a stable counting sort in chunks of its thread count (each entry
// ranks itself among the chunk's earlier entries of its expert). Combine: one
// block per token.
#include "kernels/common/dispatch.cuh"
#include "kernels/moe/moe_routing.h"

namespace tern::kernels {
namespace {

constexpr int kPerLane = kMoeMaxExperts / 32;
constexpr int kRouteWarps = 4;
constexpr int kSortThreads = 1024;

template <typename T>
__global__ void RouteKernel(MoeRoutingParams p, const T* logits, int32_t* topk_ids, float* topk_weights) {
  const int lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kRouteWarps + threadIdx.x / 32;
  if (t >= p.num_tokens) return;
  const T* row = logits + t * p.logits_row_stride;
  float v[kPerLane];
  float max_logit = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    v[i] = e < p.num_experts ? ToFloat(row[e]) : -INFINITY;
    max_logit = fmaxf(max_logit, v[i]);
  }
  max_logit = WarpMax(max_logit);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    v[i] = e < p.num_experts ? expf(v[i] - max_logit) : -1.0f;  // -1: never chosen
    if (e < p.num_experts) sum += v[i];
  }
  sum = WarpSum(sum);
  int32_t chosen[kMoeMaxTopK];
  float chosen_p[kMoeMaxTopK];
  for (int j = 0; j < p.top_k; ++j) {
    // This lane's best remaining expert, then the warp's (ties: lower id).
    float best = -2.0f;
    int best_e = INT32_MAX;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (v[i] > best) {
        best = v[i];
        best_e = lane + 32 * i;
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, best, offset);
      const int other_e = __shfl_xor_sync(0xffffffffu, best_e, offset);
      if (other > best || (other == best && other_e < best_e)) {
        best = other;
        best_e = other_e;
      }
    }
    chosen[j] = best_e;
    chosen_p[j] = best / sum;
    if (best_e % 32 == lane) {
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        if (i == best_e / 32) v[i] = -1.0f;
      }
    }
  }
  if (lane != 0) return;
  float kept = 0.0f;
  for (int j = 0; j < p.top_k; ++j) kept += chosen_p[j];
  // Ascending expert id within the token, the order Combine adds in.
  for (int j = 1; j < p.top_k; ++j) {
    for (int i = j; i > 0 && chosen[i - 1] > chosen[i]; --i) {
      const int32_t e = chosen[i];
      chosen[i] = chosen[i - 1];
      chosen[i - 1] = e;
      const float q = chosen_p[i];
      chosen_p[i] = chosen_p[i - 1];
      chosen_p[i - 1] = q;
    }
  }
  for (int j = 0; j < p.top_k; ++j) {
    topk_ids[t * p.top_k + j] = chosen[j];
    topk_weights[t * p.top_k + j] = chosen_p[j] / kept;
  }
}

__global__ void __launch_bounds__(kSortThreads)
    SortKernel(int64_t n, int32_t top_k, int32_t num_experts, const int32_t* topk_ids, const float* topk_weights,
               int32_t* expert_offsets, int32_t* sorted_tokens, float* sorted_weights, int32_t* entry_rows) {
  __shared__ int32_t counts[kMoeMaxExperts + 1];
  __shared__ int32_t cursor[kMoeMaxExperts];
  __shared__ int32_t chunk_ids[kSortThreads];
  for (int e = threadIdx.x; e <= num_experts; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) atomicAdd(&counts[topk_ids[i] + 1], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int e = 1; e <= num_experts; ++e) counts[e] += counts[e - 1];
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= num_experts; e += blockDim.x) {
    expert_offsets[e] = counts[e];
    if (e < num_experts) cursor[e] = counts[e];
  }
  __syncthreads();
  for (int64_t base = 0; base < n; base += kSortThreads) {
    const int64_t i = base + threadIdx.x;
    const int32_t e = i < n ? topk_ids[i] : -1;
    chunk_ids[threadIdx.x] = e;
    __syncthreads();
    int32_t rank = 0;
    for (int j = 0; j < int(threadIdx.x); ++j) rank += chunk_ids[j] == e;
    int32_t row = 0;
    if (e >= 0) row = cursor[e] + rank;
    __syncthreads();
    if (e >= 0) {
      atomicAdd(&cursor[e], 1);
      sorted_tokens[row] = int32_t(i / top_k);
      sorted_weights[row] = topk_weights[i];
      entry_rows[i] = row;
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void CombineKernel(int64_t hidden, int32_t top_k, const int32_t* entry_rows, const float* sorted_weights,
                              const T* y, int64_t y_stride, T* out, int64_t out_stride) {
  const int64_t t = blockIdx.x;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    T acc = FromFloat<T>(0.0f);
    for (int j = 0; j < top_k; ++j) {
      const int32_t row = entry_rows[t * top_k + j];
      const T scaled = FromFloat<T>(ToFloat(y[row * y_stride + c]) * sorted_weights[row]);
      acc = FromFloat<T>(ToFloat(acc) + ToFloat(scaled));
    }
    out[t * out_stride + c] = acc;
  }
}

}  // namespace

cudaError_t LaunchMoeRoute(ScalarType type, const MoeRoutingParams& p, const void* logits, int32_t* topk_ids,
                           float* topk_weights, int32_t* expert_offsets, int32_t* sorted_tokens,
                           float* sorted_weights, int32_t* entry_rows, cudaStream_t stream) {
  if (p.num_experts < 1 || p.num_experts > kMoeMaxExperts || p.top_k < 1 || p.top_k > kMoeMaxTopK ||
      p.top_k > p.num_experts || p.num_tokens < 0 || p.num_tokens > INT32_MAX / kMoeMaxTopK) {
    return cudaErrorInvalidValue;
  }
  if (p.num_tokens == 0) return cudaMemsetAsync(expert_offsets, 0, (p.num_experts + 1) * sizeof(int32_t), stream);
  const unsigned blocks = static_cast<unsigned>((p.num_tokens + kRouteWarps - 1) / kRouteWarps);
  TERN_DISPATCH_SCALAR(type, T,
                       RouteKernel<T><<<blocks, kRouteWarps * 32, 0, stream>>>(p, static_cast<const T*>(logits),
                                                                               topk_ids, topk_weights));
  SortKernel<<<1, kSortThreads, 0, stream>>>(p.num_tokens * p.top_k, p.top_k, p.num_experts, topk_ids, topk_weights,
                                             expert_offsets, sorted_tokens, sorted_weights, entry_rows);
  return cudaGetLastError();
}

cudaError_t LaunchMoeCombine(ScalarType type, int64_t num_tokens, int32_t top_k, int64_t hidden,
                             const int32_t* entry_rows, const float* sorted_weights, const void* y, int64_t y_stride,
                             void* out, int64_t out_stride, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || num_tokens > INT32_MAX || hidden <= 0 || top_k < 1) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       CombineKernel<T><<<static_cast<unsigned>(num_tokens), 256, 0, stream>>>(
                           hidden, top_k, entry_rows, sorted_weights, static_cast<const T*>(y), y_stride,
                           static_cast<T*>(out), out_stride));
  return cudaGetLastError();
}

}  // namespace tern::kernels
