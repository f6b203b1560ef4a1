// TokenizerSpec: everything that defines a BPE tokenizer, independent of the
// file it came from. Loaders (hf_tokenizer_json.h for tokenizer.json,
// sentencepiece_model.h for tokenizer.model, tokenizer_config.h for
// tokenizer_config.json) fill one in; Tokenizer::Create builds the runtime
// tables from it. Tests build small specs by hand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/bpe.h"
#include "runtime/tokenizer/pretokenizer.h"

namespace tern::runtime {

// What a vocabulary entry is; decoding and special-token skipping use it.
// The values follow SentencePiece's ModelProto.SentencePiece.Type.
enum class TokenType : uint8_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <s>, </s>: special
  kUserDefined = 4,  // matched atomically in text, not special
  kUnused = 5,       // never emitted by BPE (split back into its parts)
  kByte = 6,         // <0xAB>: one raw byte (byte fallback)
};

// When the SentencePiece word-boundary marker U+2581 is prepended to a
// plain-text segment (Hugging Face's Metaspace prepend_scheme).
enum class PrependScheme {
  kNever,
  kFirst,   // only to a segment that starts the text (Llama-2, non-legacy)
  kAlways,  // to every plain-text segment (legacy Prepend normalizer)
};

// The largest token id + 1 a tokenizer may declare (about 16x the largest
// published vocabularies). Pieces are indexed by id, so an id bounds the
// memory a tokenizer file can make the parser take: a 64 KB file naming id
// 2^29 would otherwise ask for tens of GB.
inline constexpr int64_t kMaxVocabularySize = int64_t(1) << 22;

struct TokenizerSpec {
  enum class Model {
    kByteLevelBpe,       // GPT-2 / Llama-3 / Qwen2: BPE over bytes mapped to printable chars
    kSentencePieceBpe,   // Llama-2: BPE over UTF-8 chars, spaces as U+2581, byte fallback
  };
  Model model = Model::kByteLevelBpe;

  // NFC normalizer (Qwen2): each plain-text segment is put in Unicode
  // Normalization Form C before pre-tokenization.
  bool nfc = false;

  // [vocab_size] the token's text as stored in the vocabulary; "" for ids
  // that have no entry (holes).
  std::vector<std::string> pieces;
  // [vocab_size] parallel to `pieces`.
  std::vector<TokenType> types;
  std::vector<BpeMerges::Merge> merges;

  // Byte-level: the split regex applied to each plain-text segment; none
  // means the segment is one word. add_prefix_space prepends ' ' to a
  // segment that starts the text when it does not start with a space.
  std::optional<SplitPattern> split;
  bool add_prefix_space = false;
  // Whole pre-tokenized words found in the vocabulary skip merging
  // (Llama-3's "ignore_merges": true).
  bool ignore_merges = false;

  // SentencePiece style: spaces become U+2581 before BPE, U+2581 becomes a
  // space when decoding.
  PrependScheme prepend = PrependScheme::kNever;
  bool remove_extra_whitespaces = false;  // SentencePiece normalizer option
  // Split words at each U+2581 that follows another character (Metaspace
  // split=true). When false, Create still splits there if no merge can
  // cross such a boundary, which gives the same ids faster.
  bool split_on_space_marker = false;
  // Characters missing from the vocabulary become <0xAB> byte tokens.
  bool byte_fallback = false;
  int32_t unk_id = -1;     // used for missing characters without byte fallback
  bool fuse_unk = false;   // consecutive unknowns become one unk token
  // Decode drops one leading space of the first decoded token (the space
  // that encoding's U+2581 prefix added).
  bool strip_leading_space = false;

  // Matched in raw text before BPE; ids must be < pieces.size(), and the
  // piece at that id is set to the content.
  std::vector<AddedToken> added_tokens;

  // Ids added around the text by Encode(add_special_tokens=true).
  std::vector<int32_t> prefix_ids;
  std::vector<int32_t> suffix_ids;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
};

}  // namespace tern::runtime
