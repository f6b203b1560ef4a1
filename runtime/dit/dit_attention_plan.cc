#include "runtime/dit/dit_attention_plan.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "tern-dit-attention-plan";
// The reference implementation's default window_size (-64, 64).
constexpr int32_t kReferenceWindow = 64;

absl::Status Invalid(const std::string& source, const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", why));
}

absl::StatusOr<int32_t> Int32Field(const json& value, const std::string& source, const std::string& field) {
  if (!value.is_number_integer()) return Invalid(source, field, absl::StrCat(value.dump(), " is not an integer"));
  if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(std::numeric_limits<int32_t>::max())) {
    return Invalid(source, field, absl::StrCat(value.dump(), " is out of range"));
  }
  const int64_t v = value.get<int64_t>();
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return Invalid(source, field, absl::StrCat(value.dump(), " is out of range"));
  }
  return static_cast<int32_t>(v);
}

absl::StatusOr<DitAttentionMethod> MethodFromName(const json& value, const std::string& source,
                                                  const std::string& field) {
  if (!value.is_string()) return Invalid(source, field, absl::StrCat(value.dump(), " is not a method name"));
  const std::string name = value.get<std::string>();
  if (name == "full" || name == "full_attn") return DitAttentionMethod::kFull;
  if (name == "full+cfg" || name == "full_attn+cfg_attn_share") return DitAttentionMethod::kFullShareCfg;
  if (name == "window" || name == "residual_window_attn") return DitAttentionMethod::kWindow;
  if (name == "window+cfg" || name == "residual_window_attn+cfg_attn_share") {
    return DitAttentionMethod::kWindowShareCfg;
  }
  if (name == "reuse" || name == "output_share") return DitAttentionMethod::kReuse;
  return Invalid(source, field,
                 absl::StrCat("unknown method \"", name,
                              "\" (full, full+cfg, window, window+cfg, reuse; or the reference's full_attn, "
                              "full_attn+cfg_attn_share, residual_window_attn, "
                              "residual_window_attn+cfg_attn_share, output_share)"));
}

// The reference's per-block lists: [{"attn1": [...], "attn2": null, "ff": null}, ...].
absl::Status ParseReferenceForm(const json& doc, const std::string& source, DitAttentionPlan* plan) {
  plan->num_layers = static_cast<int32_t>(doc.size());
  plan->window = kReferenceWindow;
  std::vector<std::vector<DitAttentionMethod>> per_layer(doc.size());
  for (size_t l = 0; l < doc.size(); ++l) {
    const json& block = doc[l];
    const std::string at = absl::StrCat("[", l, "]");
    if (!block.is_object()) return Invalid(source, at, "not an object with \"attn1\"");
    for (const auto& [key, value] : block.items()) {
      if (key == "attn1") continue;
      if (key == "attn2" || key == "ff") {
        if (!value.is_null()) {
          return Invalid(source, absl::StrCat(at, ".", key),
                         key == "ff" ? "sharing the MLP output is not supported (only self-attention plans)"
                                     : "cross-attention plans are not supported (a class-conditional DiT has none)");
        }
        continue;
      }
      return Invalid(source, absl::StrCat(at, ".", key), "unknown field (a block has attn1, attn2 and ff)");
    }
    const auto it = block.find("attn1");
    if (it == block.end() || !it->is_array()) {
      return Invalid(source, absl::StrCat(at, ".attn1"), "missing, or not an array of per-step methods");
    }
    if (l > 0 && it->size() != per_layer[0].size()) {
      return Invalid(source, absl::StrCat(at, ".attn1"),
                     absl::StrCat(it->size(), " steps, but block 0 has ", per_layer[0].size()));
    }
    for (size_t s = 0; s < it->size(); ++s) {
      ASSIGN_OR_RETURN(DitAttentionMethod m, MethodFromName((*it)[s], source, absl::StrCat(at, ".attn1[", s, "]")));
      per_layer[l].push_back(m);
    }
  }
  plan->num_steps = doc.empty() ? 0 : static_cast<int32_t>(per_layer[0].size());
  plan->methods.resize(size_t(plan->num_steps) * size_t(plan->num_layers));
  for (int32_t s = 0; s < plan->num_steps; ++s) {
    for (int32_t l = 0; l < plan->num_layers; ++l) {
      plan->methods[size_t(s) * size_t(plan->num_layers) + size_t(l)] = per_layer[size_t(l)][size_t(s)];
    }
  }
  return absl::OkStatus();
}

