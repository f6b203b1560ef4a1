#include "runtime/sampling/sequence_sampling_state.h"

#include <algorithm>
#include <random>

#include "runtime/base/check.h"

namespace tern::runtime {

SequenceSamplingState::SequenceSamplingState(uint64_t seed, uint32_t stream,
                                             absl::Span<const int32_t> prompt_token_ids, OutputCounts counts)
    : seed_(seed),
      stream_(stream),
      counts_(counts),
      prompt_token_set_(prompt_token_ids.begin(), prompt_token_ids.end()) {
  // A sorted vector instead of a hash set: built once, scanned every step by
  // the repetition penalty, and probed by binary search for output tokens.
  std::sort(prompt_token_set_.begin(), prompt_token_set_.end());
  prompt_token_set_.erase(std::unique(prompt_token_set_.begin(), prompt_token_set_.end()),
                          prompt_token_set_.end());
}

void SequenceSamplingState::AppendOutputToken(int32_t token_id) {
  if (counts_ == OutputCounts::kTracked) ++output_counts_[token_id];
  ++num_output_tokens_;
}

void SequenceSamplingState::RetractOutputToken() {
  CHECK(counts_ == OutputCounts::kUntracked) << "an output counted for penalties cannot be retracted";
  CHECK_GT(num_output_tokens_, 0);
  --num_output_tokens_;
}

bool SequenceSamplingState::InPrompt(int32_t token_id) const {
  return std::binary_search(prompt_token_set_.begin(), prompt_token_set_.end(), token_id);
}

uint64_t DrawRandomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

}  // namespace tern::runtime
