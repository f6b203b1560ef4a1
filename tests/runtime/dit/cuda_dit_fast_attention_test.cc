// DiTFastAttn on CUDA against the CPU ops: WindowAttention (the flash
// kernel's per-sample band and the per-row kernel's) over mixed full and
// band samples, CopySamples and Subtract; an unbanded or image-wide band is
// Attention bit for bit; the demo DiT under a mixed plan matches the CPU's
// images, a sample is bitwise the same alone or batched at other steps, and
// plan passes leave the CUDA graphs of ordinary passes correct.
// Label gpu: every test skips without a GPU.
//
// Tolerances as cuda_dit_ops_test: max |gpu - cpu| / max |cpu| of an op's
// output, 2e-5 fp32, 4e-3 fp16, 2e-2 bf16.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/base/check.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/cuda_dit_ops.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/model/dtype.h"
#include "tests/runtime/dit/cuda_dit_test_util.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

using dit_test::DtypeName;
using dit_test::MakeCudaOps;
using dit_test::MaxRelativeError;
using dit_test::OpTolerance;
using dit_test::RandomValues;

// One pass on `ops`: inputs copied into scratch slots 0.., `body` returns the output.
using Inputs = std::vector<std::pair<std::pair<int64_t, int64_t>, std::vector<float>>>;

std::vector<float> RunPass(DitOps& ops, int64_t batch, const Inputs& inputs,
                           const std::function<Tensor(DitOps&, std::vector<Tensor>&)>& body) {
  std::vector<float> t(size_t(batch), 10.0f);
  std::vector<int32_t> y(size_t(batch), 0);
  DitStep step;
  step.timesteps = t;
  step.labels = y;
  step.eager = true;
  CHECK(ops.BeginStep(step).ok());
  std::vector<Tensor> tensors;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor x = ops.Scratch(int(i), inputs[i].first.first, inputs[i].first.second);
    ops.CopyFromHost(inputs[i].second.data(), x);
    tensors.push_back(x);
  }
  const Tensor out = body(ops, tensors);
  const absl::Status finished = ops.FinishStep();
  EXPECT_TRUE(finished.ok()) << finished;
  std::vector<float> result(size_t(out.rows) * out.cols);
  ops.ReadToHost(out, result.data());
  return result;
}

TEST(CudaDitFastAttentionOpsTest, WindowAttentionMatchesTheCpu) {
  struct Shape {
    int32_t tokens, heads, head_dim;
  };
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    auto gpu = MakeCudaOps(dtype);
    if (gpu == nullptr) GTEST_SKIP() << "no CUDA device";
    CpuDitOps cpu;
    // The demo's heads, DiT-XL/2's at 256 and 1024 tokens, partial tiles,
    // and a head dim the tensor-core kernel declines (40).
    for (const Shape& s : {Shape{256, 4, 32}, Shape{256, 4, 72}, Shape{1024, 2, 72}, Shape{200, 2, 64},
                           Shape{77, 2, 40}}) {
      // Per sample: full, a 0-wide band (the diagonal), bands narrower and
      // wider than a 64-key tile, one past a CTA's 128 queries, the whole image.
      const std::vector<int32_t> windows = {-1, 0, 5, 63, 64, 130, s.tokens};
      const int64_t batch = int64_t(windows.size());
      const int64_t width = int64_t(s.heads) * s.head_dim;
      const int64_t rows = batch * s.tokens;
      const auto qkv = RandomValues(size_t(rows * 3 * width), 7, dtype, -3.0f, 3.0f);
      const DitAttentionParams p{s.heads, s.head_dim, float(1.0 / std::sqrt(double(s.head_dim)))};
      const auto windowed = [&](DitOps& ops, std::vector<Tensor>& t) {
        Tensor out = ops.Scratch(9, rows, width);
        ops.WindowAttention(t[0], p, windows, out);
        return out;
      };
      const std::vector<float> want = RunPass(cpu, batch, {{{rows, 3 * width}, qkv}}, windowed);
      const std::vector<float> got = RunPass(*gpu, batch, {{{rows, 3 * width}, qkv}}, windowed);
      const double error = MaxRelativeError(want, got);
      std::printf("window attention %s L=%d %dx%d: %.3g relative\n", DtypeName(dtype), s.tokens, s.heads, s.head_dim, error);
      EXPECT_LE(error, OpTolerance(dtype)) << DtypeName(dtype) << " L=" << s.tokens << " head_dim " << s.head_dim;
      // Unbanded and image-wide samples: Attention's output bit for bit.
      const auto unbanded = [&](DitOps& ops, std::vector<Tensor>& t) {
        Tensor out = ops.Scratch(9, rows, width);
        ops.Attention(t[0], p, out);
        return out;
      };
      const std::vector<float> full = RunPass(*gpu, batch, {{{rows, 3 * width}, qkv}}, unbanded);
      const size_t per_sample = size_t(s.tokens) * size_t(width);
      for (int64_t b : {int64_t(0), batch - 1}) {
        EXPECT_EQ(std::memcmp(got.data() + b * per_sample, full.data() + b * per_sample, per_sample * 4), 0)
            << DtypeName(dtype) << " L=" << s.tokens << ": sample " << b << " (window " << windows[size_t(b)]
            << ") differs from Attention";
      }
    }
  }
}

