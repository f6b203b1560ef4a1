// IncrementalDetokenizer: turns a stream of generated token ids into text
// pieces, one call per token, never emitting a partial UTF-8 character.
// A multi-byte character split across byte tokens (<0xE4><0xBD><0xA0>, or
// byte-level pieces) is held back until complete.
//
// Invariant: the concatenation of every Push() result followed by Finish()
// equals tokenizer.Decode(all ids, skip_special_tokens). In particular
// Llama-2's U+2581 prefix space is dropped from the first text token only
// when the stream starts the sequence (Options::at_sequence_start).
//
// Thread safety: not thread-safe; one instance per sequence, used by one
// thread at a time. Borrows the tokenizer, which must outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tern::runtime {

class IncrementalDetokenizer {
 public:
  struct Options {
    bool skip_special_tokens = true;
    // True when the first pushed token starts the text (then a
    // SentencePiece tokenizer drops its leading space, as Decode does);
    // false when the tokens continue a prompt, so " world" keeps its space.
    bool at_sequence_start = true;
  };

  IncrementalDetokenizer(const Tokenizer& tokenizer, Options options);

  // Adds one token; returns the text completed by it (may be empty).
  // INVALID_ARGUMENT for an id outside the vocabulary (state unchanged).
  absl::StatusOr<std::string> Push(int32_t id);

  // Ends the stream: returns U+FFFD for a trailing incomplete character,
  // else "". The detokenizer then starts a new stream, continuing the text.
  std::string Finish();

  // Bytes held back waiting for the rest of a character (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  Options options_;
  bool at_start_;
  std::string pending_;  // an incomplete UTF-8 sequence
};

}  // namespace tern::runtime
