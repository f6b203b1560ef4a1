// Loader for SentencePiece tokenizer.model files (a serialized
// sentencepiece.ModelProto), decoded with a small hand-written protobuf
// wire-format reader so the runtime does not link libsentencepiece. Reads
// the fields a BPE model needs: pieces (piece, score, type), trainer_spec
// (model_type, byte_fallback, unk/bos/eos ids) and normalizer_spec
// (add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces,
// precompiled_charsmap).
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/tokenizer_spec.h"

namespace tern::runtime {

// Parses the bytes of a tokenizer.model file. Merges are derived from the
// piece scores (SentencePiece BPE merges the adjacent pair whose
// concatenation is the highest-scoring piece). prefix_ids is {bos_id}, as
// Hugging Face's LlamaTokenizer adds BOS by default; tokenizer_config.json
// may override it. INVALID_ARGUMENT for truncated or malformed protobuf
// data; UNIMPLEMENTED for Unigram/word/char models and for normalizers
// with a precompiled character map (nmt_nfkc). Messages start with
// "tokenizer.model:".
absl::StatusOr<TokenizerSpec> ParseSentencePieceModel(std::string_view bytes);

}  // namespace tern::runtime
