// Regex pre-tokenizers of byte-level BPE tokenizers, hand-written as Unicode
// scanners (std::regex has no \p{L}). Each splits text into the pieces that
// the corresponding Hugging Face Split(Regex, Isolated) pre-tokenizer yields,
// with leftmost-first alternation and the regex's backtracking semantics.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::runtime {

enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} (one digit per piece) instead of \p{N}{1,3}.
  kQwen2,
};

// The pattern a tokenizer.json regex string names. UNIMPLEMENTED for any
// other regex (the message quotes it).
absl::StatusOr<SplitPattern> SplitPatternFromRegex(const std::string& regex);

// The regex source text of `pattern`, as it appears in tokenizer.json.
std::string_view SplitPatternRegex(SplitPattern pattern);

// Splits `text` into consecutive non-empty pieces that cover it exactly
// (views into `text`), appending them to `pieces`. Ill-formed UTF-8 bytes
// are treated as single characters that are neither letters, numbers nor
// spaces.
void SplitText(SplitPattern pattern, std::string_view text, std::vector<std::string_view>* pieces);

}  // namespace tern::runtime
