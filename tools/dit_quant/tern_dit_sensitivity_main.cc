// tern-dit-sensitivity: which linear layers of a DiT W8A8 hurts most
// (ViDiT-Q / MixDQ style layer sensitivity), on the CPU ops, and the
// mixed-precision plan that keeps the worst of them dense:
//
//   tern-dit-sensitivity --model DIR [--scheme w8a8-int8] [--classes 0-9]
//                        [--steps 6] [--seed 7] [--keep-dense 4]
//                        [--plan-out plan.json] [--json-out results.json]
//
// Calibration inputs: for each class, one DDIM trajectory of --steps steps
// from seeded noise on the dense model (guidance 1); the (x_t, t, class) the
// network sees at each step are the inputs. Per layer: the model with that
// layer alone quantized to --scheme (the rest dense), its eps over every
// input against the dense model's: relative MSE = sum (eps_q - eps)^2 /
// sum eps^2. Printed: the ranking, then the error with every layer
// quantized (the uniform scheme) and with the --keep-dense worst kept dense
// (what --plan-out gives). --plan-out writes the plan ternd reads
// (weight_scheme "mixed:<file>", runtime/dit/dit_linear_plan.h): the scheme
// as default, the --keep-dense most sensitive block layers "dense". Layers
// a uniform scheme keeps dense (patch embedding, timestep MLP, final layer)
// are measured too, for the ranking, and stay dense.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_linear_plan.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/noise_schedule.h"
#include "runtime/model/weight_scheme.h"
#include "tools/common/tool_flags.h"

ABSL_FLAG(std::string, model, "", "DiT model directory");
ABSL_FLAG(std::string, scheme, "w8a8-int8", "w8a8-int8 or w8a8-fp8");
ABSL_FLAG(std::string, classes, "0-9", "classes of the calibration trajectories: a range A-B or a list A,B,C");
ABSL_FLAG(int32_t, steps, 6, "DDIM steps per trajectory (inputs per class)");
ABSL_FLAG(uint64_t, seed, 7, "noise seed of class c's trajectory: seed + c");
ABSL_FLAG(int32_t, keep_dense, 4, "block layers the written plan keeps dense (the most sensitive)");
ABSL_FLAG(std::string, plan_out, "", "file for the mixed-precision plan (optional)");
ABSL_FLAG(std::string, json_out, "", "file for the per-layer results as JSON (optional)");

namespace {

using namespace tern::runtime;

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-dit-sensitivity: %s\n", message.c_str());
  return 1;
}

// The network's inputs along the calibration trajectories.
struct Inputs {
  std::vector<float> x;  // [N, C*H*W]
  std::vector<float> t;  // [N]
  std::vector<int32_t> y;  // [N]
};

// Forward passes of at most kChunk samples.
constexpr int64_t kChunk = 16;

absl::StatusOr<std::vector<float>> Eps(DitModel& model, const Inputs& in) {
  const int64_t n = int64_t(in.t.size());
  const int64_t pixels = model.config().sample_elements();
  std::vector<float> eps(in.x.size());
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t m = std::min(kChunk, n - b);
    DitBatch batch;
    batch.x = absl::MakeConstSpan(in.x).subspan(b * pixels, m * pixels);
    batch.timesteps = absl::MakeConstSpan(in.t).subspan(b, m);
    batch.labels = absl::MakeConstSpan(in.y).subspan(b, m);
    const absl::Status s = model.Forward(batch, absl::MakeSpan(eps).subspan(b * pixels, m * pixels));
    if (!s.ok()) return s;
  }
  return eps;
}

double RelativeMse(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = double(got[i]) - want[i];
    num += d * d;
    den += double(want[i]) * want[i];
  }
  return den > 0.0 ? num / den : 0.0;
}

