// Diffusion models in ternd: recognizing a DiT directory, loading it onto
// its DitOps (the CPU's today), starting its DiffusionEngine, and the
// request defaults of its DiffusionModelConfig.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/dit/dit_attention_plan.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/sampler_schedule.h"
#include "runtime/dit/samplers.h"
#include "scheduler/diffusion_engine.h"
#include "tern/v1/config.pb.h"
#include "tern/v1/models.pb.h"

namespace tern::server {

struct ServedDiffusion {
  runtime::DitConfig config;
  // What a GenerateImageRequest's zero or unset fields take.
  int32_t default_steps = 20;
  double default_guidance_scale = 1.0;
  runtime::DiffusionSamplerKind default_sampler = runtime::DiffusionSamplerKind::kDpmSolverPp2m;
  // diffusion.sampler_schedule's, or null; SAMPLER_SCHEDULE follows it.
  std::shared_ptr<const runtime::SamplerSchedule> schedule;
  int32_t max_batch_rows = 16;
  // diffusion.attention_plan's (DiTFastAttn), or null.
  std::shared_ptr<const runtime::DitAttentionPlan> attention_plan;
  // Bytes the DiT's and its VAE decoder's weights hold on the backend
  // (runtime::DitRunner::weight_bytes), in the schemes they run as.
  size_t weight_bytes = 0;
  // Bytes the ops hold for passes after the start-up warm-up
  // (runtime::DitOps::workspace_bytes): the activation memory of a batch of
  // max_batch_rows rows, which every admitted batch fits.
  size_t activation_bytes = 0;
  std::unique_ptr<scheduler::DiffusionEngine> engine;
};

// True when <dir>/config.json names "architecture": "DiT" (read as JSON;
// false when it is absent or says anything else).
bool IsDitModelDirectory(const std::string& dir);

// The backend a DiT model runs on: "cuda" when its config asks for it,
// else "cpu" ("auto" DiT models run on the CPU).
std::string DiffusionBackend(const tern::v1::ModelConfig& model);

// Loads the DiT in model.path() onto DiffusionBackend(model)'s DitOps and
// starts its engine, taking turns on that device as `device` says. Errors
// name the file, field or tensor (a bad diffusion.sampler_schedule: the
// file, step and field). `info` gets the model's facts (kind,
// dtype, image size, class names, parameters).
absl::StatusOr<std::unique_ptr<ServedDiffusion>> LoadDiffusionModel(
    const tern::v1::ServerConfig& server, const tern::v1::ModelConfig& model, const std::string& name,
    std::function<void(const absl::Status&)> on_fatal, scheduler::DeviceShareOptions device,
    tern::v1::ModelInfo* info);

}  // namespace tern::server