TEST(CudaDitFastAttentionOpsTest, CopySamplesSubtractAndLinearSamplesMatchTheCpu) {
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    auto gpu = MakeCudaOps(dtype);
    if (gpu == nullptr) GTEST_SKIP() << "no CUDA device";
    CpuDitOps cpu;
    const int64_t L = 16, cols = 40, samples = 5;
    const auto a = RandomValues(size_t(samples * L * cols), 1, dtype, -2.0f, 2.0f);
    const auto b = RandomValues(size_t(samples * L * cols), 2, dtype, -2.0f, 2.0f);
    const std::vector<int32_t> from = {4, 0, 2}, to = {1, 3, 0};
    const auto body = [&](DitOps& ops, std::vector<Tensor>& t) {
      Tensor dst = ops.Scratch(8, samples * L, cols);
      ops.CopySamples(t[1], {0, 1, 2, 3, 4}, dst, {0, 1, 2, 3, 4}, L);  // dst = b
      ops.CopySamples(t[0], from, dst, to, L);                            // samples of a over it
      Tensor diff = ops.Scratch(9, samples * L, cols);
      ops.Subtract(dst, t[0], diff);
      ops.CopySamples(diff, {3}, diff, {4}, L);  // within one tensor
      return diff;
    };
    const auto want = RunPass(cpu, samples, {{{samples * L, cols}, a}, {{samples * L, cols}, b}}, body);
    const auto got = RunPass(*gpu, samples, {{{samples * L, cols}, a}, {{samples * L, cols}, b}}, body);
    EXPECT_LE(MaxRelativeError(want, got), dtype == DType::kF32 ? 0.0 : 8e-3) << DtypeName(dtype);
  }
}

// The demo DiT (8 blocks, 256 tokens) under a plan with every method.
std::shared_ptr<const DitAttentionPlan> MixedPlan() {
  DitAttentionPlan plan;
  plan.num_steps = 6;
  plan.num_layers = 8;
  plan.window = 16;
  using M = DitAttentionMethod;
  for (int32_t s = 0; s < 6; ++s) {
    for (int32_t l = 0; l < 8; ++l) {
      const M m = s == 0   ? M::kFull
                  : s == 1 ? (l % 2 ? M::kWindow : M::kFullShareCfg)
                  : s == 2 ? (l % 3 == 0 ? M::kReuse : M::kWindowShareCfg)
                  : s == 3 ? (l % 2 ? M::kFull : M::kReuse)
                  : s == 4 ? M::kWindow
                           : (l % 2 ? M::kReuse : M::kFullShareCfg);
      plan.methods.push_back(m);
    }
  }
  auto config = LoadDitConfig(dit_test::kDemoDitDir);
  CHECK(config.ok());
  auto parsed = ParseDitAttentionPlan(DitAttentionPlanToJson(plan), "mixed plan", *config);
  CHECK(parsed.ok()) << parsed.status();
  return std::make_shared<const DitAttentionPlan>(*std::move(parsed));
}

std::unique_ptr<DitModel> LoadModel(DitOps* ops, std::shared_ptr<const DitAttentionPlan> plan) {
  DitModelOptions options;
  options.attention_plan = std::move(plan);
  options.attention_cache_rows = 8;
  auto model = DitModel::Load(dit_test::kDemoDitDir, ops, options);
  CHECK(model.ok()) << model.status();
  return *std::move(model);
}

