// What the sampler remembers about one sequence between steps: its random
// stream and the token counts that penalties read.
//
// Randomness: the uniform for output position t is PhiloxUniform(seed, stream,
// t) (see philox.h), so a sequence's draws depend only on its own seed, stream
// and length: not on batch composition, thread, platform or preemption.
// Sibling sequences of one request (n > 1, SoT points) share the request's
// seed and take streams 0, 1, 2, ...
//
// Penalty semantics (documented in penalties.h): the repetition penalty looks
// at the set of prompt and output tokens (Hugging Face); presence and
// frequency penalties look at output tokens only, with counts (OpenAI, vLLM).
//
// Counting costs a hash-map update per token (and rehashes as the output
// grows), so a sequence whose parameters have no penalty leaves its counts
// untracked; penalties then refuse the state (FAILED_PRECONDITION) rather
// than read empty counts.
//
// Thread: single-thread; owned with its sequence by the engine thread.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "runtime/sampling/philox.h"

namespace tern::runtime {

// Whether a SequenceSamplingState keeps per-token output counts.
enum class OutputCounts { kTracked, kUntracked };

class SequenceSamplingState {
 public:
  // `prompt_token_ids` may contain repeats and may be empty. kUntracked
  // (for sequences sampled without penalties) skips the output counts.
  SequenceSamplingState(uint64_t seed, uint32_t stream, absl::Span<const int32_t> prompt_token_ids,
                        OutputCounts counts = OutputCounts::kTracked);

  // Records an accepted output token: it advances the random stream and, when
  // tracked, counts it for penalties. Sampling itself does not change the
  // state, so sampling the same position twice gives the same token.
  void AppendOutputToken(int32_t token_id);

  // The two halves of AppendOutputToken, for an output reserved before it is
  // known (async scheduling): the stream advances past it now, and the token
  // is counted (when tracked) once known. RetractOutputToken takes back an
  // advance (and `counted_token`'s count, when one was counted; -1: none).
  void AdvanceStream() { ++num_output_tokens_; }
  void CountOutputToken(int32_t token_id);
  void RetractOutputToken(int32_t counted_token = -1);

  // The uniform in [0, 1) that sampling uses for the next output position.
  double NextUniform() const { return PhiloxUniform(seed_, stream_, num_output_tokens_); }

  uint64_t seed() const { return seed_; }
  uint32_t stream() const { return stream_; }
  int64_t num_output_tokens() const { return num_output_tokens_; }
  // Distinct prompt token ids, ascending.
  const std::vector<int32_t>& prompt_token_set() const { return prompt_token_set_; }
  bool InPrompt(int32_t token_id) const;
  bool tracks_output_counts() const { return counts_ == OutputCounts::kTracked; }
  // token id -> times it appears in the output so far; empty when untracked.
  const absl::flat_hash_map<int32_t, int32_t>& output_counts() const { return output_counts_; }

 private:
  uint64_t seed_;
  uint32_t stream_;
  int64_t num_output_tokens_ = 0;
  OutputCounts counts_;
  std::vector<int32_t> prompt_token_set_;
  absl::flat_hash_map<int32_t, int32_t> output_counts_;
};

// A seed from std::random_device, for requests that did not set one.
uint64_t DrawRandomSeed();

}  // namespace tern::runtime
