// Sampling end to end on the demo DiT: every sampler case of golden.json
// (PyTorch, float64) reproduced to the pixel, and the batching guarantees of
// the denoising step: samples at different steps, with different samplers,
// step counts and guidance, batched, give what each gives alone; image i of
// a request is the one-image request with seed + i.
#include "runtime/dit/dit_pipeline.h"

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/denoising.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

class DitPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = DitModel::Load(dit_test::kDemoDitDir, &ops_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto pipeline = DitPipeline::Create(model_.get());
    ASSERT_TRUE(pipeline.ok()) << pipeline.status();
    pipeline_ = std::move(*pipeline);
  }

  std::vector<DitImage> Generate(const DitGenerateRequest& request) {
    auto images = pipeline_->Generate(request);
    EXPECT_TRUE(images.ok()) << images.status();
    return images.ok() ? *images : std::vector<DitImage>{};
  }

  CpuDitOps ops_;
  std::unique_ptr<DitModel> model_;
  std::unique_ptr<DitPipeline> pipeline_;
};


class DitGoldenSampleTest : public DitPipelineTest, public ::testing::WithParamInterface<int> {};

TEST_P(DitGoldenSampleTest, ReproducesPyTorch) {
  const auto& c = dit_test::Golden()["samples"][GetParam()];
  ASSERT_TRUE(c["clip_x0"].get<bool>());
  const std::vector<DitImage> images = Generate(dit_test::GoldenRequest(c));
  ASSERT_EQ(images.size(), 1u);
  const DitImage& image = images[0];
  const auto want = c["pixels"].get<std::vector<int>>();
  ASSERT_EQ(image.pixels.size(), want.size());
  const auto [max_diff, differing, mean] = dit_test::ComparePixels(image, want);
  std::printf("%s %d steps g %.0f class %d: max pixel difference %d (%d of %zu pixels differ), mean %.9f vs %.9f\n",
              c["sampler"].get<std::string>().c_str(), c["steps"].get<int>(), c["guidance"].get<double>(),
              c["class"].get<int>(), max_diff, differing, want.size(), mean, c["mean"].get<double>());
  // PyTorch's own float32 run differs from this float64 golden in one pixel,
  // by 1, over all 11 cases (models/tern-demo-dit/README.md), in the 2-step
  // case: its first x0 divides the eps error by alpha_999 = 0.0064. Here:
  // identical but for 2 pixels of that case. A pixel off by 1 is a value
  // within rounding of a .5 boundary; allow a few (GEMM kernels differ by
  // CPU), never more than 1 off.
  EXPECT_LE(max_diff, 1);
  EXPECT_LE(differing, 8);
  EXPECT_NEAR(mean, c["mean"].get<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(GoldenCases, DitGoldenSampleTest, ::testing::Range(0, 11),
                         [](const ::testing::TestParamInfo<int>& info) {
                           const auto& c = dit_test::Golden()["samples"][info.param];
                           return "Case" + std::to_string(info.param) + "_" + c["sampler"].get<std::string>() +
                                  std::to_string(c["steps"].get<int>()) + "_g" +
                                  std::to_string(int(c["guidance"].get<double>()));
                         });

TEST_F(DitPipelineTest, SamplesAtDifferentStepsBatchLikeAlone) {
  // Three samples: A (DPM-Solver++, guided) alone from the start; B (DDIM,
  // unguided, the null class) joins after A's second step; C (Euler, guided)
  // after A's third. Each steps beside the others at a different timestep,
  // and B finishes before A, which finishes before C.
  const DitConfig& config = model_->config();
  const DenoisingParams a{4, DiffusionSamplerKind::kDpmSolverPp2m, 8, 3.0, 101, {}};
  const DenoisingParams b{10, DiffusionSamplerKind::kDdim, 4, 1.0, 202, {}};
  const DenoisingParams c{8, DiffusionSamplerKind::kEuler, 6, 2.0, 303, {}};
  const auto make = [&](const DenoisingParams& p) {
    auto sample = DenoisingSample::Create(config, &pipeline_->schedule(), p);
    EXPECT_TRUE(sample.ok()) << sample.status();
    return std::move(*sample);
  };
  const auto alone = [&](const DenoisingParams& p) {
    auto sample = make(p);
    DenoisingStepper stepper(model_.get());
    while (!sample->done()) {
      DenoisingSample* one = sample.get();
      EXPECT_TRUE(stepper.Step({&one, 1}).ok());
    }
    return std::vector<float>(sample->x().begin(), sample->x().end());
  };

  auto sa = make(a), sb = make(b), sc = make(c);
  DenoisingStepper stepper(model_.get());
  int32_t engine_step = 0;
  bool mixed_timesteps = false;
  while (!sa->done() || !sb->done() || !sc->done()) {
    std::vector<DenoisingSample*> batch;
    if (!sa->done()) batch.push_back(sa.get());
    if (engine_step >= 2 && !sb->done()) batch.push_back(sb.get());
    if (engine_step >= 3 && !sc->done()) batch.push_back(sc.get());
    if (batch.size() > 1 && batch[0]->timestep() != batch[1]->timestep()) mixed_timesteps = true;
    ASSERT_TRUE(stepper.Step(batch).ok());
    ++engine_step;
  }
  EXPECT_TRUE(mixed_timesteps);
  double max_diff = 0.0;
  for (const auto& [sample, params] :
       {std::pair{sa.get(), a}, std::pair{sb.get(), b}, std::pair{sc.get(), c}}) {
    const std::vector<float> want = alone(params);
    for (size_t i = 0; i < want.size(); ++i) max_diff = std::max(max_diff, double(std::abs(want[i] - sample->x()[i])));
  }
  std::printf("batched at different steps vs alone: max abs difference %.3g\n", max_diff);
  EXPECT_LE(max_diff, 1e-6);
}

TEST_F(DitPipelineTest, ImageIOfARequestIsSeedPlusI) {
  DitGenerateRequest request;
  request.class_label = 7;
  request.num_images = 3;
  request.sampler = DiffusionSamplerKind::kDdim;
  request.num_steps = 3;
  request.guidance_scale = 2.0;
  request.seed = 40;
  const std::vector<DitImage> images = Generate(request);
  ASSERT_EQ(images.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    DitGenerateRequest one = request;
    one.num_images = 1;
    one.seed = 40 + i;
    const std::vector<DitImage> single = Generate(one);
    ASSERT_EQ(single.size(), 1u);
    EXPECT_EQ(images[i].seed, uint64_t(40 + i));
    EXPECT_EQ(images[i].pixels, single[0].pixels) << "image " << i;
    EXPECT_EQ(images[i].channels, 1);
    EXPECT_EQ(images[i].height, 32);
    EXPECT_EQ(images[i].width, 32);
  }
  EXPECT_NE(images[0].pixels, images[1].pixels);
}

TEST_F(DitPipelineTest, RejectsBadRequests) {
  DitGenerateRequest request;
  request.class_label = 11;
  EXPECT_EQ(pipeline_->Generate(request).status().message(),
            "class_label: 11 is not in [0, 10), or 10 (unconditional)");
  request.class_label = 1;
  request.num_steps = 0;
  EXPECT_EQ(pipeline_->Generate(request).status().message(), "steps: 0 is not in [1, 1000]");
  request.num_steps = 10;
  request.guidance_scale = INFINITY;
  EXPECT_EQ(pipeline_->Generate(request).status().message(), "guidance_scale: is not finite");
  request.guidance_scale = 1.0;
  request.num_images = 0;
  EXPECT_EQ(pipeline_->Generate(request).status().message(), "num_images: 0 is not >= 1");
}

TEST(DitPixelsTest, GoldenConvention) {
  DitConfig config;
  config.pixel_space = true;
  const std::vector<float> x = {-1.5f, -1.0f, -0.99f, 0.0f, 0.996f, 1.0f, 2.0f};
  // clip(floor((x + 1) * 127.5 + 0.5), 0, 255)
  EXPECT_EQ(SampleToPixels(x, config), (std::vector<uint8_t>{0, 0, 1, 128, 254, 255, 255}));
  config.pixel_space = false;
  EXPECT_TRUE(SampleToPixels(x, config).empty());
}

}  // namespace
}  // namespace tern::runtime
