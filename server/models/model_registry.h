// The models this daemon serves, by name. Filled once at startup from the
// config and --model flags, then read-only, so any thread may look up.
//
// A model whose directory is missing or malformed (config.json, any tensor of
// the architecture's layout missing or misshapen, a broken tokenizer) stops
// startup with a clear error: serving a subset of what the operator asked
// for would hide it.
#pragma once

#include <map>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/hf_config.h"
#include "runtime/chat/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/engine.h"
#include "server/models/diffusion_setup.h"
#include "server/models/sot_setup.h"
#include "tern/v1/config.pb.h"
#include "tern/v1/models.pb.h"

namespace tern::server {

struct ServedModel {
  tern::v1::ModelConfig config;
  runtime::HfConfig hf_config;
  tern::v1::ModelInfo info;
  // Null for a model directory without tokenizer files (token ids only).
  std::unique_ptr<runtime::Tokenizer> tokenizer;
  // Null when the model directory has no chat template.
  std::unique_ptr<runtime::ChatTemplateConfig> chat_template;
  // Skeleton-of-Thought settings; null for a model without a tokenizer.
  std::unique_ptr<ServedSot> sot;
  // The continuous-batching engine that generates for this model; null for
  // a diffusion model.
  std::unique_ptr<scheduler::Engine> engine;
  // A diffusion model's config, request defaults and engine; null for an LLM.
  std::unique_ptr<ServedDiffusion> diffusion;
  // The bytes the weights hold on the model's backend
  // (runtime::LlmModelRunner::weight_bytes; a diffusion model's DiT and VAE
  // decoder, runtime::DitRunner::weight_bytes), read once the model is
  // built, and (LLMs) the tokens the KV cache holds (blocks x block size).
  size_t weight_bytes = 0;
  int64_t kv_cache_capacity_tokens = 0;
};

class ModelRegistry {
 public:
  // Loads every model in `config.models()`. The first failure is returned,
  // prefixed with the model's name and path.
  // `on_fatal` (may be empty) is called, from an engine thread, when a
  // model's device fails for good (EngineOptions::on_fatal).
  using FatalHandler = std::function<void(const std::string& model, const absl::Status& status)>;
  // Tests only (fault injection): `wrap_runner`, when set, gets each model's
  // runner before its engine starts and returns the runner the engine uses.
  using RunnerWrapper = std::function<std::unique_ptr<runtime::ModelRunner>(
      const std::string& model, std::unique_ptr<runtime::ModelRunner> runner)>;
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Create(const tern::v1::ServerConfig& config,
                                                               FatalHandler on_fatal = nullptr,
                                                               RunnerWrapper wrap_runner = nullptr);

  // NOT_FOUND naming the served models when `name` is unknown.
  absl::StatusOr<const ServedModel*> Find(const std::string& name) const;

  std::vector<tern::v1::ModelInfo> List() const;
  size_t size() const { return models_.size(); }
  // Every served model, for draining and metrics.
  std::vector<const ServedModel*> All() const;
  // Drains every engine: no new requests, in-flight ones get until `timeout`.
  void DrainEngines(absl::Duration timeout);
  // The engines' turns on each device ("cpu", "cuda"), for metrics.
  const std::map<std::string, std::shared_ptr<scheduler::DeviceTurns>>& device_turns() const { return device_turns_; }

 private:
  ModelRegistry() = default;
  // The turns of the engines on `device` ("cpu" or "cuda"), for `model`.
  scheduler::DeviceShareOptions ShareDevice(const std::string& device, const tern::v1::ModelConfig& model);

  std::map<std::string, std::unique_ptr<ServedModel>> models_;
  // By device; declared before nothing that outlives it: engines hold shared_ptrs.
  std::map<std::string, std::shared_ptr<scheduler::DeviceTurns>> device_turns_;
};

}  // namespace tern::server
