#include "runtime/sampling/penalties.h"

#include "absl/strings/str_cat.h"

namespace tern::runtime {
namespace {

absl::Status OutOfVocab(int32_t token_id, size_t vocab) {
  return absl::InvalidArgumentError(
      absl::StrCat("token id ", token_id, " is outside the vocabulary [0, ", vocab, ")"));
}

inline float Repeat(float logit, float penalty) {
  return logit > 0.0f ? logit / penalty : logit * penalty;
}

}  // namespace

absl::Status ApplyPenalties(absl::Span<float> logits, const SamplingParams& params,
                            const SequenceSamplingState& state) {
  if (params.HasPenalties() && !state.tracks_output_counts()) {
    return absl::FailedPreconditionError("penalties need a sampling state that tracks output counts");
  }
  const size_t vocab = logits.size();
  auto in_vocab = [vocab](int32_t id) { return id >= 0 && static_cast<size_t>(id) < vocab; };

  const float repetition = params.repetition_penalty;
  if (repetition != 1.0f) {
    for (int32_t id : state.prompt_token_set()) {
      if (!in_vocab(id)) return OutOfVocab(id, vocab);
      logits[id] = Repeat(logits[id], repetition);
    }
    // Output tokens also in the prompt were penalized above: once per token.
    for (const auto& [id, count] : state.output_counts()) {
      if (!in_vocab(id)) return OutOfVocab(id, vocab);
      if (!state.InPrompt(id)) logits[id] = Repeat(logits[id], repetition);
    }
  }
  const float frequency = params.frequency_penalty;
  const float presence = params.presence_penalty;
  if (frequency != 0.0f || presence != 0.0f) {
    for (const auto& [id, count] : state.output_counts()) {
      if (!in_vocab(id)) return OutOfVocab(id, vocab);
      logits[id] -= frequency * static_cast<float>(count) + presence;
    }
  }
  return absl::OkStatus();
}

}  // namespace tern::runtime
