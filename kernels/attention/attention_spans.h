// Per-head attention spans (MoA, Mixture of Attention Spans): which keys each
// query head of one layer attends to, stated once for the CPU references, the
// CUDA kernels and the runtime's KV retention.
//
// A query at position p sees n = p + 1 tokens (keys 0..p). Head h of the
// layer attends to
//   its sink  keys j < min(sinks[h], n), and
//   its band  keys j >= BandStart(h, n) = n - span, where
//             span = clamp(floor(alpha + beta * n), 1, n)
// with (alpha, beta) the head's rule in the length bucket of n: bucket b
// covers n <= bucket_max_length[b] (ascending), the last bucket everything
// above its predecessor. The band always holds the query's own key (span
// >= 1), so every row has a key. floor(alpha + beta * n) is computed in
// double as one fused multiply-add, so the host and the device compute the
// same span bit for bit.
//
// Within a bucket with 0 <= beta <= 1 the band start never moves back as n
// grows: floor(alpha + beta * (n + 1)) - floor(alpha + beta * n) <= 1, so
// n + 1 - span(n + 1) >= n - span(n) (clamping keeps it: a span of n gives
// start 0, of 1 gives start n - 1). Between buckets it may move back; the
// runtime's KV retention (runtime/model/moa_plan.h) takes the minimum over
// every later length, so it never frees a key a later bucket needs.
//
// The rules of a layer: plain pointers (host memory for the references,
// device memory for the kernels), num_buckets == 0 meaning dense attention.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define TERN_SPANS_HD __host__ __device__ __forceinline__
#else
#define TERN_SPANS_HD inline
#endif

namespace tern::kernels {

struct AttentionSpanRules {
  int32_t num_buckets = 0;                    // 0: dense attention (no spans)
  const int32_t* bucket_max_length = nullptr;  // [num_buckets] ascending; the last one is not read
  const int32_t* sinks = nullptr;             // [num_heads] sink tokens of each query head, >= 0
  const double* alphas = nullptr;             // [num_buckets, num_heads]
  const double* betas = nullptr;              // [num_buckets, num_heads], in [0, 1]

  TERN_SPANS_HD bool active() const { return num_buckets > 0; }

  // The bucket of a query that sees n tokens.
  TERN_SPANS_HD int32_t Bucket(int32_t n) const {
    int32_t b = 0;
    while (b + 1 < num_buckets && n > bucket_max_length[b]) ++b;
    return b;
  }

  // Band width of head `head` for a query that sees n >= 1 tokens, in [1, n].
  TERN_SPANS_HD int32_t Span(int32_t num_heads, int32_t head, int32_t n) const {
    const int32_t i = Bucket(n) * num_heads + head;
    const double width = floor(fma(betas[i], double(n), alphas[i]));
    if (!(width >= 1.0)) return 1;  // also NaN, which validation rejects
    return width >= double(n) ? n : int32_t(width);
  }

  // First band key of head `head` for a query that sees n >= 1 tokens.
  TERN_SPANS_HD int32_t BandStart(int32_t num_heads, int32_t head, int32_t n) const {
    return n - Span(num_heads, head, n);
  }

  // Sink keys [0, SinkEnd) of head `head` for a query that sees n tokens.
  TERN_SPANS_HD int32_t SinkEnd(int32_t head, int32_t n) const { return sinks[head] < n ? sinks[head] : n; }

  // Whether head `head`'s query at position `position` attends key j <= position.
  TERN_SPANS_HD bool Attends(int32_t num_heads, int32_t head, int32_t position, int32_t j) const {
    const int32_t n = position + 1;
    return j < SinkEnd(head, n) || j >= BandStart(num_heads, head, n);
  }
};

}  // namespace tern::kernels
