// Fuzzes loading a SentencePiece tokenizer.model (runtime/tokenizer/
// sentencepiece_model.h, a hand-written protobuf reader) and building a
// Tokenizer from it: OK or INVALID_ARGUMENT / UNIMPLEMENTED, never a crash.
// A tokenizer that builds encodes and decodes a fixed text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_support.h"
#include "runtime/tokenizer/sentencepiece_model.h"
#include "runtime/tokenizer/tokenizer.h"

namespace {

bool ExpectedError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument ||
         status.code() == absl::StatusCode::kUnimplemented;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto spec = tern::runtime::ParseSentencePieceModel(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!spec.ok()) {
    FUZZ_ASSERT(ExpectedError(spec.status()));
    return 0;
  }
  auto tokenizer = tern::runtime::Tokenizer::Create(*std::move(spec));
  if (!tokenizer.ok()) {
    FUZZ_ASSERT(ExpectedError(tokenizer.status()));
    return 0;
  }
  const auto ids = (*tokenizer)->Encode(" Hello  world!\n<s> caf\xc3\xa9 \xff\xfe 42", true);
  for (int32_t id : ids) FUZZ_ASSERT(id >= 0 && id < (*tokenizer)->vocab_size());
  FUZZ_ASSERT((*tokenizer)->Decode(ids, true).ok());
  return 0;
}