const char* RoleName(DitLinearRole role) {
  switch (role) {
    case DitLinearRole::kPatchEmbed: return "patch embedding";
    case DitLinearRole::kTimestepEmbed: return "timestep MLP";
    case DitLinearRole::kAdaLN: return "adaLN";
    case DitLinearRole::kQkv: return "qkv";
    case DitLinearRole::kAttentionOut: return "attention out";
    case DitLinearRole::kMlpFc1: return "MLP fc1";
    case DitLinearRole::kMlpFc2: return "MLP fc2";
    case DitLinearRole::kFinalAdaLN: return "final adaLN";
    case DitLinearRole::kFinalLinear: return "final linear";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tern-dit-sensitivity --model DIR [--scheme w8a8-int8] [--plan-out FILE]");
  tern::tools::ParseToolCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) return Fail("--model is required");
  auto scheme = ParseLinearScheme(absl::GetFlag(FLAGS_scheme));
  if (!scheme.ok() || !IsW8A8(scheme->scheme)) {
    return Fail(absl::StrCat("--scheme \"", absl::GetFlag(FLAGS_scheme), "\": expected w8a8-int8 or w8a8-fp8"));
  }
  const std::optional<std::vector<int32_t>> class_list = tern::tools::ParseClassList(absl::GetFlag(FLAGS_classes));
  if (!class_list) return Fail("--classes: expected A-B or A,B,C");
  const std::vector<int32_t>& classes = *class_list;
  const int32_t steps = absl::GetFlag(FLAGS_steps);
  const int32_t keep_dense = absl::GetFlag(FLAGS_keep_dense);
  if (steps < 1 || keep_dense < 0) return Fail("--steps must be at least 1 and --keep-dense not negative");

  CpuDitOps dense_ops;
  auto dense = DitModel::Load(dir, &dense_ops);
  if (!dense.ok()) return Fail(std::string(dense.status().message()));
  const DitConfig& config = (*dense)->config();
  auto schedule = NoiseSchedule::Create(config.noise_schedule);
  if (!schedule.ok()) return Fail(std::string(schedule.status().message()));

  // Calibration inputs: the dense model's DDIM trajectories.
  Inputs inputs;
  DenoisingStepper stepper(dense->get());
  for (int32_t c : classes) {
    DenoisingParams params;
    params.class_label = c;
    params.sampler = DiffusionSamplerKind::kDdim;
    params.num_steps = steps;
    params.seed = absl::GetFlag(FLAGS_seed) + uint64_t(c);
    if (auto s = ValidateDenoisingParams(config, params); !s.ok()) return Fail(std::string(s.message()));
    auto sample = DenoisingSample::Create(config, &*schedule, params);
    if (!sample.ok()) return Fail(std::string(sample.status().message()));
    while (!(*sample)->done()) {
      inputs.x.insert(inputs.x.end(), (*sample)->x().begin(), (*sample)->x().end());
      inputs.t.push_back(float((*sample)->timestep()));
      inputs.y.push_back(c);
      DenoisingSample* one = sample->get();
      if (auto s = stepper.Step(absl::MakeSpan(&one, 1)); !s.ok()) return Fail(std::string(s.message()));
    }
  }
  auto reference = Eps(**dense, inputs);
  if (!reference.ok()) return Fail(std::string(reference.status().message()));

  const DitNaming naming = (*dense)->naming();

  // One model per layer, that layer alone quantized.
  const auto error_of = [&](const MixedPrecisionPlan& plan) -> absl::StatusOr<double> {
    CpuDitOps ops;
    DitModelOptions options;
    options.weight_scheme.kind = WeightSchemeRequest::Kind::kMixed;
    options.weight_scheme.plan_path = "(sensitivity plan)";
    options.plan = &plan;
    auto model = DitModel::Load(dir, &ops, options);
    if (!model.ok()) return model.status();
    auto eps = Eps(**model, inputs);
    if (!eps.ok()) return eps.status();
    return RelativeMse(*eps, *reference);
  };
  struct Row {
    DitLinearModule module;
    double error = 0.0;
  };
  std::vector<Row> rows;
  std::map<std::string, bool> seen;
  for (const DitLinearModule& m : DitLinearModules(config, naming)) {
    // diffusers' to_q/to_k/to_v are one layer: measured as one.
    const bool qkv_part = m.role == DitLinearRole::kQkv && naming == DitNaming::kDiffusers;
    const std::string key = qkv_part ? m.name.substr(0, m.name.rfind('.')) : m.name;
    if (seen[key]) continue;
    seen[key] = true;
    MixedPrecisionPlan plan;  // default dense
    if (qkv_part) {
      for (const char* part : {"to_q", "to_k", "to_v"}) plan.layers[absl::StrCat(key, ".", part)] = *scheme;
    } else {
      plan.layers[m.name] = *scheme;
    }
    auto error = error_of(plan);
    if (!error.ok()) return Fail(absl::StrCat(m.name, ": ", error.status().message()));
    rows.push_back({m, *error});
    std::fprintf(stderr, "  %-40s %.4g\n", key.c_str(), *error);
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.error > b.error; });

  // The uniform scheme, and the plan keeping the worst layers dense.
  MixedPrecisionPlan uniform;
  uniform.default_scheme = *scheme;
  MixedPrecisionPlan kept = uniform;
  const auto keep = [&](MixedPrecisionPlan* plan, const DitLinearModule& m) {
    if (m.role == DitLinearRole::kQkv && naming == DitNaming::kDiffusers) {
      const std::string base = m.name.substr(0, m.name.rfind('.'));
      for (const char* part : {"to_q", "to_k", "to_v"}) plan->layers[absl::StrCat(base, ".", part)] = LinearScheme{};
    } else {
      plan->layers[m.name] = LinearScheme{};
    }
  };
  // The worst of the layers the scheme quantizes (the others are dense already).
  std::vector<std::string> kept_names;
  for (const Row& r : rows) {
    if (int32_t(kept_names.size()) == keep_dense) break;
    if (!r.module.block_layer()) continue;
    keep(&kept, r.module);
    kept_names.push_back(r.module.name);
  }
  auto uniform_error = error_of(uniform);
  auto kept_error = error_of(kept);
  if (!uniform_error.ok()) return Fail(std::string(uniform_error.status().message()));
  if (!kept_error.ok()) return Fail(std::string(kept_error.status().message()));

  std::printf("%s on %s: %zu calibration inputs (%zu classes x %d DDIM steps)\n", scheme->ToString().c_str(),
              dir.c_str(), inputs.t.size(), classes.size(), steps);
  std::printf("%-4s  %-40s  %-16s  %s\n", "rank", "layer", "role", "relative MSE of eps");
  for (size_t i = 0; i < rows.size(); ++i) {
    const bool kept_dense =
        std::find(kept_names.begin(), kept_names.end(), rows[i].module.name) != kept_names.end();
    std::printf("%-4zu  %-40s  %-16s  %.4g%s\n", i + 1, rows[i].module.name.c_str(), RoleName(rows[i].module.role),
                rows[i].error,
                kept_dense ? "  (kept dense)" : !rows[i].module.block_layer() ? "  (dense unless a plan names it)" : "");
  }
  std::printf("all block layers %s (weight_scheme %s): relative MSE %.4g\n", scheme->ToString().c_str(),
              scheme->ToString().c_str(), *uniform_error);
  std::printf("the %zu most sensitive block layers kept dense (the plan): relative MSE %.4g\n", kept_names.size(),
              *kept_error);

  nlohmann::json plan_json;
  plan_json["default"] = scheme->ToString();
  plan_json["layers"] = nlohmann::json::object();
  for (const auto& [module, s] : kept.layers) plan_json["layers"][module] = s.ToString();
  if (const std::string path = absl::GetFlag(FLAGS_plan_out); !path.empty()) {
    std::ofstream out(path);
    out << plan_json.dump(2) << "\n";
    if (!out) return Fail("cannot write " + path);
  }
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    nlohmann::json doc;
    doc["model"] = dir;
    doc["scheme"] = scheme->ToString();
    doc["inputs"] = inputs.t.size();
    doc["uniform_relative_mse"] = *uniform_error;
    doc["plan_relative_mse"] = *kept_error;
    doc["plan"] = plan_json;
    for (const Row& r : rows) {
      doc["layers"].push_back({{"layer", r.module.name}, {"role", RoleName(r.module.role)}, {"relative_mse", r.error}});
    }
    std::ofstream out(path);
    out << doc.dump(2) << "\n";
    if (!out) return Fail("cannot write " + path);
  }
  return 0;
}
