// The demo DiT on CudaDitOps: its forward pass against PyTorch, its sampler
// goldens on CUDA fp32, samples bitwise the same alone and batched; and a
// head_dim-72, 256-token DiT through batches 1, 8, 64 and 1 on one ops
// (graphs, profile), as tern-dit-bench runs it. Part of cuda_dit_ops_test.
// Label gpu: every test skips without a GPU.
#include "runtime/dit/dit_model.h"

#include "runtime/dit/cuda_dit_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>


#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/model/dtype.h"
#include "runtime/model/safetensors.h"
#include "tests/runtime/dit/dit_golden.h"
#include "tests/runtime/dit/cuda_dit_test_util.h"

namespace tern::runtime {
namespace {

using dit_test::DtypeName;
using dit_test::ExpectClose;
using dit_test::ForwardEps;
using dit_test::MakeCudaOps;
using dit_test::RandomValues;

constexpr int64_t kPixels = 1024;  // the demo: 1 x 32 x 32

TEST(CudaDitModelTest, ForwardMatchesPyTorch) {
  const auto& golden = dit_test::Golden()["forward"];
  const std::vector<float> x = GaussianNoise(42, 2 * kPixels);
  const auto t = golden["t"].get<std::vector<float>>();
  const auto y = golden["y"].get<std::vector<int32_t>>();
  const auto want = golden["eps"].get<std::vector<double>>();
  // fp32: the CPU test's bounds (PyTorch's own float32 run: 3e-6 / 3.7e-7;
  // 10x margin). bf16 / fp16: 8 / 11 significant bits through 8 blocks.
  const std::pair<DType, std::pair<double, double>> cases[] = {
      {DType::kF32, {3e-5, 4e-6}}, {DType::kF16, {3e-2, 5e-3}}, {DType::kBF16, {2e-1, 3e-2}}};
  for (const auto& [dtype, bounds] : cases) {
    auto ops = MakeCudaOps(dtype, /*graphs=*/true);
    TERN_SKIP_WITHOUT_GPU(ops);
    auto model = DitModel::Load(dit_test::kDemoDitDir, ops.get());
    ASSERT_TRUE(model.ok()) << model.status();
    for (int pass = 0; pass < 3; ++pass) {  // eager, captured, replayed: the same eps
      const std::vector<float> eps = ForwardEps(**model, x, t, y);
      const auto [max_abs, relative] = dit_test::CompareEps(eps, want);
      std::printf("cuda %s pass %d: forward eps vs PyTorch float64: max abs error %.3g, relative (L2) error %.3g\n",
                  DtypeName(dtype), pass, max_abs, relative);
      EXPECT_LT(max_abs, bounds.first) << DtypeName(dtype) << " pass " << pass;
      EXPECT_LT(relative, bounds.second) << DtypeName(dtype) << " pass " << pass;
    }
    const auto stats = ops->graph_stats();
    EXPECT_EQ(stats.eager, 1);
    EXPECT_EQ(stats.captured, 1);
    EXPECT_EQ(stats.replayed, 1);
  }
}

// A sample's eps is bitwise the same alone, batched, in another place of the
// batch, and whether its pass ran eagerly, was captured or replayed.
TEST(CudaDitModelTest, SamplesAreBitwiseIndependentOfTheirBatch) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    auto ops = MakeCudaOps(dtype, /*graphs=*/true);
    TERN_SKIP_WITHOUT_GPU(ops);
    auto model = DitModel::Load(dit_test::kDemoDitDir, ops.get());
    ASSERT_TRUE(model.ok()) << model.status();
    const std::vector<float> noise = GaussianNoise(5, 4 * kPixels);
    const std::vector<float> t = {999.0f, 500.0f, 20.0f, 0.0f};
    const std::vector<int32_t> y = {3, 10, 7, 0};
    std::vector<std::vector<float>> alone(4);
    for (int repeat = 0; repeat < 3; ++repeat) {  // batch 1: eager, capture, replay
      for (int b = 0; b < 4; ++b) {
        const std::vector<float> x(noise.begin() + b * kPixels, noise.begin() + (b + 1) * kPixels);
        const std::vector<float> eps = ForwardEps(**model, x, {t[b]}, {y[b]});
        if (repeat == 0) {
          alone[b] = eps;
        } else {
          ASSERT_EQ(std::memcmp(eps.data(), alone[b].data(), kPixels * 4), 0)
              << DtypeName(dtype) << ": sample " << b << " alone differs between repeats " << repeat << " and 0";
        }
      }
    }
    for (int repeat = 0; repeat < 3; ++repeat) {  // batch 4, and 4 reversed (same graph)
      const std::vector<float> batched = ForwardEps(**model, noise, t, y);
      std::vector<float> reversed_x;
      for (int b = 3; b >= 0; --b) {
        reversed_x.insert(reversed_x.end(), noise.begin() + b * kPixels, noise.begin() + (b + 1) * kPixels);
      }
      const std::vector<float> reversed = ForwardEps(**model, reversed_x, {t[3], t[2], t[1], t[0]}, {y[3], y[2], y[1], y[0]});
      for (int b = 0; b < 4; ++b) {
        int differing = 0;
        float worst = 0.0f;
        for (int64_t i = 0; i < kPixels; ++i) {
          const float d = std::abs(batched[b * kPixels + i] - alone[b][i]);
          differing += batched[b * kPixels + i] != alone[b][i];
          worst = std::max(worst, d);
        }
        EXPECT_EQ(differing, 0) << DtypeName(dtype) << " repeat " << repeat << ": sample " << b << " batched differs from alone in "
                                << differing << " values, by up to " << worst;
        EXPECT_EQ(std::memcmp(reversed.data() + (3 - b) * kPixels, alone[b].data(), kPixels * 4), 0)
            << DtypeName(dtype) << " repeat " << repeat << ": sample " << b << " differs in the reversed batch";
      }
    }
    std::printf("cuda %s: 4 samples alone, batched and reversed, eager / captured / replayed: bitwise equal\n",
                DtypeName(dtype));
  }
}

