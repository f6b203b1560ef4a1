#include "server/models/model_registry.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/cuda/device_probe.h"
#include "server/config/server_config.h"

namespace tern::server {
namespace {

int64_t CountParameters(const runtime::HfConfig& c) {
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  const int64_t attention = c.hidden_size * (q + 2 * kv) + q * c.hidden_size +
                            (c.attention_bias ? q + 2 * kv : 0);
  const int64_t experts = c.num_local_experts > 0 ? c.num_local_experts : 1;
  const int64_t mlp = experts * 3 * c.hidden_size * c.intermediate_size +
                      (c.num_local_experts > 0 ? c.hidden_size * c.num_local_experts : 0);
  const int64_t layer = attention + mlp + 2 * c.hidden_size;
  const int64_t embeddings = c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2);
  return c.num_hidden_layers * layer + embeddings + c.hidden_size;
}

std::string ResolveBackend(const std::string& requested) {
  if (requested == "cpu" || requested == "cuda") return requested;
  return runtime::ListCudaDevices().empty() ? "cpu" : "cuda";
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Create(
    const tern::v1::ServerConfig& config) {
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
    auto hf_config = runtime::LoadHfConfig(model_config.path());
    if (!hf_config.ok()) return fail(hf_config.status());
    const std::string backend = ResolveBackend(model_config.backend());
    if (backend == "cuda" && runtime::ListCudaDevices().empty()) {
      return fail(absl::FailedPreconditionError("backend \"cuda\" was asked for but no CUDA GPU is visible"));
    }

    auto served = std::make_unique<ServedModel>();
    served->config = model_config;
    served->hf_config = *hf_config;
    auto& info = served->info;
    info.set_name(name);
    info.set_kind(tern::v1::MODEL_KIND_LLM);
    info.set_state(tern::v1::MODEL_STATE_READY);
    info.set_architecture(hf_config->architecture);
    const std::string& dtype = model_config.dtype();
    info.set_dtype(dtype.empty() || dtype == "auto" ? hf_config->torch_dtype : dtype);
    const std::string& weights = model_config.weight_scheme();
    info.set_weight_scheme(weights.empty() || weights == "auto"
                               ? (info.dtype() == "bfloat16" ? "bf16"
                                  : info.dtype() == "float16" ? "fp16" : "fp32")
                               : weights);
    info.set_attention_scheme(model_config.attention_scheme().empty() ? "dense"
                                                                       : model_config.attention_scheme());
    info.set_kv_cache_dtype(model_config.kv_cache_dtype().empty() ? "auto" : model_config.kv_cache_dtype());
    int64_t context = hf_config->max_position_embeddings;
    if (model_config.max_context_length() > 0 && model_config.max_context_length() < context) {
      context = model_config.max_context_length();
    }
    info.set_context_length(static_cast<int32_t>(std::min<int64_t>(context, INT32_MAX)));
    info.set_backend(backend);
    info.set_num_parameters(CountParameters(*hf_config));
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

std::vector<tern::v1::ModelInfo> ModelRegistry::List() const {
  std::vector<tern::v1::ModelInfo> out;
  for (const auto& [name, model] : models_) out.push_back(model->info);
  return out;
}

}  // namespace tern::server
