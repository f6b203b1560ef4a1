// Fuzzes the readers of a model directory's config.json: the LLM config
// (runtime/model/hf_config.h), the diffusion transformer config
// (runtime/dit/dit_config.h) and quantization_config
// (runtime/model/quantized_checkpoint.h); and the MoA plan files of a
// model's attention_scheme (runtime/model/moa_plan.h), a parsed plan checked
// against a small model and its density and retention computed. Each must answer OK or
// INVALID_ARGUMENT (UNIMPLEMENTED for a recognised but unsupported
// quantization), never crash; a parsed quantization is asked how a few
// typical modules are stored.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_support.h"
#include "runtime/dit/dit_config.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/moa_plan.h"
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
  const auto plan = tern::runtime::ParseMoaPlan(text, "plan.json");
  if (!plan.ok()) {
    FUZZ_ASSERT(plan.status().code() == absl::StatusCode::kInvalidArgument);
  } else {
    tern::runtime::HfConfig model;
    model.num_hidden_layers = plan->num_layers;
    model.num_attention_heads = plan->num_heads;
    const absl::Status fits = tern::runtime::CheckMoaPlanFits(*plan, model, 256);
    FUZZ_ASSERT(fits.ok() || fits.code() == absl::StatusCode::kInvalidArgument);
    // Small plans only: the retention walks every head at every length.
    if (fits.ok() && int64_t(plan->num_layers) * plan->num_heads <= 256) {
      const double density = plan->Density(256);
      FUZZ_ASSERT(density > 0.0 && density <= 1.0);
      const tern::runtime::KvRetention retention = plan->Retention(256);
      for (int32_t c = 0; c <= 256; c += 17) FUZZ_ASSERT(retention.FreeBefore(c) <= c);
    }
  }
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