TEST(CudaDitModelTest, GoldenSamplesOnCudaFp32) {
  auto ops = MakeCudaOps(DType::kF32, /*graphs=*/true);
  TERN_SKIP_WITHOUT_GPU(ops);
  auto model = DitModel::Load(dit_test::kDemoDitDir, ops.get());
  ASSERT_TRUE(model.ok()) << model.status();
  auto pipeline = DitPipeline::Create(model->get());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  const auto& cases = dit_test::Golden()["samples"];
  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& c = cases[k];
    auto images = (*pipeline)->Generate(dit_test::GoldenRequest(c));
    ASSERT_TRUE(images.ok()) << images.status();
    ASSERT_EQ(images->size(), 1u);
    const DitImage& image = (*images)[0];
    const auto want = c["pixels"].get<std::vector<int>>();
    ASSERT_EQ(image.pixels.size(), want.size());
    const auto [max_diff, differing, mean] = dit_test::ComparePixels(image, want);
    std::printf("cuda f32 case %zu %s %d steps g %.0f class %d: max pixel difference %d (%d of %zu differ), mean %.9f vs %.9f\n",
                k, c["sampler"].get<std::string>().c_str(), c["steps"].get<int>(), c["guidance"].get<double>(),
                c["class"].get<int>(), max_diff, differing, want.size(), mean, c["mean"].get<double>());
    // The CPU test's bounds (dit_pipeline_test.cc): PyTorch's own float32
    // run has one pixel off by 1 in the 2-step case.
    EXPECT_LE(max_diff, 1) << "case " << k;
    EXPECT_LE(differing, 8) << "case " << k;
    EXPECT_NEAR(mean, c["mean"].get<double>(), 1e-4) << "case " << k;
  }
}


// A DiT with DiT-XL/2's head_dim (72) and token count at 256 px (256), two
// blocks of 2 heads: the first shape where the staging area, the scratch
// slots and the graphs all have to grow and move between batch sizes.
DitConfig Head72Config() {
  DitConfig c;
  c.image_size = 32;
  c.in_channels = 4;
  c.patch_size = 2;
  c.hidden_size = 144;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_ratio = 4.0;
  c.num_classes = 10;
  c.null_class = 10;
  c.learn_sigma = true;
  return c;
}

// Random weights, uniform in +-1/sqrt(fan in) (biases +-0.05, the class
// table +-1),
// rounded to bf16 so every compute dtype sees the same network; no
// pos_embed (computed). Returns the directory.
std::string WriteHead72Model() {
  const std::string dir = ::testing::TempDir() + "/cuda_dit_head72";
  std::filesystem::create_directories(dir);
  std::vector<TensorSpec> specs;
  for (const DitTensorSpec& t : DitTensorLayout(Head72Config(), DitNaming::kTern)) {
    if (!t.optional) specs.push_back({t.name, DType::kF32, t.shape});
  }
  uint32_t seed = 1;
  const absl::Status s = WriteSafetensors(dir + "/model.safetensors", specs, [&](const TensorSpec& spec, uint8_t* out) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < spec.shape.size(); ++i) fan_in *= spec.shape[i];
    const bool table = spec.name.rfind("y_embedder", 0) == 0;  // the class table
    const float bound = spec.shape.size() == 1 ? 0.05f : table ? 1.0f : float(1.0 / std::sqrt(double(fan_in)));
    const std::vector<float> values = RandomValues(size_t(spec.nbytes() / 4), seed++, DType::kBF16, -bound, bound);
    std::memcpy(out, values.data(), values.size() * sizeof(float));
  });
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

