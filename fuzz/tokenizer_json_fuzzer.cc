// Fuzzes loading a Hugging Face tokenizer.json (runtime/tokenizer/
// hf_tokenizer_json.h) and building a Tokenizer from it: OK or
// INVALID_ARGUMENT / UNIMPLEMENTED, never a crash. A tokenizer that builds
// encodes and decodes a fixed text, which must give ids inside its
// vocabulary that decode without error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_support.h"
#include "runtime/tokenizer/hf_tokenizer_json.h"
#include "runtime/tokenizer/tokenizer.h"

namespace {

bool ExpectedError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument ||
         status.code() == absl::StatusCode::kUnimplemented;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto spec = tern::runtime::ParseHfTokenizerJson(std::string(reinterpret_cast<const char*>(data), size));
  if (!spec.ok()) {
    FUZZ_ASSERT(ExpectedError(spec.status()));
    return 0;
  }
  auto tokenizer = tern::runtime::Tokenizer::Create(*std::move(spec));
  if (!tokenizer.ok()) {
    FUZZ_ASSERT(ExpectedError(tokenizer.status()));
    return 0;
  }
  const auto ids = (*tokenizer)->Encode("Hello world! <s> 12 caf\xc3\xa9 \xe2\x96\x81x\n\t", true);
  for (int32_t id : ids) FUZZ_ASSERT(id >= 0 && id < (*tokenizer)->vocab_size());
  FUZZ_ASSERT((*tokenizer)->Decode(ids, false).ok());
  return 0;
}