absl::Status ParseTernForm(const json& doc, const std::string& source, DitAttentionPlan* plan) {
  for (const auto& [key, value] : doc.items()) {
    if (key != "format" && key != "version" && key != "steps" && key != "layers" && key != "window" &&
        key != "methods" && key != "metadata") {
      return Invalid(source, key,
                     "unknown field (a plan has format, version, steps, layers, window, methods and metadata)");
    }
  }
  if (auto it = doc.find("format"); it != doc.end() && (!it->is_string() || it->get<std::string>() != kFormat)) {
    return Invalid(source, "format", absl::StrCat(it->dump(), " is not \"", kFormat, "\""));
  }
  if (auto it = doc.find("version"); it != doc.end()) {
    ASSIGN_OR_RETURN(const int32_t version, Int32Field(*it, source, "version"));
    if (version != 1) return Invalid(source, "version", absl::StrCat(version, " is not 1"));
  }
  for (const char* field : {"steps", "layers", "window", "methods"}) {
    if (!doc.contains(field)) return Invalid(source, field, "missing");
  }
  ASSIGN_OR_RETURN(plan->num_steps, Int32Field(doc["steps"], source, "steps"));
  ASSIGN_OR_RETURN(plan->num_layers, Int32Field(doc["layers"], source, "layers"));
  ASSIGN_OR_RETURN(plan->window, Int32Field(doc["window"], source, "window"));
  if (auto it = doc.find("metadata"); it != doc.end()) {
    if (!it->is_object()) return Invalid(source, "metadata", "not an object");
    plan->metadata_json = it->dump();
  }
  const json& methods = doc["methods"];
  if (!methods.is_array()) return Invalid(source, "methods", "not an array (one array of methods a step)");
  if (plan->num_steps < 1) return Invalid(source, "steps", absl::StrCat(plan->num_steps, " is not >= 1"));
  if (plan->num_layers < 1) return Invalid(source, "layers", absl::StrCat(plan->num_layers, " is not >= 1"));
  if (int64_t(methods.size()) != plan->num_steps) {
    return Invalid(source, "methods", absl::StrCat(methods.size(), " steps, but steps is ", plan->num_steps));
  }
  for (size_t s = 0; s < methods.size(); ++s) {
    const std::string at = absl::StrCat("methods[", s, "]");
    if (!methods[s].is_array()) return Invalid(source, at, "not an array (one method a layer)");
    if (int64_t(methods[s].size()) != plan->num_layers) {
      return Invalid(source, at, absl::StrCat(methods[s].size(), " layers, but layers is ", plan->num_layers));
    }
    for (size_t l = 0; l < methods[s].size(); ++l) {
      ASSIGN_OR_RETURN(DitAttentionMethod m, MethodFromName(methods[s][l], source, absl::StrCat(at, "[", l, "]")));
      plan->methods.push_back(m);
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* DitAttentionMethodName(DitAttentionMethod method) {
  switch (method) {
    case DitAttentionMethod::kFull: return "full";
    case DitAttentionMethod::kFullShareCfg: return "full+cfg";
    case DitAttentionMethod::kWindow: return "window";
    case DitAttentionMethod::kWindowShareCfg: return "window+cfg";
    case DitAttentionMethod::kReuse: return "reuse";
  }
  return "?";
}

bool DitAttentionPlan::StoresResidual(int32_t step, int32_t layer) const {
  if (!IsFull(method(step, layer))) return false;
  for (int32_t s = step + 1; s < num_steps; ++s) {
    const DitAttentionMethod m = method(s, layer);
    if (IsWindow(m)) return true;
    if (IsFull(m)) return false;
  }
  return false;
}

bool DitAttentionPlan::StoresOutput(int32_t step, int32_t layer) const {
  return method(step, layer) != DitAttentionMethod::kReuse && step + 1 < num_steps &&
         method(step + 1, layer) == DitAttentionMethod::kReuse;
}

bool DitAttentionPlan::LayerUsesResidual(int32_t layer) const {
  for (int32_t s = 0; s < num_steps; ++s) {
    if (IsWindow(method(s, layer))) return true;
  }
  return false;
}

bool DitAttentionPlan::LayerUsesOutput(int32_t layer) const {
  for (int32_t s = 0; s < num_steps; ++s) {
    if (method(s, layer) == DitAttentionMethod::kReuse) return true;
  }
  return false;
}

double DitAttentionPlan::Share(DitAttentionMethod m) const {
  if (methods.empty()) return 0.0;
  return double(std::count(methods.begin(), methods.end(), m)) / double(methods.size());
}

double DitAttentionPlan::AttentionFraction(int64_t tokens) const {
  if (methods.empty() || tokens <= 0) return 1.0;
  // Keys a query sees in a band of `window` each side, averaged over queries.
  double band_keys = 0.0;
  for (int64_t i = 0; i < tokens; ++i) {
    band_keys += double(std::min<int64_t>(tokens - 1, i + window) - std::max<int64_t>(0, i - window) + 1);
  }
  const double band = band_keys / double(tokens) / double(tokens);
  double work = 0.0;
  for (int32_t s = 0; s < num_steps; ++s) {
    for (int32_t l = 0; l < num_layers; ++l) {
      const DitAttentionMethod m = method(s, l);
      double w = m == DitAttentionMethod::kReuse ? 0.0 : IsWindow(m) ? band : 1.0;
      if (StoresResidual(s, l)) w += band;  // the window pass beside the full one
      if (SharesCfg(m)) w *= 0.5;
      work += w;
    }
  }
  return work / double(methods.size());
}

std::string DitAttentionPlan::Describe() const {
  const auto pct = [&](std::initializer_list<DitAttentionMethod> ms) {
    double share = 0.0;
    for (DitAttentionMethod m : ms) share += Share(m);
    return absl::StrFormat("%.0f%%", 100.0 * share);
  };
  using M = DitAttentionMethod;
  return absl::StrCat("ditfastattn (", num_steps, " steps, window ", window,
                      ": full ", pct({M::kFull, M::kFullShareCfg}),
                      ", window ", pct({M::kWindow, M::kWindowShareCfg}), ", reuse ", pct({M::kReuse}), ", +cfg ",
                      pct({M::kFullShareCfg, M::kWindowShareCfg}), ")");
}

absl::StatusOr<DitAttentionPlan> ParseDitAttentionPlan(std::string_view json_text, const std::string& source,
                                                       const DitConfig& config) {
  const json doc = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  DitAttentionPlan plan;
  plan.source = source;
  if (doc.is_array()) {
    RETURN_IF_ERROR(ParseReferenceForm(doc, source, &plan));
  } else if (doc.is_object()) {
    RETURN_IF_ERROR(ParseTernForm(doc, source, &plan));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": neither a tern plan (an object) nor the reference's per-block list (an array)"));
  }
  if (plan.num_layers != config.depth) {
    return Invalid(source, "layers", absl::StrCat(plan.num_layers, ", but the model has ", config.depth, " blocks"));
  }
  const int32_t timesteps = config.noise_schedule.num_train_timesteps;
  if (plan.num_steps < 1 || plan.num_steps > timesteps) {
    return Invalid(source, "steps", absl::StrCat(plan.num_steps, " is not in [1, ", timesteps, "]"));
  }
  const int32_t tokens = config.num_tokens();
  if (plan.window < 1 || plan.window > tokens) {
    return Invalid(source, "window",
                   absl::StrCat(plan.window, " is not in [1, ", tokens,
                                "] (keys on each side of a query; the model has ", tokens, " tokens an image)"));
  }
  for (int32_t l = 0; l < plan.num_layers; ++l) {
    bool had_full = false, had_compute = false;
    for (int32_t s = 0; s < plan.num_steps; ++s) {
      const DitAttentionMethod m = plan.method(s, l);
      const std::string field = absl::StrCat("methods[", s, "][", l, "]");
      if (IsWindow(m) && !had_full) {
        return Invalid(source, field,
                       absl::StrCat("\"", DitAttentionMethodName(m), "\" needs an earlier full step of layer ", l,
                                    " (the residual it adds)"));
      }
      if (m == DitAttentionMethod::kReuse && !had_compute) {
        return Invalid(source, field,
                       absl::StrCat("\"reuse\" needs an earlier step of layer ", l, " that computes attention"));
      }
      had_full = had_full || IsFull(m);
      had_compute = had_compute || m != DitAttentionMethod::kReuse;
    }
  }
  return plan;
}

absl::StatusOr<DitAttentionPlan> LoadDitAttentionPlan(const std::string& path, const DitConfig& config) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the attention plan"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseDitAttentionPlan(text.str(), path, config);
}

