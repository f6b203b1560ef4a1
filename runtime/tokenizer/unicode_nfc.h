// Unicode Normalization Form C (canonical decomposition, canonical ordering,
// canonical composition; UAX #15) for tokenizers whose tokenizer.json has an
// NFC normalizer (Qwen2). Tables: unicode_nfc_tables.h. Pure and
// thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace tern::runtime {

// False when NFC leaves `text` unchanged for certain: no byte of it starts
// a code point at or above U+0300, below which every code point is stable
// under NFC. A cheap scan, so callers skip AppendNfc for most text.
bool MayChangeUnderNfc(std::string_view text);

// Appends the NFC form of the UTF-8 `text` to `out`. Ill-formed bytes are
// copied through unchanged and, like a starter that composes with nothing,
// block composition across them.
void AppendNfc(std::string_view text, std::string* out);

}  // namespace tern::runtime
