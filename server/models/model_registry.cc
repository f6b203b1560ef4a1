#include "server/models/model_registry.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/backend/backend_factory.h"
#include "runtime/cuda/device_probe.h"
#include "runtime/runner/llm_model_runner.h"
#include "runtime/model/llama_model.h"
#include "runtime/model/moa_plan.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/weight_layout.h"
#include "runtime/model/weight_scheme.h"
#include "server/config/server_config.h"

namespace tern::server {
namespace {

// Checks every tensor of the architecture's layout is present with its
// shape, linear layers in their stored (maybe quantized) form, and what the
// configured weight_scheme makes of them (headers only: the files are
// memory-mapped, not read). Returns the parameter count and the scheme.
absl::StatusOr<runtime::CheckpointSummary> CheckWeights(const tern::v1::ModelConfig& model,
                                                        const runtime::HfConfig& config) {
  auto request = runtime::ParseWeightSchemeRequest(model.weight_scheme());
  if (!request.ok()) return request.status();
  return runtime::LlamaModel::Inspect(model.path(), config, *request);
}

bool HasTokenizer(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json", ec) ||
         std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.model", ec);
}

// "auto" is CUDA when this build has it and a GPU is visible, else CPU.
absl::StatusOr<std::string> ResolveBackend(const std::string& requested) {
  const bool gpu = runtime::BuiltWithCuda() && !runtime::ListCudaDevices().empty();
  if (requested == "cuda" && !gpu) {
    return absl::FailedPreconditionError(runtime::BuiltWithCuda()
                                             ? "backend \"cuda\" was asked for but no CUDA GPU is visible"
                                             : "backend \"cuda\" was asked for but this ternd was built without CUDA");
  }
  if (requested == "cpu") return std::string("cpu");
  return std::string(gpu ? "cuda" : "cpu");
}

// The compute dtype on the GPU, as vLLM's "auto": bf16 checkpoints run in
// bf16, fp16 and fp32 ones in fp16. The config's validation has limited a
// named one to float32, float16 and bfloat16.
std::string GpuComputeDType(const std::string& requested, const runtime::HfConfig& config) {
  if (!requested.empty() && requested != "auto") return requested;
  return config.torch_dtype == "bfloat16" ? "bfloat16" : "float16";
}

// The runtime's backend factory builds it, as it does for the tools.
runtime::BackendChoice ChooseBackend(const std::string& backend, const tern::v1::ModelConfig& model,
                                     const runtime::HfConfig& config) {
  runtime::BackendChoice choice;
  choice.name = backend;
  choice.dtype = GpuComputeDType(model.dtype(), config);
  choice.cuda_graphs = !model.enforce_eager();
  choice.pdl = !model.disable_pdl();
  return choice;
}

// Builds an LLM's runner and engine; records the runner's weight bytes and
// KV cache capacity in `served`.
absl::StatusOr<std::unique_ptr<scheduler::Engine>> MakeEngine(const tern::v1::ServerConfig& server,
                                                             const tern::v1::ModelConfig& model,
                                                             const runtime::HfConfig& config, const std::string& name,
                                                             const std::string& backend_name,
                                                             const runtime::Tokenizer* tokenizer,
                                                             scheduler::EngineOptions::FatalCallback on_fatal,
                                                             scheduler::DeviceShareOptions device,
                                                             const ModelRegistry::RunnerWrapper& wrap_runner,
                                                             ServedModel* served) {
  runtime::LlmModelRunnerOptions runner_options;
  runner_options.model_dir = model.path();
  runner_options.block_size = model.kv_block_size() > 0 ? model.kv_block_size() : 16;
  runner_options.kv_cache_bytes = size_t(model.cpu_kv_cache_mib() > 0 ? model.cpu_kv_cache_mib() : 1024) << 20;
  runner_options.max_context_length = model.max_context_length();
  auto weight_scheme = runtime::ParseWeightSchemeRequest(model.weight_scheme());
  if (!weight_scheme.ok()) return weight_scheme.status();
  runner_options.model.weight_scheme = *weight_scheme;
  auto kv_cache_dtype = runtime::ParseKvCacheDtype(model.kv_cache_dtype());
  if (!kv_cache_dtype.ok()) return kv_cache_dtype.status();
  runner_options.model.kv_cache_dtype = *kv_cache_dtype;
  auto attention = runtime::ParseAttentionScheme(model.attention_scheme());
  if (!attention.ok()) return attention.status();
  runner_options.model.attention = *attention;
  if (model.has_gpu_memory_fraction()) runner_options.gpu_memory_fraction = model.gpu_memory_fraction();
  // On the GPU the first prefill of a process is about 3x slower than the
  // rest (lazy module loading, cuBLAS heuristics, first allocations): pay it
  // at start-up, not in the first request's time to first token.
  // The warm-up prefill takes the step budget, so the activation buffers
  // reach their largest before the decode graphs are recorded; then every
  // decode graph the engine can ask for is recorded, so none is recorded (or
  // dropped by a moved buffer) while serving.
  const int32_t max_num_seqs = model.max_num_seqs() > 0 ? model.max_num_seqs() : scheduler::EngineOptions{}.max_num_seqs;
  const int32_t max_batched_tokens = model.max_num_batched_tokens() > 0
                                         ? model.max_num_batched_tokens()
                                         : scheduler::EngineOptions{}.max_num_batched_tokens;
  if (backend_name == "cuda") {
    runner_options.warmup_tokens = max_batched_tokens;
    runner_options.warmup_graph_seqs = max_num_seqs;
  }
  auto backend = runtime::MakeBackend(ChooseBackend(backend_name, model, config));
  if (!backend.ok()) return backend.status();
  auto created = runtime::LlmModelRunner::Create(std::move(*backend), runner_options);
  if (!created.ok()) return created.status();
  served->weight_bytes = (*created)->weight_bytes();
  const runtime::KvCacheLayout kv = (*created)->kv_cache_layout();
  // Tokens of every layer: each KV-cache group holds its own blocks of them.
  served->kv_cache_capacity_tokens = int64_t(kv.num_blocks / kv.num_groups) * kv.block_size;
  std::unique_ptr<runtime::ModelRunner> runner = std::move(*created);
  if (wrap_runner) runner = wrap_runner(name, std::move(runner));
  scheduler::EngineOptions options;
  options.model_name = name;
  options.max_num_seqs = max_num_seqs;
  options.max_num_batched_tokens = max_batched_tokens;
  options.async_scheduling = model.async_scheduling();
  if (server.limits().max_queued_requests() > 0) options.max_queued_requests = server.limits().max_queued_requests();
  options.tokenizer = tokenizer;
  options.on_fatal = std::move(on_fatal);
  options.stall_timeout = absl::Seconds(EffectiveEngineStallTimeoutSeconds(server));
  options.device = std::move(device);
  return scheduler::Engine::Create(options, std::move(runner));
}

}  // namespace

scheduler::DeviceShareOptions ModelRegistry::ShareDevice(const std::string& device,
                                                         const tern::v1::ModelConfig& model) {
  std::shared_ptr<scheduler::DeviceTurns>& turns = device_turns_[device];
  if (!turns) turns = std::make_shared<scheduler::DeviceTurns>(device);
  scheduler::DeviceShareOptions share;
  share.turns = turns;
  share.share = model.has_device_share() ? model.device_share() : 1.0;
  return share;
}

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Create(const tern::v1::ServerConfig& config,
                                                                     FatalHandler on_fatal,
                                                                     RunnerWrapper wrap_runner) {
  std::unique_ptr<ModelRegistry> registry(new ModelRegistry());
  for (const auto& model_config : config.models()) {
    const std::string name = EffectiveModelName(model_config);
    const auto fail = [&](const absl::Status& status) {
      return absl::Status(status.code(), absl::StrCat("model \"", name, "\" (", model_config.path(),
                                                      "): ", status.message()));
    };
    std::error_code ec;
    if (!std::filesystem::is_directory(model_config.path(), ec)) {
      return fail(absl::NotFoundError("is not a directory"));
    }
    if (IsDitModelDirectory(model_config.path())) {
      auto served = std::make_unique<ServedModel>();
      served->config = model_config;
      std::function<void(const absl::Status&)> engine_fatal;
      if (on_fatal) engine_fatal = [on_fatal, name](const absl::Status& status) { on_fatal(name, status); };
      auto diffusion = LoadDiffusionModel(config, model_config, name, std::move(engine_fatal),
                                          registry->ShareDevice(DiffusionBackend(model_config), model_config),
                                          &served->info);
      if (!diffusion.ok()) return fail(diffusion.status());
      served->diffusion = std::move(*diffusion);
      served->weight_bytes = served->diffusion->weight_bytes;
      served->info.set_name(name);
      served->info.set_state(tern::v1::MODEL_STATE_READY);
      served->info.set_path(model_config.path());
      registry->models_[name] = std::move(served);
      continue;
    }
    auto hf_config = runtime::LoadHfConfig(model_config.path());
    if (!hf_config.ok()) return fail(hf_config.status());
    auto checkpoint = CheckWeights(model_config, *hf_config);
    if (!checkpoint.ok()) return fail(checkpoint.status());
    std::unique_ptr<runtime::Tokenizer> tokenizer;
    if (HasTokenizer(model_config.path())) {
      auto loaded = runtime::Tokenizer::FromModelDirectory(model_config.path());
      if (!loaded.ok()) return fail(loaded.status());
      tokenizer = std::move(*loaded);
      if (tokenizer->vocab_size() > hf_config->vocab_size) {
        return fail(absl::InvalidArgumentError(absl::StrCat("the tokenizer has ", tokenizer->vocab_size(),
                                                            " tokens but the model's vocabulary only ",
                                                            hf_config->vocab_size)));
      }
    }
    auto backend = ResolveBackend(model_config.backend());
    if (!backend.ok()) return fail(backend.status());
    std::unique_ptr<runtime::ChatTemplateConfig> chat_template;
    if (auto loaded = runtime::LoadChatTemplateConfig(model_config.path()); loaded.ok()) {
      chat_template = std::make_unique<runtime::ChatTemplateConfig>(std::move(*loaded));
    } else if (loaded.status().code() != absl::StatusCode::kNotFound) {
      return fail(loaded.status());
    }

    auto served = std::make_unique<ServedModel>();
    served->config = model_config;
    served->hf_config = *hf_config;
    served->tokenizer = std::move(tokenizer);
    served->chat_template = std::move(chat_template);
    if (served->tokenizer != nullptr) {
      auto sot = MakeServedSot(config, model_config, served->tokenizer.get(), served->chat_template.get());
      if (!sot.ok()) return fail(sot.status());
      served->sot = std::move(*sot);
    }
    scheduler::EngineOptions::FatalCallback engine_fatal;
    if (on_fatal) engine_fatal = [on_fatal, name](const absl::Status& status) { on_fatal(name, status); };
    auto engine = MakeEngine(config, model_config, *hf_config, name, *backend, served->tokenizer.get(),
                             std::move(engine_fatal), registry->ShareDevice(*backend, model_config), wrap_runner,
                             served.get());
    if (!engine.ok()) return fail(engine.status());
    served->engine = std::move(*engine);
    auto& info = served->info;
    info.set_name(name);
    info.set_kind(tern::v1::MODEL_KIND_LLM);
    info.set_state(tern::v1::MODEL_STATE_READY);
    info.set_architecture(hf_config->architecture);
    const std::string& dtype = model_config.dtype();
    if (*backend == "cuda") {
      info.set_dtype(GpuComputeDType(dtype, *hf_config));
    } else {
      info.set_dtype("float32");  // the CPU backend computes in fp32 whatever is stored
    }
    info.set_weight_scheme(checkpoint->quantized ? checkpoint->weight_scheme
                           : info.dtype() == "bfloat16"   ? "bf16"
                           : info.dtype() == "float16"    ? "fp16"
                                                          : "fp32");
    int64_t context = hf_config->max_position_embeddings;
    if (model_config.max_context_length() > 0 && model_config.max_context_length() < context) {
      context = model_config.max_context_length();
    }
    // The engine's model loaded and checked the plan; it is read again here
    // (a few KB) for what ListModels reports.
    info.set_attention_scheme("dense");
    info.set_attention_density(1.0);
    info.set_attention_density_length(static_cast<int32_t>(std::min<int64_t>(context, INT32_MAX)));
    if (auto attention = runtime::ParseAttentionScheme(model_config.attention_scheme()); attention.ok() &&
                                                                                           attention->moa()) {
      auto plan = runtime::LoadMoaPlan(attention->plan_path);
      if (!plan.ok()) return fail(plan.status());
      const int32_t length = plan->reference_length > 0 ? plan->reference_length : info.attention_density_length();
      info.set_attention_scheme("moa");
      info.set_attention_plan(attention->plan_path);
      info.set_attention_density(plan->Density(length));
      info.set_attention_density_length(length);
    }
    const std::string kv_dtype = model_config.kv_cache_dtype().empty() ? "auto" : model_config.kv_cache_dtype();
    info.set_kv_cache_dtype(kv_dtype != "fp8"                  ? kv_dtype
                            : checkpoint->kv_cache_scales ? "fp8 (checkpoint scales)"
                                                          : "fp8 (scales 1.0: the checkpoint has none)");
    info.set_context_length(static_cast<int32_t>(std::min<int64_t>(context, INT32_MAX)));
    info.set_backend(*backend);
    info.set_num_parameters(checkpoint->parameters);
    info.set_path(model_config.path());
    registry->models_[name] = std::move(served);
  }
  return registry;
}

absl::StatusOr<const ServedModel*> ModelRegistry::Find(const std::string& name) const {
  const auto it = models_.find(name);
  if (it != models_.end()) return it->second.get();
  std::vector<std::string> names;
  for (const auto& [served_name, unused] : models_) names.push_back(served_name);
  return absl::NotFoundError(absl::StrCat("model \"", name, "\" is not served; served models: ",
                                          names.empty() ? "(none)" : absl::StrJoin(names, ", ")));
}

std::vector<const ServedModel*> ModelRegistry::All() const {
  std::vector<const ServedModel*> out;
  for (const auto& [name, model] : models_) out.push_back(model.get());
  return out;
}

void ModelRegistry::DrainEngines(absl::Duration timeout) {
  for (auto& [name, model] : models_) {
    if (model->engine != nullptr) model->engine->Drain(timeout);
    if (model->diffusion != nullptr) model->diffusion->engine->Drain(timeout);
  }
}

std::vector<tern::v1::ModelInfo> ModelRegistry::List() const {
  std::vector<tern::v1::ModelInfo> out;
  for (const auto& [name, model] : models_) out.push_back(model->info);
  return out;
}

}  // namespace tern::server
