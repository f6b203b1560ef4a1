#include "runtime/tokenizer/incremental_detokenizer.h"

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/unicode.h"

namespace tern::runtime {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, Options options)
    : tokenizer_(tokenizer), options_(options), at_start_(options.at_sequence_start) {}

absl::StatusOr<std::string> IncrementalDetokenizer::Push(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is outside [0, ", tokenizer_.vocab_size(), ")"));
  }
  tokenizer_.AppendTokenBytes(id, options_.skip_special_tokens, &at_start_, &pending_);
  std::string text;
  // Lossy repair is left-to-right and only ever holds back a trailing
  // sequence that could still complete, so emitting what it consumes now
  // gives the same text as repairing everything at the end.
  const size_t consumed = AppendUtf8Lossy(pending_, /*at_end=*/false, &text);
  pending_.erase(0, consumed);
  return text;
}

std::string IncrementalDetokenizer::Finish() {
  std::string text;
  AppendUtf8Lossy(pending_, /*at_end=*/true, &text);
  pending_.clear();
  return text;
}

}  // namespace tern::runtime
