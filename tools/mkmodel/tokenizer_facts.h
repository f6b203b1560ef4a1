// What tern-mkmodel needs from a tokenizer directory: the vocabulary size and
// the BOS/EOS ids, read from tokenizer.json or tokenizer.model plus
// tokenizer_config.json. (Encoding lives in runtime/tokenizer/.)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::tools {

struct TokenizerFacts {
  int64_t vocab_size = 0;
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  std::vector<std::string> files;  // the tokenizer files present, to copy
};

absl::StatusOr<TokenizerFacts> ReadTokenizerFacts(const std::string& dir);

}  // namespace tern::tools
