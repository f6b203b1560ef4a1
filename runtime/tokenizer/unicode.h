// UTF-8 helpers for the tokenizers: decoding one code point, classifying it
// for the split regexes, and lossy UTF-8 repair for detokenization.
// All functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/tokenizer/unicode_tables.h"

namespace tern::runtime {

// The U+2581 LOWER ONE EIGHTH BLOCK that SentencePiece uses for spaces.
inline constexpr std::string_view kSentencePieceSpace = "\xE2\x96\x81";

// One code point decoded from UTF-8. An ill-formed byte decodes as
// {cp = 0xFFFD, length = 1, valid = false} so callers can keep raw bytes.
struct DecodedCodepoint {
  char32_t cp;
  int length;  // bytes consumed, 1..4
  bool valid;
};

// Decodes the code point starting at text[pos]. Requires pos < text.size().
DecodedCodepoint DecodeUtf8(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of `cp` (which must be <= 0x10FFFF).
void AppendUtf8(char32_t cp, std::string* out);

// Letter, number, White_Space, or other. Ill-formed bytes are kOther.
CodepointClass ClassifyCodepoint(char32_t cp);

// Appends `bytes` to `out` as well-formed UTF-8, replacing each maximal
// ill-formed subpart with U+FFFD (the same substitution as Rust's
// String::from_utf8_lossy, which Hugging Face tokenizers use). When
// `at_end` is false, a trailing sequence that is incomplete but could still
// become valid is left unconsumed. Returns the number of bytes consumed.
size_t AppendUtf8Lossy(std::string_view bytes, bool at_end, std::string* out);

}  // namespace tern::runtime
