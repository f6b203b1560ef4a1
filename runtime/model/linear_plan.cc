#include "runtime/model/linear_plan.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/rtn_quantizer.h"
#include "runtime/model/weight_layout.h"

namespace tern::runtime {
namespace {

bool IsRouterModule(const std::string& module) { return absl::EndsWith(module, "block_sparse_moe.gate"); }

std::string SourceOf(const StoredLinear& stored, bool at_load) {
  if (at_load) return "quantized at load";
  return CheckpointFormatName(stored.format);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LinearPlan>> LinearPlan::Create(const std::string& model_dir, const HfConfig& config,
                                                               const WeightStore* store,
                                                               const WeightSchemeRequest& request) {
  std::unique_ptr<LinearPlan> plan(new LinearPlan());
  plan->store_ = store;
  ASSIGN_OR_RETURN(plan->checkpoint_, CheckpointQuantization::Load(model_dir));
  const CheckpointQuantization& checkpoint = plan->checkpoint_;

  std::optional<MixedPrecisionPlan> mixed;
  if (request.kind == WeightSchemeRequest::Kind::kMixed) {
    if (checkpoint.quantized()) {
      return absl::InvalidArgumentError(absl::StrCat("weight_scheme ", request.ToString(),
                                                     ": mixed-precision plans apply to dense checkpoints; this one is ",
                                                     checkpoint.Describe()));
    }
    ASSIGN_OR_RETURN(mixed, LoadMixedPrecisionPlan(request.plan_path));
  }

  std::vector<std::pair<std::string, Entry>> layers;
  for (const auto& entry : LlamaFamilyLayout(config, DType::kF32)) {
    if (entry.role != TensorRole::kLinear && entry.role != TensorRole::kRouter) continue;
    Entry e;
    e.out = entry.spec.shape[0];
    e.in = entry.spec.shape[1];
    e.weight_tensor = entry.spec.name;
    layers.emplace_back(entry.spec.name.substr(0, entry.spec.name.size() - std::string(".weight").size()), e);
  }
  if (config.tie_word_embeddings) {
    Entry e;
    e.out = config.vocab_size;
    e.in = config.hidden_size;
    e.weight_tensor = kEmbedTokens;
    layers.emplace_back("lm_head", e);
  }

  for (auto& [module, e] : layers) {
    const bool tied_head = module == "lm_head" && config.tie_word_embeddings;
    e.stored = tied_head ? StoredLinear{} : checkpoint.ForModule(module);
    const bool stored_quantized = e.stored.layout != StoredLinear::Layout::kFloat;
    const bool kept_dense_by_default = module == "lm_head" || IsRouterModule(module);
    switch (request.kind) {
      case WeightSchemeRequest::Kind::kAuto:
        e.target = e.stored.scheme;
        break;
      case WeightSchemeRequest::Kind::kUniform: {
        const LinearScheme& want = request.uniform;
        if (stored_quantized) {
          const bool same = e.stored.scheme.scheme == want.scheme &&
                            (!IsWeightOnly(want.scheme) || e.stored.scheme.group_size == want.group_size);
          if (!same) {
            return absl::InvalidArgumentError(absl::StrCat(module, " is stored as ", e.stored.scheme.ToString(), " (",
                                                           CheckpointFormatName(e.stored.format),
                                                           ") but weight_scheme asks for ", want.ToString(),
                                                           "; tern does not requantize quantized weights: use "
                                                           "weight_scheme \"auto\" to run the checkpoint as stored"));
          }
          e.target = e.stored.scheme;
        } else if (checkpoint.quantized() || kept_dense_by_default) {
          e.target = LinearScheme{};  // a layer the checkpoint or the convention keeps dense
        } else {
          e.target = want;
          e.quantize_at_load = true;
        }
        break;
      }
      case WeightSchemeRequest::Kind::kMixed: {
        const auto named = mixed->layers.find(module);
        e.target = named != mixed->layers.end() ? named->second
                   : kept_dense_by_default      ? LinearScheme{}
                                                : mixed->default_scheme;
        e.quantize_at_load = e.target.scheme != WeightScheme::kDense;
        break;
      }
    }
    plan->entries_[module] = e;
  }
  if (mixed.has_value()) {
    for (const auto& [module, scheme] : mixed->layers) {
      if (plan->entries_.count(module) == 0) {
        return absl::InvalidArgumentError(absl::StrCat("mixed-precision plan ", request.plan_path, " names \"", module,
                                                       "\", which is not a linear layer of this model (names look like "
                                                       "\"model.layers.0.self_attn.q_proj\" or \"lm_head\")"));
      }
    }
  }
  return plan;
}

absl::StatusOr<const LinearPlan::Entry*> LinearPlan::Find(const std::string& module) const {
  const auto it = entries_.find(module);
  if (it == entries_.end()) return absl::InternalError(absl::StrCat("no linear layer \"", module, "\""));
  return &it->second;
}

absl::Status LinearPlan::CheckTensors() const {
  for (const auto& [module, e] : entries_) {
    if (e.stored.layout == StoredLinear::Layout::kFloat) {
      auto view = store_->GetWithShape(e.weight_tensor, {e.out, e.in});
      if (!view.ok()) return view.status();
      if (view->dtype != DType::kF32 && view->dtype != DType::kF16 && view->dtype != DType::kBF16) {
        return absl::InvalidArgumentError(absl::StrCat("tensor \"", e.weight_tensor, "\" has dtype ",
                                                       DTypeSafetensorsName(view->dtype), "; expected F32/F16/BF16"));
      }
    } else {
      RETURN_IF_ERROR(CheckStoredLinear(*store_, module, e.stored, e.out, e.in));
    }
  }
  return absl::OkStatus();
}

absl::Status LinearPlan::CheckFusable(const std::vector<std::string>& modules) const {
  ASSIGN_OR_RETURN(const Entry* first, Find(modules[0]));
  for (size_t i = 1; i < modules.size(); ++i) {
    ASSIGN_OR_RETURN(const Entry* e, Find(modules[i]));
    const bool first_stored = first->stored.layout != StoredLinear::Layout::kFloat;
    const bool stored = e->stored.layout != StoredLinear::Layout::kFloat;
    if (!(e->target == first->target) || stored != first_stored || e->quantize_at_load != first->quantize_at_load) {
      return absl::InvalidArgumentError(absl::StrCat(
          modules[i], " runs as ", e->target.ToString(), " (", SourceOf(e->stored, e->quantize_at_load), ") but ",
          modules[0], " as ", first->target.ToString(), " (", SourceOf(first->stored, first->quantize_at_load),
          "); tern fuses them into one linear layer, so they must share a scheme"));
    }
  }
  return absl::OkStatus();
}

std::vector<LinearScheme> LinearPlan::Schemes() const {
  std::vector<LinearScheme> out;
  for (const auto& [module, e] : entries_) {
    if (std::find(out.begin(), out.end(), e.target) == out.end()) out.push_back(e.target);
  }
  return out;
}

std::vector<std::string> LinearPlan::Modules() const {
  std::vector<std::string> out;
  for (const auto& [module, e] : entries_) out.push_back(module);
  return out;
}

absl::StatusOr<LinearScheme> LinearPlan::Target(const std::string& module) const {
  const auto it = entries_.find(module);
  if (it == entries_.end()) return absl::InvalidArgumentError(absl::StrCat("no linear layer \"", module, "\""));
  return it->second.target;
}

bool LinearPlan::quantized() const {
  for (const auto& [module, e] : entries_) {
    if (e.target.scheme != WeightScheme::kDense) return true;
  }
  return false;
}

std::string LinearPlan::Describe() const {
  std::map<std::string, int> counts;
  std::set<std::string> sources;
  for (const auto& [module, e] : entries_) {
    if (e.target.scheme == WeightScheme::kDense) {
      ++counts["dense"];
      continue;
    }
    ++counts[e.target.ToString()];
    sources.insert(SourceOf(e.stored, e.quantize_at_load));
  }
  if (sources.empty()) return "dense";
  std::vector<std::string> quantized;
  for (const auto& [scheme, n] : counts) {
    if (scheme != "dense") quantized.push_back(scheme);
  }
  const std::string source = absl::StrJoin(sources, ", ");
  if (quantized.size() == 1) return absl::StrCat(quantized[0], " (", source, ")");
  std::vector<std::string> parts;
  for (const auto& [scheme, n] : counts) parts.push_back(absl::StrCat(scheme, " x ", n));
  return absl::StrCat("mixed (", absl::StrJoin(parts, ", "), "; ", source, ")");
}

absl::StatusOr<std::unique_ptr<LinearWeight>> LinearPlan::Prepare(Backend& backend,
                                                                  const std::vector<std::string>& modules,
                                                                  bool with_bias) const {
  RETURN_IF_ERROR(CheckFusable(modules));
  ASSIGN_OR_RETURN(const Entry* first, Find(modules[0]));
  std::vector<TensorView> biases;
  if (with_bias) {
    for (const auto& module : modules) {
      ASSIGN_OR_RETURN(TensorView bias, store_->Get(module + ".bias"));
      biases.push_back(bias);
    }
  }
  if (first->target.scheme == WeightScheme::kDense) {
    std::vector<TensorView> weights;
    for (const auto& module : modules) {
      ASSIGN_OR_RETURN(const Entry* e, Find(module));
      ASSIGN_OR_RETURN(TensorView weight, store_->Get(e->weight_tensor));
      weights.push_back(weight);
    }
    return backend.PrepareFusedLinear(weights, biases);
  }
  std::vector<QuantizedLinear> parts;
  for (size_t i = 0; i < modules.size(); ++i) {
    ASSIGN_OR_RETURN(const Entry* e, Find(modules[i]));
    const TensorView* bias = with_bias ? &biases[i] : nullptr;
    if (e->quantize_at_load) {
      ASSIGN_OR_RETURN(TensorView weight, store_->Get(e->weight_tensor));
      RtnOptions options;
      options.scheme = e->target;
      auto q = QuantizeRtn(TensorToFloat(weight), e->out, e->in, options,
                           bias != nullptr ? TensorToFloat(*bias) : std::vector<float>{});
      if (!q.ok()) return absl::Status(q.status().code(), absl::StrCat(modules[i], ": ", q.status().message()));
      parts.push_back(std::move(*q));
    } else {
      ASSIGN_OR_RETURN(QuantizedLinear q, ReadQuantizedLinear(*store_, modules[i], e->stored, e->out, e->in, bias));
      parts.push_back(std::move(q));
    }
  }
  ASSIGN_OR_RETURN(QuantizedLinear fused, ConcatQuantizedLinears(std::move(parts), modules));
  return backend.PrepareQuantizedLinear(fused);
}

}  // namespace tern::runtime
