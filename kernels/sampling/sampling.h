// Logits processing and sampling on the GPU: one CTA per row turns a row of
// logits into one token id (plus, on request, raw-distribution logprobs), so
// only ids and logprobs cross to the host.
//
// Semantics are those of runtime/sampling/sampler.h, which is the CPU
// reference these kernels are tested against:
//   penalties -> temperature -> top-k -> top-p -> min-p -> draw.
// * Penalties come from a per-row CSR of distinct token ids (SamplingPenalty).
//   Repetition (HF): once per entry with in_prompt or output_count > 0, a
//   positive logit is divided by r and a negative one multiplied by r.
//   Frequency/presence (OpenAI): logit -= f * output_count + p for entries
//   with output_count > 0. Rows with penalties are copied to an fp32
//   workspace row first; the input logits are never modified.
// * temperature == 0 (or a single finite logit) is greedy: the argmax of the
//   penalized row, the lowest id winning ties.
// * Otherwise weights are w = expf((x - max) / temperature). top-k, top-p and
//   min-p each keep a most-likely-first prefix of the order (x descending, id
//   ascending), so each is a threshold (key, id cut) in that order, found by a
//   4-pass 8-bit radix select over the order-preserving integer key of x (no
//   sort). Ties at the threshold value are resolved exactly as the host does:
//   an id-ordered scan over the tied tokens keeps the lowest ids first (for
//   top-k: as many as k still needs; for top-p: up to the token whose
//   cumulative mass reaches top_p * mass(top-k set)). min-p keeps w >= min_p.
//   Tokens of weight 0 (and logits of -inf) are never kept.
// * The draw walks the kept tokens in ascending id order and returns the first
//   whose cumulative weight (fp64) exceeds uniform * total, falling back to
//   the last kept token when rounding leaves the threshold at the total.
// Known differences from the host: the GPU's expf may differ from the host's
// by an ulp and masses are summed in another order (fp64 either way), so a
// token whose cumulative mass lands within rounding of a top-p or draw
// threshold, or whose weight is within an ulp of min_p, may be chosen
// differently. Greedy rows are bit-exact.
//
// Logprobs (num_logprobs >= 0) are those of the raw row: x - (max + log(sum
// exp(x - max))), with the num_logprobs best tokens (ties: lower id first).
//
// Invalid rows: a NaN or +inf in the penalized row gives kNonFiniteLogit
// (detail: its index, the lowest such), a row with no finite logit
// kNoFiniteLogit, a penalty id outside [0, vocab) kPenaltyOutOfVocab; such a
// row's token_id is -1 and the others are unaffected.
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

inline constexpr int32_t kMaxSampledLogprobs = 20;

// Per-row parameters, validated by the host (runtime SamplingParams ranges).
struct SamplingRowParams {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int32_t top_k = 0;         // 0: off
  float min_p = 0.0f;        // [0, 1]
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t num_logprobs = -1;   // -1: no logprobs; else [0, kMaxSampledLogprobs]
  int32_t workspace_row = -1;  // row of the fp32 workspace when penalties apply, else -1
  int32_t pad = 0;
  double uniform = 0.0;  // [0, 1): the sequence's Philox draw for this position
};

// One distinct token of a row's prompt ∪ output.
struct SamplingPenalty {
  int32_t token_id = 0;
  int32_t output_count = 0;  // times in the output so far
  int32_t in_prompt = 0;     // 1 when in the prompt
};

enum SampleRowStatus : int32_t {
  kSampleOk = 0,
  kNonFiniteLogit = 1,
  kNoFiniteLogit = 2,
  kPenaltyOutOfVocab = 3,
};

struct SampledRow {
  int32_t token_id = -1;
  int32_t status = kSampleOk;  // SampleRowStatus
  int32_t detail = 0;          // kNonFiniteLogit: token index; kPenaltyOutOfVocab: the id
  float detail_value = 0.0f;   // kNonFiniteLogit: the logit
  float logprob = 0.0f;        // raw log-softmax of token_id when num_logprobs >= 0
  int32_t num_top = 0;         // entries of top_* that are set
  int32_t top_ids[kMaxSampledLogprobs];
  float top_logprobs[kMaxSampledLogprobs];
};

struct SampleRowsParams {
  int32_t num_rows = 0;
  int64_t vocab = 0;
  int64_t row_stride = 0;  // elements between logits rows; >= vocab
  const void* logits = nullptr;              // [num_rows, row_stride] of the launch's type
  const SamplingRowParams* rows = nullptr;   // [num_rows]
  const int32_t* penalty_indptr = nullptr;   // [num_rows + 1] offsets into penalties
  const SamplingPenalty* penalties = nullptr;  // [penalty_indptr[num_rows]]
  float* workspace = nullptr;  // [rows with workspace_row >= 0, vocab] fp32; null when none
  SampledRow* out = nullptr;   // [num_rows]
};

#if defined(TERN_WITH_CUDA)
// One CTA per row. Device pointers; enqueued on `stream`; allocates nothing.
// num_rows == 0 is a no-op.
cudaError_t LaunchSampleRows(ScalarType type, const SampleRowsParams& params, cudaStream_t stream);
#endif

}  // namespace tern::kernels
