// Loader for Hugging Face tokenizer.json files with a BPE model: byte-level
// BPE (GPT-2, Llama-3, Qwen2 with its NFC normalizer) and SentencePiece-style BPE with
// byte fallback (Llama-2 / Mistral conversions: Prepend+Replace normalizer
// or Metaspace pre-tokenizer).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/tokenizer_spec.h"

namespace tern::runtime {

// Parses tokenizer.json text. prefix_ids/suffix_ids come from a
// TemplateProcessing post-processor when there is one; bos_id/eos_ids are
// left for tokenizer_config.json. INVALID_ARGUMENT for malformed JSON or
// inconsistent contents (e.g. a merge naming a token not in the vocab);
// UNIMPLEMENTED for components tern does not implement (WordPiece/Unigram
// models, normalizers other than NFC and the SentencePiece space handling,
// unknown split regexes). Messages start with
// "tokenizer.json:" and name the offending field.
absl::StatusOr<TokenizerSpec> ParseHfTokenizerJson(const std::string& json_text);

}  // namespace tern::runtime
