// Applies a model directory's tokenizer_config.json (and
// generation_config.json) to a TokenizerSpec: special tokens it declares,
// BOS/EOS ids and whether Encode adds them.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "runtime/tokenizer/tokenizer_spec.h"

namespace tern::runtime {

// Reads, from tokenizer_config.json text:
// - added_tokens_decoder {"<id>": {content, special, lstrip, rstrip,
//   single_word}}: tokens the spec lacks are added (ids past the vocab
//   extend it);
// - bos_token / eos_token (a string, or an object with "content"): set
//   bos_id and eos_ids;
// - add_bos_token / add_eos_token: when present, replace prefix_ids /
//   suffix_ids with [bos] / [eos] or nothing.
// INVALID_ARGUMENT (naming the field) for malformed JSON, wrong types, a
// token that is not in the vocabulary, or add_bos_token without a BOS.
absl::Status ApplyTokenizerConfig(const std::string& json_text, TokenizerSpec* spec);

// Adds generation_config.json's eos_token_id (an int or a list) to
// eos_ids, and its bos_token_id when bos_id is unset. INVALID_ARGUMENT for
// malformed JSON or ids outside the vocabulary.
absl::Status ApplyGenerationConfig(const std::string& json_text, TokenizerSpec* spec);

}  // namespace tern::runtime
