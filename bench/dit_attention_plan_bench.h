// tern-dit-bench --attention-plan: whole generations of a DiT under a
// DiTFastAttn plan (runtime/dit/dit_attention_plan.h) beside the same
// generations with exact attention, on one CudaDitOps.
//
// A generation is the plan's steps for `batch` forward rows (batch / 2
// guided images, DDIM, every image at the same step, as a full batch of
// requests admitted together), timed from the first step to the last
// sampler update (no VAE: the model has none). Exact attention runs with
// CUDA graphs (the serving path) and eagerly; the plan's passes with graphs
// too (one per step: DitStep::variant), after two warm-up generations (the
// first runs each step eagerly, the second captures). Reported: ms per generation, mean ms per step, the
// speed-up over exact with graphs, and the plan's attention work kept.
//
// The plan is a file (either form), or "synthetic:STEPS:FRACTION[:cfg]": step
// 0 full, then FRACTION of the later (step, layer) entries compressed, half
// of them reuse and half window attention with a band of tokens / 8 on each
// side, picked by a golden-ratio sequence over the entries; ":cfg" makes the
// remaining full and window entries share across the guidance halves.
// "stretch:FILE:TOKENS" takes a plan searched for another model of TOKENS
// tokens (the demo DiT's: 8 layers, 256 tokens) and stretches it over this
// model: target layer l follows source layer l * source_layers / depth at
// every step, and the window keeps its share of the tokens; so the method mix
// and each layer's step sequence are the searched plan's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/dit/dit_attention_plan.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_model.h"
#include "runtime/model/dtype.h"
#include "runtime/model/safetensors.h"

namespace tern::bench {

// The plan `spec` names for `config` (a file, synthetic:... or stretch:...).
absl::StatusOr<std::shared_ptr<const runtime::DitAttentionPlan>> AttentionPlanFromSpec(const std::string& spec,
                                                                                     const runtime::DitConfig& config);

// Times generations at each batch (forward rows, even) for `config`'s
// weights in `store`; prints a table and appends one JSON object per batch
// to `results`. Exits the process on a device error (as the step bench does).
// `model_options` says how the linears run (its weight scheme), for the
// exact and the plan generations alike; its attention fields are this
// function's.
absl::Status RunAttentionPlanBench(const runtime::DitConfig& config, const runtime::WeightStore& store,
                                   runtime::DType dtype, const runtime::DitModelOptions& model_options,
                                   const std::string& spec, const std::vector<int64_t>& batches, int reps,
                                   nlohmann::json* results);

}  // namespace tern::bench