TEST(CudaDitFastAttentionModelTest, MixedPlanMatchesTheCpuAndIsBatchInvariant) {
  auto gpu = MakeCudaOps(DType::kF32, /*graphs=*/true);
  if (gpu == nullptr) GTEST_SKIP() << "no CUDA device";
  CpuDitOps cpu;
  auto cpu_model = LoadModel(&cpu, MixedPlan());
  auto gpu_model = LoadModel(gpu.get(), MixedPlan());
  auto schedule = NoiseSchedule::Create(cpu_model->config().noise_schedule);
  ASSERT_TRUE(schedule.ok());
  struct Spec {
    int32_t label;
    double guidance;
    int32_t steps;
    uint64_t seed;
    int joins_after;
  };
  // Guided and unguided under the plan, and a 5-step sample (exact).
  const std::vector<Spec> specs = {{3, 2.5, 6, 21, 0}, {8, 1.0, 6, 22, 2}, {0, 2.0, 5, 23, 3}};
  const auto make = [&](const DitModel& m, const Spec& s) {
    DenoisingParams p;
    p.class_label = s.label;
    p.guidance_scale = s.guidance;
    p.num_steps = s.steps;
    p.seed = s.seed;
    auto sample = DenoisingSample::Create(m.config(), &*schedule, p);
    CHECK(sample.ok());
    return *std::move(sample);
  };
  const auto run_alone = [&](DitModel* m, const Spec& s) {
    DenoisingStepper stepper(m);
    auto sample = make(*m, s);
    while (!sample->done()) {
      DenoisingSample* one[] = {sample.get()};
      CHECK(stepper.Step(one).ok());
    }
    return std::vector<float>(sample->x().begin(), sample->x().end());
  };
  std::vector<std::vector<float>> alone;
  for (const Spec& s : specs) {
    const std::vector<float> want = run_alone(cpu_model.get(), s);
    alone.push_back(run_alone(gpu_model.get(), s));
    const double error = MaxRelativeError(want, alone.back());
    std::printf("demo DiT under the mixed plan, fp32 cuda vs cpu, sample seed %llu: %.3g relative\n",
                static_cast<unsigned long long>(s.seed), error);
    EXPECT_LE(error, 1e-3) << "seed " << s.seed;
  }
  // Batched with samples at other steps: bitwise the same on the GPU.
  DenoisingStepper stepper(gpu_model.get());
  std::vector<std::unique_ptr<DenoisingSample>> samples(specs.size());
  for (int steps = 0;; ++steps) {
    for (size_t i = 0; i < specs.size(); ++i) {
      if (samples[i] == nullptr && steps >= specs[i].joins_after) samples[i] = make(*gpu_model, specs[i]);
    }
    std::vector<DenoisingSample*> running;
    for (auto& s : samples) {
      if (s != nullptr && !s->done()) running.push_back(s.get());
    }
    if (running.empty()) break;
    ASSERT_TRUE(stepper.Step(running).ok());
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(std::vector<float>(samples[i]->x().begin(), samples[i]->x().end()), alone[i]) << "sample " << i;
  }
  EXPECT_EQ(gpu_model->attention_cache()->slots_in_use(), 0);
}

TEST(CudaDitFastAttentionModelTest, PlanPassesLeaveTheGraphsOfOtherPassesCorrect) {
  for (DType dtype : {DType::kBF16}) {
    auto graphs = MakeCudaOps(dtype, /*graphs=*/true);
    if (graphs == nullptr) GTEST_SKIP() << "no CUDA device";
    auto eager = MakeCudaOps(dtype, /*graphs=*/false);
    auto with_graphs = LoadModel(graphs.get(), MixedPlan());
    auto without = LoadModel(eager.get(), MixedPlan());
    // Exact 4-step samples (graphs: eager, captured, replayed at batch 2)
    // interleaved with plan samples (6 steps, eager passes) on one ops.
    const auto generate = [&](DitModel* model) {
      auto pipeline = DitPipeline::Create(model);
      CHECK(pipeline.ok());
      std::vector<std::vector<float>> out;
      for (int round = 0; round < 3; ++round) {
        for (int32_t steps : {4, 6}) {
          DitGenerateRequest r;
          r.class_label = 2 + round;
          r.num_images = 2;
          r.num_steps = steps;
          r.guidance_scale = 1.0;
          r.seed = 100 + uint64_t(round);
          auto images = (*pipeline)->Generate(r);
          CHECK(images.ok()) << images.status();
          for (const DitImage& image : *images) out.push_back(image.sample);
        }
      }
      return out;
    };
    const auto a = generate(with_graphs.get());
    const auto b = generate(without.get());
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << DtypeName(dtype) << " image " << i;
    const CudaDitOps::GraphStats stats = graphs->graph_stats();
    std::printf("%s: graphs captured %lld, replayed %lld, eager passes %lld\n", DtypeName(dtype),
                static_cast<long long>(stats.captured), static_cast<long long>(stats.replayed),
                static_cast<long long>(stats.eager));
    EXPECT_GT(stats.replayed, 0);
  }
}

}  // namespace
}  // namespace tern::runtime
