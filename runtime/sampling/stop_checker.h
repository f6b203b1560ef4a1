// Decides when a sequence is finished and which of its text the client may
// see yet. Fed one output token at a time with the text that token added.
//
// Checked per token, in this order:
// 1. EOS (any of the model's EOS ids, unless ignore_eos): finish "stop", no
//    stop_reason; the token's own text is not returned.
// 2. A stop token id: finish "stop", stop_reason = the id; its text is not
//    returned.
// 3. Stop strings, matched on bytes of the text so far, across token
//    boundaries: the first to complete wins (the earliest end; at equal ends
//    the earliest start). Text before it is returned; the stop string and
//    anything after it are not. stop_reason = the stop string.
// 4. max_tokens reached: finish "length"; all text is returned.
// While running, a suffix of the text that could be the start of a stop
// string is held back, so a client never sees part of a stop string; it is
// released as soon as it can no longer become one, or at the finish.
//
// Text is expected in whole UTF-8 characters (the detokenizer holds back an
// incomplete one). Stop strings are valid UTF-8, so every cut made here falls
// on a character boundary.
//
// Thread: single-thread; owned with its sequence.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/sampling/sampling_params.h"

namespace tern::runtime {

enum class FinishReason {
  kNone,    // still running
  kStop,    // EOS, a stop token id or a stop string
  kLength,  // max_tokens generated
};

// As vLLM's stop_reason: nothing (EOS, length, running), the stop token id, or
// the matched stop string.
using StopReason = std::variant<std::monostate, int32_t, std::string>;

struct StopUpdate {
  std::string text;  // new text the client may see now; often empty
  FinishReason finish_reason = FinishReason::kNone;
  StopReason stop_reason;
};

class StopChecker {
 public:
  // Copies what it needs from `params` (stop, stop_token_ids, max_tokens,
  // ignore_eos). `eos_token_ids`: the model's EOS ids (generation_config.json
  // may list several); may be empty.
  StopChecker(const SamplingParams& params, std::vector<int32_t> eos_token_ids);

  // Feeds the next output token and the text it added (may be empty). Must not
  // be called once finished (CHECK).
  StopUpdate Append(int32_t token_id, absl::string_view text);

  // Releases held-back text when the sequence ends for a reason this class
  // does not see (context full, abort). Leaves the checker finished.
  std::string Flush();

  bool finished() const { return finished_; }
  int64_t num_tokens() const { return num_tokens_; }
  // Bytes received but not yet released.
  size_t held_back_bytes() const { return pending_.size(); }

 private:
  // Length of the longest suffix of pending_ that is a proper prefix of some
  // stop string.
  size_t PartialMatchLength() const;
  // Releases everything pending and finishes with `reason`.
  StopUpdate Finish(FinishReason reason, StopReason stop_reason);

  std::vector<std::string> stop_strings_;
  std::vector<int32_t> stop_token_ids_;
  std::vector<int32_t> eos_token_ids_;
  std::optional<int32_t> max_tokens_;
  bool ignore_eos_;
  size_t longest_stop_ = 0;

  std::string pending_;  // received, not yet released: at most longest_stop_ - 1 bytes between calls
  int64_t num_tokens_ = 0;
  bool finished_ = false;
};

}  // namespace tern::runtime
