// Google's SentencePiece (Debian libsentencepiece) behind a plain interface,
// the baseline of tokenizer_bench. Kept in its own translation unit because
// sentencepiece_processor.h declares `absl::string_view` as an alias of
// std::string_view, which clashes with Abseil's own class.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace tern::bench {

class SentencePieceBaseline {
 public:
  // True when the bench was built with libsentencepiece.
  static bool Available();
  // Loads a tokenizer.model; nullptr with *error set on failure.
  static std::unique_ptr<SentencePieceBaseline> Load(const std::string& model_path, std::string* error);
  virtual ~SentencePieceBaseline() = default;
  // Ids of `text` without BOS/EOS (SentencePieceProcessor::Encode).
  virtual std::vector<int> Encode(const std::string& text) const = 0;
};

}  // namespace tern::bench
