// Samples the next token of one sequence from its logits row.
//
// Order of operations (Hugging Face / vLLM):
//   penalties (penalties.h) -> temperature -> top-k -> top-p -> min-p -> draw.
// temperature == 0 is greedy: the argmax of the penalized logits (the lowest
// id wins a tie); the filters cannot change the argmax and are skipped.
//
// Filter semantics, with p the temperature-scaled softmax of the penalized row:
//   top-k: keep the k most likely tokens (ties: lower id first); k == 0 or
//          k >= vocab keeps all.
//   top-p: over the top-k set, renormalized, keep the shortest most-likely-
//          first prefix whose mass reaches top_p (the token that crosses
//          top_p is kept; at least one token always is).
//   min-p: keep tokens with p >= min_p * p(most likely token).
//   Tokens whose logit is -inf are never kept.
// The draw: the kept tokens, in ascending id order, with weights
// exp((logit - max) / temperature), are walked as an inverse CDF with the
// sequence's uniform for this position (SequenceSamplingState::NextUniform,
// a Philox4x32-10 draw). Same seed, same logits: same token, on any platform
// whose expf agrees (the weights are float exps summed in double).
//
// Logprobs (when params.logprobs is set) are those of the raw model
// distribution: log-softmax of the row as given, before penalties,
// temperature and filters, as vLLM returns by default.
//
// Cost: two or three passes over the vocabulary and one expf per finite logit;
// top-k selects with nth_element and top-p sorts only the prefix it needs, so
// the vocabulary is never fully sorted unless top-p needs most of it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/sequence_sampling_state.h"

namespace tern::runtime {

struct TokenLogprob {
  int32_t token_id = -1;
  float logprob = 0.0f;  // natural log
};

struct SampledToken {
  int32_t token_id = -1;
  // Raw-distribution log-probability of token_id; set only when
  // params.logprobs is set.
  std::optional<float> logprob;
  // The params.logprobs most likely tokens of the raw distribution, best
  // first (ties: lower id first); fewer when fewer tokens have a finite logit.
  // May include token_id. Empty when params.logprobs is unset or 0.
  std::vector<TokenLogprob> top_logprobs;
};

// Holds scratch that grows to the largest vocabulary seen and is then reused,
// so steady-state calls allocate only the returned top_logprobs.
// Thread: not thread-safe; use one Sampler per sampling thread, for any number
// of sequences (it keeps no per-sequence state).
class Sampler {
 public:
  Sampler() = default;
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // `logits`: [vocab] fp32, the model's row for this sequence's next position;
  // not modified. `params` must have passed Validate(). `state` is read only:
  // the caller records the accepted token with state.AppendOutputToken.
  // INVALID_ARGUMENT when the row is empty, holds NaN or +inf, has no finite
  // logit, or when state holds a token id outside [0, vocab).
  absl::StatusOr<SampledToken> Sample(absl::Span<const float> logits, const SamplingParams& params,
                                      const SequenceSamplingState& state);

 private:
  struct Candidate {
    float logit;
    int32_t token_id;
    float weight;  // exp((logit - max) / temperature)
  };

  // Above this k, top-k selects with nth_element over all tokens instead of
  // a heap.
  static constexpr int32_t kHeapTopKLimit = 512;

  int32_t SampleFromFiltered(absl::Span<const float> logits, float max_logit, int64_t num_finite,
                             const SamplingParams& params, double uniform);
  // candidates_ = the k best tokens (unordered, weights unset).
  void SelectTopK(absl::Span<const float> logits, int32_t k);
  // On candidates_ sorted best first: keeps the shortest prefix of mass >= target.
  void KeepTopP(double target);
  // Orders candidates_ best first only as far as needed to keep the shortest
  // prefix of mass >= target; keeps all when they weigh less.
  void PartialSortUntilMass(double target);
  // Drops candidates weighing < min_p (weights are relative to the max).
  void KeepMinP(float min_p);
  void FillLogprobs(absl::Span<const float> raw, int32_t num_top, SampledToken* token) const;

  std::vector<float> penalized_;       // [vocab] copy of the row when penalties apply
  std::vector<float> weights_;         // [vocab] exp((logit - max) / temperature)
  std::vector<Candidate> candidates_;  // [<= vocab] tokens still allowed
};

}  // namespace tern::runtime
