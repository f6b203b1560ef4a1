// Fuzzes the readers of a model directory's config.json: the LLM config
// (runtime/model/hf_config.h), the diffusion transformer config
// (runtime/dit/dit_config.h) and quantization_config
// (runtime/model/quantized_checkpoint.h). Each must answer OK or
// INVALID_ARGUMENT (UNIMPLEMENTED for a recognised but unsupported
// quantization), never crash; a parsed quantization is asked how a few
// typical modules are stored.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_support.h"
#include "runtime/dit/dit_config.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/quantized_checkpoint.h"

namespace {

bool ExpectedError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument ||
         status.code() == absl::StatusCode::kUnimplemented;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto llm = tern::runtime::ParseHfConfig(text);
  if (!llm.ok()) FUZZ_ASSERT(ExpectedError(llm.status()));
  const auto dit = tern::runtime::ParseDitConfig(text);
  if (!dit.ok()) FUZZ_ASSERT(ExpectedError(dit.status()));
  const auto quantization = tern::runtime::CheckpointQuantization::Parse(text);
  if (!quantization.ok()) {
    FUZZ_ASSERT(ExpectedError(quantization.status()));
    return 0;
  }
  for (const char* module : {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "lm_head",
                             "model.layers.0.block_sparse_moe.gate"}) {
    (void)quantization->ForModule(module);
  }
  (void)quantization->Describe();
  return 0;
}
