#include "runtime/dit/dit_linear_plan.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

// The schemes a DiT layer can run as.
absl::Status CheckDitScheme(const LinearScheme& scheme, const std::string& where) {
  if (scheme.scheme == WeightScheme::kDense || IsW8A8(scheme.scheme)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(where, ": \"", scheme.ToString(),
                                                 "\" is not a scheme a DiT runs (dense, w8a8-int8 or w8a8-fp8; the "
                                                 "diffusion path has no weight-only kernels)"));
}

// diffusers' to_q, to_k, to_v: the one fused qkv layer's parts.
bool IsQkvPart(const DitLinearModule& m) {
  return m.role == DitLinearRole::kQkv && m.name.find("attn1.to_") != std::string::npos;
}

// The qkv parts of one diffusers block share a scheme.
absl::Status CheckFusedParts(const std::vector<DitLinearModule>& modules,
                             const std::map<std::string, LinearScheme>& layers, const std::string& source) {
  for (size_t i = 0; i + 2 < modules.size(); ++i) {
    if (!IsQkvPart(modules[i]) || !absl::EndsWith(modules[i].name, "to_q")) continue;
    const LinearScheme& q = layers.at(modules[i].name);
    for (size_t j = i + 1; j <= i + 2; ++j) {
      if (!(layers.at(modules[j].name) == q)) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": \"", modules[i].name, "\" is ", q.ToString(),
                                                       " but \"", modules[j].name, "\" is ",
                                                       layers.at(modules[j].name).ToString(),
                                                       "; tern runs q, k and v as one layer, so they share a scheme"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

DitLinearPlan DitLinearPlan::Dense(const DitConfig& config, DitNaming naming) {
  DitLinearPlan plan;
  for (const DitLinearModule& m : DitLinearModules(config, naming)) plan.layers_[m.name] = LinearScheme{};
  return plan;
}

absl::StatusOr<DitLinearPlan> DitLinearPlan::Create(const DitConfig& config, DitNaming naming,
                                                    const WeightSchemeRequest& request) {
  switch (request.kind) {
    case WeightSchemeRequest::Kind::kAuto:
      return Dense(config, naming);
    case WeightSchemeRequest::Kind::kUniform: {
      RETURN_IF_ERROR(CheckDitScheme(request.uniform, absl::StrCat("weight_scheme \"", request.ToString(), "\"")));
      DitLinearPlan plan;
      for (const DitLinearModule& m : DitLinearModules(config, naming)) {
        plan.layers_[m.name] = m.block_layer() ? request.uniform : LinearScheme{};
      }
      return plan;
    }
    case WeightSchemeRequest::Kind::kMixed: {
      ASSIGN_OR_RETURN(const MixedPrecisionPlan mixed, LoadMixedPrecisionPlan(request.plan_path));
      return FromMixed(config, naming, mixed, request.plan_path);
    }
  }
  return Dense(config, naming);
}

absl::StatusOr<DitLinearPlan> DitLinearPlan::FromMixed(const DitConfig& config, DitNaming naming,
                                                       const MixedPrecisionPlan& mixed, const std::string& source) {
  const std::string where = absl::StrCat("mixed-precision plan ", source);
  RETURN_IF_ERROR(CheckDitScheme(mixed.default_scheme, where + ": default"));
  const std::vector<DitLinearModule> modules = DitLinearModules(config, naming);
  DitLinearPlan plan;
  plan.mixed_ = true;
  for (const DitLinearModule& m : modules) {
    const auto named = mixed.layers.find(m.name);
    plan.layers_[m.name] = named != mixed.layers.end() ? named->second
                           : m.block_layer()           ? mixed.default_scheme
                                                       : LinearScheme{};
  }
  for (const auto& [module, scheme] : mixed.layers) {
    if (plan.layers_.count(module) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, " names \"", module,
                                                     "\", which is not a linear layer of this model (names look like \"",
                                                     modules.size() > 3 ? modules[3].name : modules[0].name,
                                                     "\"; tools/dit_quant lists them)"));
    }
    RETURN_IF_ERROR(CheckDitScheme(scheme, absl::StrCat(where, ": layers.", module)));
  }
  RETURN_IF_ERROR(CheckFusedParts(modules, plan.layers_, where));
  return plan;
}

const LinearScheme& DitLinearPlan::For(const std::string& module) const {
  const auto it = layers_.find(module);
  CHECK(it != layers_.end()) << "no linear layer \"" << module << "\" in the plan";
  return it->second;
}

bool DitLinearPlan::any_quantized() const {
  for (const auto& [module, scheme] : layers_) {
    if (scheme.scheme != WeightScheme::kDense) return true;
  }
  return false;
}

std::vector<LinearScheme> DitLinearPlan::schemes() const {
  std::vector<LinearScheme> out;
  for (const auto& [module, scheme] : layers_) {
    bool seen = false;
    for (const LinearScheme& s : out) seen = seen || s == scheme;
    if (!seen) out.push_back(scheme);
  }
  return out;
}

std::string DitLinearPlan::Describe(const std::string& dense_name) const {
  if (!any_quantized()) return dense_name;
  std::map<std::string, int> counts;
  for (const auto& [module, scheme] : layers_) ++counts[scheme.ToString()];
  std::vector<std::string> parts;
  for (const auto& [scheme, n] : counts) parts.push_back(absl::StrCat(scheme, " x ", n));
  std::string label = "mixed";
  if (!mixed_) {
    for (const auto& [scheme, n] : counts) {
      if (scheme != "dense") label = scheme;
    }
  }
  return absl::StrCat(label, " (", absl::StrJoin(parts, ", "), "; quantized at load, dense layers in ", dense_name,
                      ")");
}

}  // namespace tern::runtime
