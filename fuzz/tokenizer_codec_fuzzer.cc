// Fuzzes Tokenizer::Encode / Decode and the IncrementalDetokenizer
// (runtime/tokenizer/) on three real tokenizers: the demo LLM's
// (models/tern-demo-llm, byte-level BPE), Llama-3's tokenizer.json and
// Llama-2's tokenizer.model (SentencePiece BPE with byte fallback).
//
// Input: byte 0 picks the tokenizer (bits 0-1), the mode (bit 2) and flags
// (bits 3-5); the rest is text (encode mode) or little-endian 16-bit ids
// (decode mode, some past the vocabulary). Properties:
// - Encode gives ids inside the vocabulary, which Decode accepts;
// - well-formed UTF-8 without special-token parsing round-trips,
//   Decode(Encode(text)) == text (SentencePiece: text without U+2581);
// - Decode fails exactly when an id is out of range (INVALID_ARGUMENT);
// - streaming the ids through IncrementalDetokenizer gives Decode's text,
//   piece by piece well-formed.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "runtime/tokenizer/incremental_detokenizer.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode.h"

namespace {

using tern::runtime::Tokenizer;

std::vector<std::unique_ptr<Tokenizer>>* tokenizers = nullptr;

std::unique_ptr<Tokenizer> Load(const char* relative_dir) {
  auto tokenizer = Tokenizer::FromModelDirectory(std::string(TERN_FUZZ_SOURCE_DIR) + "/" + relative_dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "fuzz target set-up: %s\n", tokenizer.status().ToString().c_str());
    std::abort();
  }
  return *std::move(tokenizer);
}

bool IsWellFormedUtf8(const std::string& text) {
  std::string repaired;
  tern::runtime::AppendUtf8Lossy(text, /*at_end=*/true, &repaired);
  return repaired == text;
}

void CheckStreamMatchesDecode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip_special) {
  const auto full = tokenizer.Decode(ids, skip_special);
  bool in_range = true;
  for (int32_t id : ids) in_range = in_range && id >= 0 && id < tokenizer.vocab_size();
  FUZZ_ASSERT(full.ok() == in_range);
  if (!full.ok()) {
    FUZZ_ASSERT(full.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  FUZZ_ASSERT(IsWellFormedUtf8(*full));
  tern::runtime::IncrementalDetokenizer detokenizer(tokenizer, {.skip_special_tokens = skip_special});
  std::string streamed;
  for (int32_t id : ids) {
    const auto piece = detokenizer.Push(id);
    FUZZ_ASSERT(piece.ok());
    FUZZ_ASSERT(IsWellFormedUtf8(*piece));
    FUZZ_ASSERT(detokenizer.pending_bytes() <= 3);
    streamed += *piece;
  }
  streamed += detokenizer.Finish();
  FUZZ_ASSERT(streamed == *full);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizers = new std::vector<std::unique_ptr<Tokenizer>>();
  tokenizers->push_back(Load("models/tern-demo-llm"));
  tokenizers->push_back(Load("tests/data/tokenizers/llama3"));
  tokenizers->push_back(Load("tests/data/tokenizers/llama2"));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  const Tokenizer& tokenizer = *(*tokenizers)[(control & 3) % tokenizers->size()];
  const bool decode_mode = control & 4;
  const bool add_special = control & 8;
  const bool parse_special = control & 16;
  const bool skip_special = control & 32;
  ++data;
  --size;

  if (decode_mode) {
    std::vector<int32_t> ids;
    const int32_t modulus = tokenizer.vocab_size() + 16;  // a few ids past the end
    for (size_t i = 0; i + 1 < size; i += 2) {
      const int v = data[i] | (data[i + 1] << 8);
      ids.push_back((control & 64) && v == 0xFFFF ? -1 : v % modulus);
    }
    CheckStreamMatchesDecode(tokenizer, ids, skip_special);
    return 0;
  }

  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = tokenizer.Encode(text, add_special, parse_special);
  CheckStreamMatchesDecode(tokenizer, ids, skip_special);
  const bool spm = tokenizer.model() != tern::runtime::TokenizerSpec::Model::kByteLevelBpe;
  if (!parse_special && IsWellFormedUtf8(text) &&
      !(spm && text.find(tern::runtime::kSentencePieceSpace) != std::string::npos)) {
    const auto decoded = tokenizer.Decode(tokenizer.Encode(text, add_special, /*parse_special_tokens=*/false),
                                          /*skip_special_tokens=*/true);
    FUZZ_ASSERT(decoded.ok());
    FUZZ_ASSERT(*decoded == text);
  }
  return 0;
}
