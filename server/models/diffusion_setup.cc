#include "server/models/diffusion_setup.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "runtime/dit/diffusion_runner.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_ops_factory.h"
#include "runtime/model/weight_scheme.h"
#include "server/config/server_config.h"
#include "spdlog/spdlog.h"

namespace tern::server {

bool IsDitModelDirectory(const std::string& dir) {
  if (runtime::IsDiffusersModelDirectory(dir)) {
    // A diffusers pipeline: model_index.json names it (only DiTPipeline loads).
    std::ifstream index(std::filesystem::path(dir) / "model_index.json", std::ios::binary);
    std::ostringstream text;
    text << index.rdbuf();
    const nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) return false;
    const auto it = doc.find("_class_name");
    return it != doc.end() && it->is_string() && it->get<std::string>() == "DiTPipeline";
  }
  std::ifstream in(std::filesystem::path(dir) / "config.json", std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  const nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return false;
  const auto it = doc.find("architecture");
  return it != doc.end() && it->is_string() && it->get<std::string>() == "DiT";
}

std::string DiffusionBackend(const tern::v1::ModelConfig& model) {
  // "cuda" must be named (the factory refuses it clearly in a build without
  // CUDA or on a machine without a GPU); "auto" stays on the CPU DiT ops,
  // whose float32 images are the ones the demo's goldens and e2e tests pin.
  return model.backend() == "cuda" ? "cuda" : "cpu";
}

absl::StatusOr<std::unique_ptr<ServedDiffusion>> LoadDiffusionModel(
    const tern::v1::ServerConfig& server, const tern::v1::ModelConfig& model, const std::string& name,
    std::function<void(const absl::Status&)> on_fatal, scheduler::DeviceShareOptions device,
    tern::v1::ModelInfo* info) {
  if (model.async_scheduling()) {
    return absl::InvalidArgumentError(
        "async_scheduling: planning a step ahead is for LLM engines; the diffusion engine batches at step "
        "boundaries and plans each step from the last");
  }
  runtime::DitOpsChoice choice;
  choice.backend = DiffusionBackend(model);
  choice.dtype = model.dtype();
  choice.cuda_graphs = !model.enforce_eager();
  auto dtype = runtime::DitOpsComputeDType(choice);
  if (!dtype.ok()) return dtype.status();
  // auto, w8a8-int8, w8a8-fp8 or mixed:<plan> (runtime/dit/dit_linear_plan.h);
  // the plan, the layers it names and the device's support are checked as
  // the runner loads, and any failure stops start-up naming them.
  auto weight_scheme = runtime::ParseWeightSchemeRequest(model.weight_scheme());
  if (!weight_scheme.ok()) return weight_scheme.status();
  runtime::DitRunnerOptions runner_options;
  runner_options.model.weight_scheme = *weight_scheme;
  // DiTFastAttn: the plan checked against the model's config; its caches
  // sized for the engine's rows.
  std::shared_ptr<const runtime::DitAttentionPlan> attention_plan;
  if (!model.diffusion().attention_plan().empty()) {
    auto dit_config = runtime::LoadDitConfig(model.path());
    if (!dit_config.ok()) return dit_config.status();
    auto plan = runtime::LoadDitAttentionPlan(model.diffusion().attention_plan(), *dit_config);
    if (!plan.ok()) {
      return absl::Status(plan.status().code(), absl::StrCat("diffusion.attention_plan: ", plan.status().message()));
    }
    attention_plan = std::make_shared<const runtime::DitAttentionPlan>(*std::move(plan));
    runner_options.model.attention_plan = attention_plan;
    runner_options.model.attention_cache_rows =
        model.diffusion().max_batch_rows() > 0 ? model.diffusion().max_batch_rows() : 16;
  }
  auto ops = runtime::MakeDitOps(choice);
  if (!ops.ok()) return ops.status();
  auto runner = runtime::DitRunner::Create(model.path(), *std::move(ops), runner_options);
  if (!runner.ok()) return runner.status();
  const std::string dense_name = *dtype == "float32" ? "fp32" : *dtype == "bfloat16" ? "bf16" : "fp16";
  const std::string scheme_description = (*runner)->model()->linear_plan().Describe(dense_name);
  const runtime::DitAttentionCache* attention_cache = (*runner)->model()->attention_cache();
  const size_t attention_cache_bytes = attention_cache != nullptr ? attention_cache->bytes() : 0;
  const size_t attention_cache_row_bytes = attention_cache != nullptr ? attention_cache->bytes_per_row() : 0;
  const runtime::DitConfig config = (*runner)->config();
  if (!config.pixel_space && !config.has_vae) {
    return absl::FailedPreconditionError(
        "a latent DiT makes images through its VAE decoder, and this model has none (no vae/config.json beside "
        "config.json, and no input.pixel_range)");
  }

  auto served = std::make_unique<ServedDiffusion>();
  served->config = config;
  served->weight_bytes = (*runner)->weight_bytes();
  served->attention_plan = attention_plan;
  const tern::v1::DiffusionModelConfig& d = model.diffusion();
  if (d.default_steps() > 0) served->default_steps = d.default_steps();
  if (served->default_steps > config.noise_schedule.num_train_timesteps) {
    return absl::InvalidArgumentError(absl::StrCat("diffusion.default_steps: ", served->default_steps,
                                                   " exceeds the model's ", config.noise_schedule.num_train_timesteps,
                                                   " timesteps"));
  }
  served->default_guidance_scale = config.has_null_class() ? 2.0 : 1.0;
  if (d.has_default_guidance_scale()) {
    if (d.default_guidance_scale() != 1.0 && !config.has_null_class()) {
      return absl::InvalidArgumentError(
          "diffusion.default_guidance_scale: the model has no null class, so only 1 (no guidance) is possible");
    }
    served->default_guidance_scale = d.default_guidance_scale();
  }
  const int32_t timesteps = config.noise_schedule.num_train_timesteps;
  if (!d.sampler_schedule().empty()) {
    auto schedule = runtime::LoadSamplerSchedule(d.sampler_schedule(), timesteps);
    if (!schedule.ok()) {
      return absl::Status(schedule.status().code(),
                          absl::StrCat("diffusion.sampler_schedule: ", schedule.status().message()));
    }
    served->schedule = std::make_shared<const runtime::SamplerSchedule>(*std::move(schedule));
    served->default_sampler = runtime::DiffusionSamplerKind::kSchedule;
  }
  if (!d.default_sampler().empty()) {
    auto sampler = runtime::ParseDiffusionSamplerKind(d.default_sampler());
    if (!sampler.ok()) return sampler.status();
    if (*sampler == runtime::DiffusionSamplerKind::kSchedule && served->schedule == nullptr) {
      return absl::InvalidArgumentError(
          "diffusion.default_sampler: \"schedule\" needs diffusion.sampler_schedule (a file)");
    }
    served->default_sampler = *sampler;
  }
  if (served->default_sampler == runtime::DiffusionSamplerKind::kSchedule) {
    const int32_t n = served->schedule->num_steps();
    if (d.default_steps() > 0 && d.default_steps() != n) {
      return absl::InvalidArgumentError(absl::StrCat("diffusion.default_steps: ", d.default_steps(),
                                                     ", but the default sampler is the schedule ",
                                                     served->schedule->source, " of ", n, " steps"));
    }
    served->default_steps = n;
  }
  if (d.max_batch_rows() > 0) served->max_batch_rows = d.max_batch_rows();
  // The activation memory of the largest batch the engine can form is taken
  // now, so every batch it admits (at most max_batch_rows rows) fits it and
  // no pass allocates while serving. With CUDA graphs, each batch size's
  // first passes are eager and recorded: pay that here too, not in requests.
  {
    const absl::Time start = absl::Now();
    const bool graphs = (*runner)->ops()->records_graphs();
    const absl::Status warm = graphs ? (*runner)->Warmup(served->max_batch_rows)
                                     : (*runner)->ReserveWorkspaces(served->max_batch_rows);
    if (!warm.ok()) return absl::Status(warm.code(), absl::StrCat("warming up the DiT's passes: ", warm.message()));
    served->activation_bytes = (*runner)->ops()->workspace_bytes();
    const runtime::DitRunner::WarmupCounts counts = (*runner)->warmup_counts();
    spdlog::info("model {}: {:.1f} MiB of activations reserved for batches of up to {} rows; warm-up ran {} DiT "
                 "passes and {} VAE decodes in {:.2f} s",
                 name, double(served->activation_bytes) / double(1 << 20), served->max_batch_rows, counts.forwards,
                 counts.decodes, absl::ToDoubleSeconds(absl::Now() - start));
  }

  scheduler::DiffusionEngineOptions options;
  options.model_name = name;
  options.max_batch_rows = served->max_batch_rows;
  options.max_images_per_request = std::max(1, served->max_batch_rows);
  if (server.limits().max_queued_requests() > 0) options.max_queued_requests = server.limits().max_queued_requests();
  options.stall_timeout = absl::Seconds(EffectiveEngineStallTimeoutSeconds(server));
  options.on_fatal = std::move(on_fatal);
  options.device = std::move(device);
  auto engine = scheduler::DiffusionEngine::Create(options, *std::move(runner));
  if (!engine.ok()) return engine.status();
  served->engine = std::move(*engine);

  info->set_kind(tern::v1::MODEL_KIND_DIFFUSION);
  info->set_architecture("DiT");
  info->set_dtype(*dtype);
  info->set_weight_scheme(scheme_description);
  if (attention_plan != nullptr) {
    info->set_attention_scheme(attention_plan->Describe());
    info->set_attention_plan(attention_plan->source);
    info->set_attention_density(attention_plan->AttentionFraction(config.num_tokens()));
    info->set_attention_density_length(config.num_tokens());
    info->set_attention_plan_steps(attention_plan->num_steps);
    info->set_attention_cache_bytes(int64_t(attention_cache_bytes));
    info->set_attention_cache_bytes_per_row(int64_t(attention_cache_row_bytes));
  } else {
    info->set_attention_scheme("dense");
  }
  info->set_backend(choice.backend);
  info->set_image_size(config.output_size());
  info->set_default_sampler(runtime::DiffusionSamplerName(served->default_sampler));
  info->set_default_steps(served->default_steps);
  if (served->schedule != nullptr) {
    tern::v1::SamplerScheduleInfo* s = info->mutable_sampler_schedule();
    s->set_path(served->schedule->source);
    for (const runtime::SamplerScheduleStep& step : served->schedule->steps) {
      s->add_timesteps(step.timestep);
      s->add_orders(step.order);
    }
  }
  for (const std::string& c : config.class_names) info->add_class_names(c);
  const int64_t d_model = config.hidden_size;
  // Blocks: qkv + proj + MLP + adaLN (6 D per block), with biases; embedders
  // and the final layer; the class table; the stored position table is not a
  // parameter.
  const int64_t per_block = (3 * d_model * d_model + 3 * d_model) + (d_model * d_model + d_model) +
                            2 * (int64_t(config.mlp_hidden()) * d_model) + config.mlp_hidden() + d_model +
                            (6 * d_model * d_model + 6 * d_model);
  const int64_t embed = int64_t(config.patch_features()) * d_model + d_model +
                        (int64_t(config.frequency_embedding_size) * d_model + d_model) + (d_model * d_model + d_model) +
                        int64_t(config.num_classes + (config.has_null_class() ? 1 : 0)) * d_model;
  const int64_t final_layer = (2 * d_model * d_model + 2 * d_model) +
                              (int64_t(config.patch_size) * config.patch_size * config.out_channels() * d_model +
                               int64_t(config.patch_size) * config.patch_size * config.out_channels());
  info->set_num_parameters(config.depth * per_block + embed + final_layer);
  return served;
}

}  // namespace tern::server
