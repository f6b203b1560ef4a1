// Logit penalties, applied in place to one row before temperature and the
// filters. In this order (as vLLM does):
//
// 1. Repetition penalty r (Hugging Face RepetitionPenaltyLogitsProcessor):
//    once for every distinct token id in prompt ∪ output, a positive logit is
//    divided by r and a negative one multiplied by r (r > 1 discourages).
// 2. Frequency penalty f and presence penalty p (OpenAI semantics, output
//    tokens only): logit -= f * count + p * (count > 0).
//
// Neutral values (r = 1, f = p = 0) leave the row untouched.
#pragma once

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/sequence_sampling_state.h"

namespace tern::runtime {

// `logits`: [vocab] fp32. INVALID_ARGUMENT when a prompt or output token id of
// `state` is outside [0, vocab); the row may then be partly penalized.
// FAILED_PRECONDITION (row untouched) when `params` has penalties and `state`
// does not track output counts.
absl::Status ApplyPenalties(absl::Span<float> logits, const SamplingParams& params,
                            const SequenceSamplingState& state);

}  // namespace tern::runtime
