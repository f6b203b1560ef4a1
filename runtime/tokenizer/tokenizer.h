// Tokenizer: text <-> token ids for the BPE tokenizers of Hugging Face model
// directories: byte-level BPE (Llama-3, Qwen2, GPT-2; tokenizer.json) and
// SentencePiece BPE with byte fallback (Llama-2; tokenizer.json or
// tokenizer.model), with added/special tokens and BOS/EOS from
// tokenizer_config.json.
//
// Matches Hugging Face `tokenizers` (encode(text, add_special_tokens)) on
// the supported models, with these differences:
// - added tokens marked "normalized" are matched in the raw text (the
//   normalizer, NFC for Qwen2, applies to the text between them);
// - decode never applies clean_up_tokenization_spaces (so that
//   Decode(Encode(x)) == x);
// - ill-formed UTF-8 in the input is tokenized byte by byte instead of
//   being rejected.
//
// Thread safety: immutable after creation; all const methods may be called
// concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/bpe.h"
#include "runtime/tokenizer/tokenizer_spec.h"

namespace tern::runtime {

class Tokenizer {
 public:
  // Loads <dir>/tokenizer.json (preferred) or <dir>/tokenizer.model, then
  // applies <dir>/tokenizer_config.json and <dir>/generation_config.json
  // when present. NOT_FOUND when neither tokenizer file exists; otherwise
  // the loaders' INVALID_ARGUMENT / UNIMPLEMENTED errors, prefixed with the
  // file path.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromModelDirectory(const std::string& dir);

  // Builds a tokenizer from a spec. INVALID_ARGUMENT when the spec is
  // inconsistent (ids out of range, missing byte tokens).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerSpec spec);

  // Token ids of `text` (UTF-8). Added tokens found in the text become
  // their ids; with `add_special_tokens` the configured prefix (BOS) and
  // suffix (EOS) ids are added around the result. With
  // `parse_special_tokens` false, special tokens in the text ("<s>",
  // "<|eot_id|>") are tokenized as plain text (as SentencePiece does);
  // non-special added tokens still match. Never fails.
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens,
                              bool parse_special_tokens = true) const;

  // The text of `ids`: well-formed UTF-8, with U+FFFD for byte sequences
  // that do not form characters. Special tokens (control, unknown and
  // added tokens marked special) are dropped with `skip_special_tokens`.
  // INVALID_ARGUMENT for an id outside [0, vocab_size()).
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // Number of ids (largest id + 1, counting added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(spec_.pieces.size()); }
  // Beginning-of-sequence id, or -1 when the tokenizer has none.
  int32_t bos_id() const { return spec_.bos_id; }
  // Ids that end generation (tokenizer_config eos_token plus
  // generation_config eos_token_id); may be empty.
  const std::vector<int32_t>& eos_ids() const { return spec_.eos_ids; }
  bool IsEos(int32_t id) const;
  // What Encode(add_special_tokens=true) puts before / after the text.
  const std::vector<int32_t>& prefix_ids() const { return spec_.prefix_ids; }
  const std::vector<int32_t>& suffix_ids() const { return spec_.suffix_ids; }

  // The vocabulary string of `id` (e.g. "Ġworld", "▁world", "<0x0A>",
  // "<|eot_id|>"). INVALID_ARGUMENT when out of range.
  absl::StatusOr<std::string_view> IdToPiece(int32_t id) const;
  // The id of a vocabulary string, if any.
  std::optional<int32_t> PieceToId(std::string_view piece) const;
  bool IsSpecial(int32_t id) const { return id >= 0 && id < vocab_size() && is_special_[id]; }
  TokenizerSpec::Model model() const { return spec_.model; }

  // Decoding primitive shared with IncrementalDetokenizer: appends the raw
  // bytes `id` contributes to decoded text (possibly a partial UTF-8
  // sequence) to `bytes`. `*at_start` is true before the first token that
  // produced text and is updated; the first token's leading space is
  // dropped when the tokenizer strips it. Requires 0 <= id < vocab_size().
  void AppendTokenBytes(int32_t id, bool skip_special_tokens, bool* at_start, std::string* bytes) const;

 private:
  // Reusable buffers for one Encode call.
  struct Scratch {
    std::vector<int32_t> symbols;
    std::vector<std::string_view> words;
    std::string text;
    std::string word;
    std::string normalized;  // the segment in NFC, when the spec asks for it
  };

  explicit Tokenizer(TokenizerSpec spec);
  absl::Status Init();
  void EncodePlain(std::string_view text, bool at_text_start, Scratch* scratch, std::vector<int32_t>* ids) const;
  void EncodeByteLevelWord(std::string_view word, Scratch* scratch, std::vector<int32_t>* ids) const;
  void EncodeCharWord(std::string_view word, Scratch* scratch, std::vector<int32_t>* ids) const;
  int32_t FindPiece(std::string_view piece) const;

  TokenizerSpec spec_;
  // Pieces that text can produce (everything but control and unknown).
  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::unique_ptr<BpeMerges> merges_;
  std::unique_ptr<AddedTokenMatcher> added_;          // every added token
  std::unique_ptr<AddedTokenMatcher> added_plain_;    // added tokens that are not special
  std::vector<bool> is_special_;      // [vocab_size]
  std::vector<std::string> decoded_;  // [vocab_size] bytes each token decodes to
  // Where SentencePiece-style text is cut into words before BPE.
  enum class MarkerSplit { kNone, kBeforeEveryMarker, kBeforeMarkerAfterText };
  MarkerSplit marker_split_ = MarkerSplit::kNone;
  // Byte-level: the id and vocabulary string of each byte's printable char.
  std::array<int32_t, 256> byte_level_id_{};
  std::array<std::string, 256> byte_level_char_;
  // Byte fallback: the id of <0xAB> for each byte, or -1.
  std::array<int32_t, 256> byte_piece_id_{};
};

}  // namespace tern::runtime
