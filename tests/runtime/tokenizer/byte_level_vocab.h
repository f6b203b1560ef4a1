// For tokenizer tests that build a byte-level tokenizer.json by hand: the 256
// single-byte tokens of GPT-2's byte alphabet, rebuilt independently of the
// tokenizer under test.
#pragma once

#include <string>

#include "nlohmann/json.hpp"
#include "runtime/tokenizer/unicode.h"

namespace tern::runtime::testing {

// {"<byte char>": id} for ids 0..255, byte b having id b.
inline nlohmann::json ByteLevelAlphabetVocab() {
  nlohmann::json vocab = nlohmann::json::object();
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    std::string ch;
    AppendUtf8(printable ? b : next++, &ch);
    vocab[ch] = b;
  }
  return vocab;
}

}  // namespace tern::runtime::testing