std::string DitAttentionPlanToJson(const DitAttentionPlan& plan) {
  std::string out = absl::StrCat("{\"format\": \"", kFormat, "\", \"version\": 1, \"steps\": ", plan.num_steps,
                                 ", \"layers\": ", plan.num_layers, ", \"window\": ", plan.window,
                                 ",\n \"metadata\": ", plan.metadata_json, ",\n \"methods\": [\n");
  for (int32_t s = 0; s < plan.num_steps; ++s) {
    out += "  [";
    for (int32_t l = 0; l < plan.num_layers; ++l) {
      absl::StrAppend(&out, l > 0 ? ", " : "", "\"", DitAttentionMethodName(plan.method(s, l)), "\"");
    }
    absl::StrAppend(&out, s + 1 < plan.num_steps ? "],\n" : "]\n");
  }
  out += " ]}\n";
  return out;
}

absl::StatusOr<DitAttentionPlan> StretchDitAttentionPlan(const DitAttentionPlan& plan, int32_t source_tokens,
                                                         const DitConfig& config) {
  if (source_tokens <= 0 || plan.num_layers <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(plan.source, ": stretching needs the plan's layers and its model's ",
                                                   "tokens (", plan.num_layers, ", ", source_tokens, ")"));
  }
  DitAttentionPlan stretched;
  stretched.num_steps = plan.num_steps;
  stretched.num_layers = config.depth;
  stretched.window = std::max<int32_t>(1, int32_t(int64_t(plan.window) * config.num_tokens() / source_tokens));
  stretched.metadata_json = json{{"stretched_from", plan.source}}.dump();
  stretched.methods.reserve(size_t(plan.num_steps) * size_t(std::max(config.depth, 0)));
  for (int32_t s = 0; s < plan.num_steps; ++s) {
    for (int32_t l = 0; l < config.depth; ++l) {
      stretched.methods.push_back(plan.method(s, int32_t(int64_t(l) * plan.num_layers / config.depth)));
    }
  }
  // The checks of a file: the same text through the same parser.
  return ParseDitAttentionPlan(DitAttentionPlanToJson(stretched), absl::StrCat(plan.source, " (stretched)"), config);
}

}  // namespace tern::runtime
