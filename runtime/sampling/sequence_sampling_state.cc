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
  CountOutputToken(token_id);
  AdvanceStream();
}

void SequenceSamplingState::CountOutputToken(int32_t token_id) {
  if (counts_ == OutputCounts::kTracked) ++output_counts_[token_id];
}

void SequenceSamplingState::RetractOutputToken(int32_t counted_token) {
  CHECK_GT(num_output_tokens_, 0);
  --num_output_tokens_;
  if (counted_token < 0 || counts_ != OutputCounts::kTracked) return;
  auto it = output_counts_.find(counted_token);
  CHECK(it != output_counts_.end() && it->second > 0) << "token " << counted_token << " was not counted";
  if (--it->second == 0) output_counts_.erase(it);
}

bool SequenceSamplingState::InPrompt(int32_t token_id) const {
  return std::binary_search(prompt_token_set_.begin(), prompt_token_set_.end(), token_id);
}

uint64_t DrawRandomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

}  // namespace tern::runtime
