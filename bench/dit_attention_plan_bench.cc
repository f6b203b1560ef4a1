#include "bench/dit_attention_plan_bench.h"

#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/dit/cuda_dit_ops.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/noise_schedule.h"

namespace tern::bench {
namespace {

using runtime::DitAttentionMethod;

absl::StatusOr<std::shared_ptr<const runtime::DitAttentionPlan>> SyntheticPlan(const std::string& spec,
                                                                             const runtime::DitConfig& config) {
  const std::vector<std::string> parts = absl::StrSplit(spec, ':');
  int32_t steps = 0;
  double fraction = 0;
  if (parts.size() < 3 || parts.size() > 4 || !absl::SimpleAtoi(parts[1], &steps) ||
      !absl::SimpleAtod(parts[2], &fraction) || !(fraction >= 0.0 && fraction <= 1.0) ||
      (parts.size() == 4 && parts[3] != "cfg")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--attention-plan ", spec, ": expected synthetic:STEPS:FRACTION[:cfg], FRACTION in [0, 1]"));
  }
  const bool cfg = parts.size() == 4;
  runtime::DitAttentionPlan plan;
  plan.num_steps = steps;
  plan.num_layers = config.depth;
  plan.window = std::max(1, config.num_tokens() / 8);
  plan.metadata_json = absl::StrCat("{\"synthetic\": \"", spec, "\"}");
  for (int32_t s = 0; s < steps; ++s) {
    for (int32_t l = 0; l < config.depth; ++l) {
      const double u = std::fmod(double(s * config.depth + l) * 0.6180339887498949, 1.0);
      DitAttentionMethod m = DitAttentionMethod::kFull;
      if (s > 0 && u < fraction / 2) {
        m = DitAttentionMethod::kReuse;
      } else if (s > 0 && u < fraction) {
        m = cfg ? DitAttentionMethod::kWindowShareCfg : DitAttentionMethod::kWindow;
      } else if (s > 0 && cfg) {
        m = DitAttentionMethod::kFullShareCfg;
      }
      plan.methods.push_back(m);
    }
  }
  auto parsed = runtime::ParseDitAttentionPlan(runtime::DitAttentionPlanToJson(plan), spec, config);
  if (!parsed.ok()) return parsed.status();
  return std::make_shared<const runtime::DitAttentionPlan>(*std::move(parsed));
}

absl::StatusOr<std::shared_ptr<const runtime::DitAttentionPlan>> StretchedPlan(const std::string& spec,
                                                                             const runtime::DitConfig& config) {
  const std::vector<std::string> parts = absl::StrSplit(spec, ':');
  int32_t source_tokens = 0;
  int32_t grid = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[2], &source_tokens) || source_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--attention-plan ", spec, ": expected stretch:FILE:TOKENS"));
  }
  while ((grid + 1) * (grid + 1) <= source_tokens) ++grid;
  if (grid * grid != source_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("--attention-plan ", spec, ": ", source_tokens,
                                                   " tokens is not a square grid"));
  }
  std::ifstream in(parts[1]);
  if (!in) return absl::NotFoundError(absl::StrCat("--attention-plan ", spec, ": cannot read ", parts[1]));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("layers") || !j["layers"].is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat("--attention-plan ", spec, ": ", parts[1],
                                                   " is not a tern plan with \"layers\""));
  }
  // The plan's own model as far as its checks look: its depth and tokens.
  runtime::DitConfig source_config = config;
  source_config.depth = j["layers"].get<int32_t>();
  source_config.image_size = grid * config.patch_size;
  auto source = runtime::ParseDitAttentionPlan(text, parts[1], source_config);
  if (!source.ok()) return source.status();
  auto stretched = runtime::StretchDitAttentionPlan(*source, source_tokens, config);
  if (!stretched.ok()) return stretched.status();
  return std::make_shared<const runtime::DitAttentionPlan>(*std::move(stretched));
}