// The benchmark's sequence at a smaller scale: batches 1, 8, 64 and 1 again
// on the same ops (each eager, captured, replayed with graphs; eager and
// timed with profile), so the host staging, the scratch slots and the
// graphs grow and move between passes. Every sample matches the CPU and is
// bitwise the same at every batch size.
TEST(CudaDitModelTest, Head72At256TokensThroughGrowingBatches) {
  if (MakeCudaOps(DType::kBF16) == nullptr) GTEST_SKIP() << "no CUDA device";
  const DitConfig config = Head72Config();
  ASSERT_EQ(config.head_dim(), 72);
  ASSERT_EQ(config.num_tokens(), 256);
  const std::string dir = WriteHead72Model();
  auto store = WeightStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  constexpr int64_t kMaxBatch = 64;
  const int64_t pixels = config.sample_elements();
  const std::vector<float> x = GaussianNoise(11, size_t(kMaxBatch * pixels));
  std::vector<float> t(kMaxBatch);
  std::vector<int32_t> y(kMaxBatch);
  for (int64_t b = 0; b < kMaxBatch; ++b) {
    t[b] = float((b * 37) % 1000);
    y[b] = b % 2 == 0 ? int32_t(b % config.num_classes) : config.null_class;  // as tern-dit-bench
  }
  // The CPU reference, once: CpuDitOps is batch invariant.
  CpuDitOps cpu;
  auto cpu_model = DitModel::Create(config, **store, &cpu);
  ASSERT_TRUE(cpu_model.ok()) << cpu_model.status();
  const std::vector<float> want = ForwardEps(**cpu_model, x, t, y);

  struct Mode {
    const char* name;
    bool graphs, profile;
  };
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    for (const Mode mode : {Mode{"graphs", true, false}, Mode{"profile", false, true}}) {
      CudaDitOpsOptions options;
      options.compute_dtype = dtype;
      options.cuda_graphs = mode.graphs;
      options.profile = mode.profile;
      auto ops = CudaDitOps::Create(options);
      ASSERT_TRUE(ops.ok()) << ops.status();
      auto model = DitModel::Create(config, **store, ops->get());
      ASSERT_TRUE(model.ok()) << model.status();
      std::vector<std::vector<float>> first(kMaxBatch);  // each sample's first eps
      int64_t passes = 0;
      for (const int64_t batch : {1, 8, 64, 1}) {
        for (int pass = 0; pass < 3; ++pass) {
          const std::string what = absl::StrCat(DtypeName(dtype), " ", mode.name, " batch ", batch, " pass ", pass);
          std::vector<float> eps(size_t(batch * pixels));
          const absl::Status status =
              (*model)->Forward({absl::MakeConstSpan(x).subspan(0, size_t(batch * pixels)),
                                 absl::MakeConstSpan(t).subspan(0, size_t(batch)),
                                 absl::MakeConstSpan(y).subspan(0, size_t(batch)), {}},
                                absl::MakeSpan(eps));
          ASSERT_TRUE(status.ok()) << what << ": " << status;
          ++passes;
          if (pass == 0) {
            const std::vector<float> reference(want.begin(), want.begin() + batch * pixels);
            ExpectClose(what, reference, eps, pixels, dtype == DType::kF32 ? 1e-4 : 6e-2);
          }
          for (int64_t b = 0; b < batch; ++b) {
            const std::vector<float> sample(eps.begin() + b * pixels, eps.begin() + (b + 1) * pixels);
            if (first[b].empty()) {
              first[b] = sample;
              continue;
            }
            int differing = 0;
            for (int64_t i = 0; i < pixels; ++i) differing += sample[i] != first[b][i];
            EXPECT_EQ(differing, 0) << what << ": sample " << b << " differs from its first pass in " << differing
                                    << " of " << pixels << " values";
          }
        }
        if (mode.profile) {
          const auto times = (*ops)->op_times();
          EXPECT_GT(times.linear_ms, 0.0) << mode.name << " batch " << batch;
          EXPECT_GT(times.attention_ms, 0.0) << mode.name << " batch " << batch;
        }
      }
      EXPECT_TRUE((*ops)->Health().ok()) << (*ops)->Health();
      const auto stats = (*ops)->graph_stats();
      std::printf("cuda %s %s: %lld passes at batches 1, 8, 64, 1: %lld eager, %lld captured, %lld replayed\n",
                  DtypeName(dtype), mode.name, (long long)passes, (long long)stats.eager, (long long)stats.captured,
                  (long long)stats.replayed);
      if (mode.graphs) {
        // Growing to 8 and 64 moves buffers, so batch 1 is captured again at the end.
        EXPECT_EQ(stats.captured, 4);
        EXPECT_EQ(stats.replayed, 4);
        EXPECT_EQ(stats.eager, 4);
      } else {
        EXPECT_EQ(stats.eager, passes);
      }
    }
  }
}

}  // namespace
}  // namespace tern::runtime
