#include "runtime/sampling/stop_checker.h"

#include <algorithm>
#include <utility>

#include "runtime/base/check.h"

namespace tern::runtime {
namespace {

bool Contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

StopChecker::StopChecker(const SamplingParams& params, std::vector<int32_t> eos_token_ids)
    : stop_strings_(params.stop),
      stop_token_ids_(params.stop_token_ids),
      eos_token_ids_(std::move(eos_token_ids)),
      max_tokens_(params.max_tokens),
      ignore_eos_(params.ignore_eos) {
  // Validate() rejects empty stop strings; drop any here so that find("")
  // cannot match everywhere if an unvalidated struct arrives.
  stop_strings_.erase(std::remove(stop_strings_.begin(), stop_strings_.end(), std::string()),
                      stop_strings_.end());
  for (const std::string& s : stop_strings_) longest_stop_ = std::max(longest_stop_, s.size());
}

StopUpdate StopChecker::Append(int32_t token_id, absl::string_view text) {
  CHECK(!finished_) << "StopChecker::Append after the sequence finished";
  ++num_tokens_;

  if (!ignore_eos_ && Contains(eos_token_ids_, token_id)) {
    return Finish(FinishReason::kStop, std::monostate());
  }
  if (Contains(stop_token_ids_, token_id)) return Finish(FinishReason::kStop, token_id);

  pending_.append(text.data(), text.size());
  if (!stop_strings_.empty()) {
    // pending_ had no complete match before this call, so any match ends in
    // the new text; searching all of pending_ is cheap (it is short).
    size_t best_start = std::string::npos;
    size_t best_end = std::string::npos;
    const std::string* best = nullptr;
    for (const std::string& s : stop_strings_) {
      const size_t start = pending_.find(s);
      if (start == std::string::npos) continue;
      const size_t end = start + s.size();
      if (best == nullptr || end < best_end || (end == best_end && start < best_start)) {
        best_start = start;
        best_end = end;
        best = &s;
      }
    }
    if (best != nullptr) {
      pending_.resize(best_start);
      return Finish(FinishReason::kStop, *best);
    }
  }
  if (max_tokens_.has_value() && num_tokens_ >= *max_tokens_) {
    return Finish(FinishReason::kLength, std::monostate());
  }

  StopUpdate update;
  const size_t hold = PartialMatchLength();
  update.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return update;
}

std::string StopChecker::Flush() {
  finished_ = true;
  return std::exchange(pending_, std::string());
}

size_t StopChecker::PartialMatchLength() const {
  const size_t max_len = std::min(pending_.size(), longest_stop_ == 0 ? 0 : longest_stop_ - 1);
  const absl::string_view pending(pending_);
  for (size_t len = max_len; len > 0; --len) {
    const absl::string_view suffix = pending.substr(pending.size() - len);
    for (const std::string& s : stop_strings_) {
      if (s.size() > len && absl::string_view(s).substr(0, len) == suffix) return len;
    }
  }
  return 0;
}

StopUpdate StopChecker::Finish(FinishReason reason, StopReason stop_reason) {
  StopUpdate update;
  update.text = Flush();
  update.finish_reason = reason;
  update.stop_reason = std::move(stop_reason);
  return update;
}

}  // namespace tern::runtime