void CheckDevice(const std::string& where) {
  cudaError_t error = cudaDeviceSynchronize();
  if (error == cudaSuccess) error = cudaGetLastError();
  if (error != cudaSuccess) {
    std::fprintf(stderr, "tern-dit-bench: %s: %s (%s)\n", where.c_str(), cudaGetErrorName(error),
                 cudaGetErrorString(error));
    std::exit(1);
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<const runtime::DitAttentionPlan>> AttentionPlanFromSpec(
    const std::string& spec, const runtime::DitConfig& config) {
  if (spec.rfind("synthetic:", 0) == 0) return SyntheticPlan(spec, config);
  if (spec.rfind("stretch:", 0) == 0) return StretchedPlan(spec, config);
  auto plan = runtime::LoadDitAttentionPlan(spec, config);
  if (!plan.ok()) return plan.status();
  return std::make_shared<const runtime::DitAttentionPlan>(*std::move(plan));
}

absl::Status RunAttentionPlanBench(const runtime::DitConfig& config, const runtime::WeightStore& store,
                                   runtime::DType dtype, const runtime::DitModelOptions& base_options,
                                   const std::string& spec, const std::vector<int64_t>& batches, int reps,
                                   nlohmann::json* results) {
  auto plan = AttentionPlanFromSpec(spec, config);
  if (!plan.ok()) return plan.status();
  auto schedule = runtime::NoiseSchedule::Create(config.noise_schedule);
  if (!schedule.ok()) return schedule.status();
  const int64_t tokens = config.num_tokens();
  std::printf("\nDiTFastAttn generations at %lld tokens, weight scheme %s: %s; %d steps; attention work kept %.3f\n",
              (long long)tokens, base_options.weight_scheme.ToString().c_str(), (*plan)->Describe().c_str(),
              (*plan)->num_steps, (*plan)->AttentionFraction(tokens));
  std::printf("%6s %5s | %11s %11s %11s | %9s %9s | %12s\n", "tokens", "batch", "exact graph", "exact eager",
              "plan", "speed-up", "vs eager", "cache MB/row");
  for (int64_t batch : batches) {
    const int32_t images = int32_t(std::max<int64_t>(1, batch / 2));
    runtime::CudaDitOpsOptions options;
    options.compute_dtype = dtype;
    runtime::CudaDitOpsOptions eager_options = options;
    eager_options.cuda_graphs = false;
    auto graph_ops = runtime::CudaDitOps::Create(options);
    auto eager_ops = runtime::CudaDitOps::Create(eager_options);
    if (!graph_ops.ok()) return graph_ops.status();
    if (!eager_ops.ok()) return eager_ops.status();
    runtime::DitModelOptions model_options = base_options;
    model_options.attention_plan = *plan;
    model_options.attention_cache_rows = 2 * images;
    auto graph_model = runtime::DitModel::Create(config, store, graph_ops->get(), model_options);
    if (!graph_model.ok()) return graph_model.status();
    runtime::DitModelOptions exact_options = base_options;
    exact_options.attention_plan = nullptr;
    auto eager_model = runtime::DitModel::Create(config, store, eager_ops->get(), exact_options);
    if (!eager_model.ok()) return eager_model.status();
    const std::string where = absl::StrCat(tokens, " tokens, batch ", batch, ", attention plan");

    // One generation of `images` guided images; ms.
    const auto generate = [&](runtime::DitModel* model, bool exact, int round) {
      std::vector<std::unique_ptr<runtime::DenoisingSample>> samples;
      std::vector<runtime::DenoisingSample*> running;
      for (int32_t i = 0; i < images; ++i) {
        runtime::DenoisingParams p;
        p.class_label = (i * 37 + round) % config.num_classes;
        p.sampler = runtime::DiffusionSamplerKind::kDdim;
        p.num_steps = (*plan)->num_steps;
        p.guidance_scale = 4.0;
        p.seed = uint64_t(round) * 1000 + uint64_t(i);
        p.exact_attention = exact;
        auto sample = runtime::DenoisingSample::Create(config, &*schedule, p);
        if (!sample.ok()) {
          std::fprintf(stderr, "tern-dit-bench: %s\n", std::string(sample.status().message()).c_str());
          std::exit(1);
        }
        running.push_back(sample->get());
        samples.push_back(*std::move(sample));
      }
      runtime::DenoisingStepper stepper(model);
      const auto start = std::chrono::steady_clock::now();
      while (!running.front()->done()) {
        if (const absl::Status s = stepper.Step(running); !s.ok()) {
          std::fprintf(stderr, "tern-dit-bench: %s: step: %s\n", where.c_str(), std::string(s.message()).c_str());
          std::exit(1);
        }
      }
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    };
    const auto time = [&](runtime::DitModel* model, bool exact) {
      generate(model, exact, 0);  // warm: buffers sized, each pass eager
      generate(model, exact, 0);  // graphs captured
      CheckDevice(where + (exact ? ", exact" : ", plan"));
      double total = 0;
      for (int r = 0; r < reps; ++r) total += generate(model, exact, r + 1);
      return total / reps;
    };
    const double exact_graph_ms = time(graph_model->get(), true);
    const double exact_eager_ms = time(eager_model->get(), true);
    const runtime::CudaDitOps::GraphStats before = (*graph_ops)->graph_stats();
    const double plan_ms = time(graph_model->get(), false);
    const runtime::CudaDitOps::GraphStats after = (*graph_ops)->graph_stats();
    const int64_t plan_replayed = after.replayed - before.replayed, plan_eager = after.eager - before.eager;
    const double row_mb = double((*graph_model)->attention_cache()->bytes_per_row()) / 1e6;
    const int32_t steps = (*plan)->num_steps;
    std::printf("%6lld %5lld | %11.2f %11.2f %11.2f | %8.2fx %8.2fx | %12.1f\n", (long long)tokens, (long long)batch,
                exact_graph_ms, exact_eager_ms, plan_ms, exact_graph_ms / plan_ms, exact_eager_ms / plan_ms, row_mb);
    results->push_back({{"tokens", tokens},
                        {"batch_rows", 2 * images},
                        {"images", images},
                        {"steps", steps},
                        {"attention_plan", spec},
                        {"weight_scheme", base_options.weight_scheme.ToString()},
                        {"plan", (*plan)->Describe()},
                        {"attention_fraction", (*plan)->AttentionFraction(tokens)},
                        {"generation_ms_exact_graphs", exact_graph_ms},
                        {"generation_ms_exact_eager", exact_eager_ms},
                        {"generation_ms_plan", plan_ms},
                        {"step_ms_exact_graphs", exact_graph_ms / steps},
                        {"step_ms_plan", plan_ms / steps},
                        {"speedup_vs_exact_graphs", exact_graph_ms / plan_ms},
                        {"speedup_vs_exact_eager", exact_eager_ms / plan_ms},
                        {"cache_bytes_per_row", (*graph_model)->attention_cache()->bytes_per_row()},
                        {"cache_bytes", (*graph_model)->attention_cache()->bytes()},
                        {"plan_passes_replayed", plan_replayed},
                        {"plan_passes_eager", plan_eager}});
  }
  return absl::OkStatus();
}

}  // namespace tern::bench
