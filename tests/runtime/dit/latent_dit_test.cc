// Latent DiTs: diffusers' DiTPipeline layout and VAE configs (one named
// error per malformed field), the image ops of CpuDitOps against direct
// loops, and a tiny DiT-XL/2-shaped latent model from tern-mkmodel in both
// layouts, decoded by its VAE: batch invariance of the VAE and of whole
// generations (alone == batched, bitwise), and named errors for bad files.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/diffusion_runner.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/dit/vae_decoder.h"
#include "tests/runtime/dit/fp32_view.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;
using dit_test::View;
using nlohmann::json;

// --- configs ---

json ModelIndex() {
  return {{"_class_name", "DiTPipeline"},
          {"transformer", {"diffusers", "Transformer2DModel"}},
          {"vae", {"diffusers", "AutoencoderKL"}},
          {"scheduler", {"diffusers", "DDIMScheduler"}},
          {"id2label", {{"0", "tench, Tinca tinca"}, {"1", "goldfish"}}}};
}
// facebook/DiT-XL-2-256's transformer config (Transformer2DModel), 2 classes.
json Transformer() {
  return {{"_class_name", "Transformer2DModel"}, {"activation_fn", "gelu-approximate"},
          {"attention_bias", true},             {"attention_head_dim", 72},
          {"cross_attention_dim", nullptr},      {"dropout", 0.0},
          {"in_channels", 4},                    {"norm_elementwise_affine", false},
          {"norm_num_groups", 32},               {"norm_type", "ada_norm_zero"},
          {"num_attention_heads", 16},           {"num_embeds_ada_norm", 2},
          {"num_layers", 28},                    {"num_vector_embeds", nullptr},
          {"only_cross_attention", false},       {"out_channels", 8},
          {"patch_size", 2},                     {"sample_size", 32},
          {"upcast_attention", false},           {"use_linear_projection", false}};
}
json Scheduler() {
  return {{"_class_name", "DDIMScheduler"}, {"beta_end", 0.02},        {"beta_schedule", "linear"},
          {"beta_start", 0.0001},           {"clip_sample", false},    {"num_train_timesteps", 1000},
          {"prediction_type", "epsilon"},   {"set_alpha_to_one", true}, {"steps_offset", 0},
          {"trained_betas", nullptr}};
}
// stabilityai/sd-vae-ft-ema's.
json Vae() {
  return {{"_class_name", "AutoencoderKL"},
          {"act_fn", "silu"},
          {"block_out_channels", {128, 256, 512, 512}},
          {"down_block_types", {"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}},
          {"in_channels", 3},
          {"latent_channels", 4},
          {"layers_per_block", 2},
          {"norm_num_groups", 32},
          {"out_channels", 3},
          {"sample_size", 256},
          {"up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}}};
}

absl::StatusOr<DitConfig> Parse(const json& index, const json& transformer, const json& scheduler, const json& vae) {
  return ParseDiffusersDitConfig(index.dump(), transformer.dump(), scheduler.dump(), vae.dump());
}

TEST(LatentDitConfigTest, ParsesDitXl2InTheDiffusersLayout) {
  auto c = Parse(ModelIndex(), Transformer(), Scheduler(), Vae());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->layout, DitLayout::kDiffusers);
  EXPECT_EQ(c->hidden_size, 1152);
  EXPECT_EQ(c->head_dim(), 72);
  EXPECT_EQ(c->depth, 28);
  EXPECT_EQ(c->num_tokens(), 256);
  EXPECT_TRUE(c->learn_sigma);
  EXPECT_EQ(c->null_class, 2);
  EXPECT_EQ(c->timestep_freq_shift, 1);
  EXPECT_DOUBLE_EQ(c->layernorm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->mlp_layernorm_eps, 1e-5);  // norm3 takes norm_eps
  EXPECT_EQ(c->class_names, (std::vector<std::string>{"tench, Tinca tinca", "goldfish"}));
  ASSERT_TRUE(c->has_vae);
  EXPECT_EQ(c->vae.upscale(), 8);
  EXPECT_DOUBLE_EQ(c->vae.scaling_factor, 0.18215);
  EXPECT_EQ(c->output_size(), 256);
  EXPECT_EQ(c->output_channels(), 3);
  EXPECT_FALSE(c->pixel_space);

  json t = Transformer();
  t["sample_size"] = 64;
  t["_class_name"] = "DiTTransformer2DModel";
  auto c512 = Parse(ModelIndex(), t, Scheduler(), Vae());
  ASSERT_TRUE(c512.ok()) << c512.status();
  EXPECT_EQ(c512->num_tokens(), 1024);
  EXPECT_EQ(c512->output_size(), 512);
}

struct BadFile {
  const char* file;     // index, transformer, scheduler, vae
  const char* field;
  const char* value;    // JSON, or nullptr to remove the field
  const char* message;  // expected in the error
};

class LatentDitConfigErrorTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(LatentDitConfigErrorTest, NamesTheFileAndField) {
  const BadFile& bad = GetParam();
  json docs[4] = {ModelIndex(), Transformer(), Scheduler(), Vae()};
  const std::string file = bad.file;
  json& doc = docs[file == "index" ? 0 : file == "transformer" ? 1 : file == "scheduler" ? 2 : 3];
  if (bad.value == nullptr) {
    doc.erase(bad.field);
  } else {
    doc[bad.field] = json::parse(bad.value);
  }
  auto c = Parse(docs[0], docs[1], docs[2], docs[3]);
  ASSERT_FALSE(c.ok()) << bad.field;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(bad.message), std::string::npos) << c.status();
}

INSTANTIATE_TEST_SUITE_P(
    Fields, LatentDitConfigErrorTest,
    ::testing::Values(
        BadFile{"index", "_class_name", "\"StableDiffusionPipeline\"", "model_index.json: _class_name: \"StableDiffusionPipeline\" is not supported"},
        BadFile{"index", "vae", "[\"diffusers\", \"VQModel\"]", "model_index.json: vae: \"VQModel\" is not supported"},
        BadFile{"index", "id2label", "{\"0\": \"tench\"}", "model_index.json: id2label: has 1 labels; the transformer has 2"},
        BadFile{"index", "id2label", "{\"0\": \"a\", \"7\": \"b\"}", "model_index.json: id2label[\"7\"]: is not a distinct class id"},
        BadFile{"transformer", "norm_type", "\"ada_norm_single\"", "transformer/config.json: norm_type: \"ada_norm_single\" is not supported"},
        BadFile{"transformer", "norm_type", nullptr, "transformer/config.json: norm_type: is missing"},
        BadFile{"transformer", "out_channels", "5", "transformer/config.json: out_channels: 5 is neither in_channels"},
        BadFile{"transformer", "patch_size", "null", "transformer/config.json: patch_size: is missing"},
        BadFile{"transformer", "patch_size", "3", "transformer/config.json: patch_size: 3 does not divide image_size 32"},
        BadFile{"transformer", "activation_fn", "\"geglu\"", "transformer/config.json: activation_fn: \"geglu\" is not supported"},
        BadFile{"transformer", "cross_attention_dim", "1024", "transformer/config.json: cross_attention_dim: is set"},
        BadFile{"transformer", "norm_elementwise_affine", "true", "transformer/config.json: norm_elementwise_affine: true"},
        BadFile{"transformer", "num_embeds_ada_norm", "null", "transformer/config.json: num_embeds_ada_norm: is null"},
        BadFile{"transformer", "interpolation_scale", "2", "transformer/config.json: interpolation_scale: 2 is not supported"},
        BadFile{"scheduler", "beta_schedule", "\"scaled_linear\"", "scheduler/scheduler_config.json: beta_schedule: \"scaled_linear\" is not supported"},
        BadFile{"scheduler", "prediction_type", "\"v_prediction\"", "scheduler/scheduler_config.json: prediction_type: \"v_prediction\""},
        BadFile{"scheduler", "clip_sample", "true", "scheduler/scheduler_config.json: clip_sample: true"},
        BadFile{"scheduler", "trained_betas", "[0.1]", "scheduler/scheduler_config.json: trained_betas: is set"},
        BadFile{"scheduler", "beta_end", "2", "scheduler/scheduler_config.json: beta_end: 2 is not in"},
        BadFile{"vae", "_class_name", "\"VQModel\"", "vae/config.json: _class_name: \"VQModel\" is not supported"},
        BadFile{"vae", "up_block_types", "[\"UpDecoderBlock2D\"]", "vae/config.json: up_block_types: is not a list of 4"},
        BadFile{"vae", "block_out_channels", "[128, 256, 500, 512]", "vae/config.json: block_out_channels[2]: 500 is not a multiple of norm_num_groups 32"},
        BadFile{"vae", "latent_channels", "16", "vae/config.json: latent_channels: 16 is not the model's in_channels (4)"},
        BadFile{"vae", "act_fn", "\"gelu\"", "vae/config.json: act_fn: \"gelu\" is not supported"},
        BadFile{"vae", "out_channels", "2", "vae/config.json: out_channels: 2 is not 1, 3 or 4"},
        BadFile{"vae", "scaling_factor", "0", "vae/config.json: scaling_factor: 0 is not > 0"},
        BadFile{"vae", "shift_factor", "0.1159", "vae/config.json: shift_factor: 0.1159 is not supported"}),
    [](const ::testing::TestParamInfo<BadFile>& info) {
      return std::string(info.param.file) + "_" + info.param.field + "_" + std::to_string(info.index);
    });

// --- image ops against direct loops ---

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(CpuImageOpsTest, ConvolutionMatchesDirectLoopsAcrossChunks) {
  // 2 samples of 70 x 66 = 4620 pixels: a sample spans two GEMM chunks.
  const int32_t height = 70, width = 66, in = 5, out = 3, batch = 2;
  for (int32_t k : {1, 3}) {
    CpuDitOps ops;
    const std::vector<float> w = Random(size_t(out) * in * k * k, 1 + k), b = Random(out, 2);
    const TensorView bias = View("b", {out}, b);
    auto biased = ops.PrepareConv2d(View("w", {out, in, k, k}, w), &bias);
    ASSERT_TRUE(biased.ok()) << biased.status();
    const int64_t pixels = int64_t(height) * width;
    const std::vector<float> x = Random(size_t(batch * pixels * in), 3);
    ASSERT_TRUE(ops.BeginStep({{}, {}, DitPass::kVaeDecode, batch, {height, width}}).ok());
    Tensor tx = ops.Scratch(0, batch * pixels, in);
    ops.CopyFromHost(x.data(), tx);
    Tensor ty = ops.Scratch(1, batch * pixels, out);
    ops.Conv2d(tx, {height, width}, **biased, ty);
    ASSERT_TRUE(ops.FinishStep().ok());
    std::vector<float> y(size_t(batch * pixels * out));
    ops.ReadToHost(ty, y.data());
    double max_error = 0.0;
    for (int32_t s = 0; s < batch; ++s) {
      for (int32_t yy = 0; yy < height; ++yy) {
        for (int32_t xx = 0; xx < width; ++xx) {
          for (int32_t o = 0; o < out; ++o) {
            double want = b[o];
            for (int32_t c = 0; c < in; ++c) {
              for (int32_t ky = 0; ky < k; ++ky) {
                for (int32_t kx = 0; kx < k; ++kx) {
                  const int32_t sy = yy + ky - k / 2, sx = xx + kx - k / 2;
                  if (sy < 0 || sy >= height || sx < 0 || sx >= width) continue;
                  want += double(w[((o * in + c) * k + ky) * k + kx]) * x[((s * pixels) + sy * width + sx) * in + c];
                }
              }
            }
            const double got = y[((s * pixels) + yy * width + xx) * out + o];
            max_error = std::max(max_error, std::abs(got - want));
          }
        }
      }
    }
    EXPECT_LT(max_error, 2e-5) << "kernel " << k;
  }
  CpuDitOps ops;
  const std::vector<float> even(2 * 2 * 2 * 2, 0.0f);
  auto bad = ops.PrepareConv2d(View("decoder.conv_in.weight", {2, 2, 2, 2}, even), nullptr);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("decoder.conv_in.weight"), std::string::npos) << bad.status();
}

TEST(CpuImageOpsTest, GroupNormAndUpsampleMatchDirectLoops) {
  const int32_t height = 6, width = 5, channels = 8, groups = 4, batch = 3;
  const int64_t pixels = int64_t(height) * width;
  CpuDitOps ops;
  std::vector<float> x = Random(size_t(batch * pixels * channels), 4, 3.0f);
  for (float& v : x) v += 5.0f;  // an offset the two-pass variance must not lose
  std::vector<float> affine = Random(size_t(2 * channels), 5);
  auto table = ops.UploadTable(affine, 2, channels);
  ASSERT_TRUE(table.ok());
  ASSERT_TRUE(ops.BeginStep({{}, {}, DitPass::kVaeDecode, batch, {height, width}}).ok());
  Tensor tx = ops.Scratch(0, batch * pixels, channels);
  ops.CopyFromHost(x.data(), tx);
  Tensor normed = ops.Scratch(1, batch * pixels, channels);
  ops.GroupNorm(tx, groups, 1e-6f, **table, /*silu=*/true, normed);
  Tensor up = ops.Scratch(2, 4 * batch * pixels, channels);
  ops.Upsample2x(normed, {height, width}, up);
  ASSERT_TRUE(ops.FinishStep().ok());
  std::vector<float> got(size_t(batch * pixels * channels)), got_up(4 * got.size());
  ops.ReadToHost(normed, got.data());
  ops.ReadToHost(up, got_up.data());
  const int32_t per = channels / groups;
  double max_error = 0.0;
  for (int32_t s = 0; s < batch; ++s) {
    for (int32_t g = 0; g < groups; ++g) {
      double sum = 0.0, sq = 0.0;
      for (int64_t p = 0; p < pixels; ++p) {
        for (int32_t c = g * per; c < (g + 1) * per; ++c) sum += x[(s * pixels + p) * channels + c];
      }
      const double mean = sum / double(pixels * per);
      for (int64_t p = 0; p < pixels; ++p) {
        for (int32_t c = g * per; c < (g + 1) * per; ++c) {
          const double d = x[(s * pixels + p) * channels + c] - mean;
          sq += d * d;
        }
      }
      const double rstd = 1.0 / std::sqrt(sq / double(pixels * per) + 1e-6);
      for (int64_t p = 0; p < pixels; ++p) {
        for (int32_t c = g * per; c < (g + 1) * per; ++c) {
          const size_t i = size_t((s * pixels + p) * channels + c);
          double v = (x[i] - mean) * rstd * affine[c] + affine[channels + c];
          v = v / (1.0 + std::exp(-v));
          max_error = std::max(max_error, std::abs(double(got[i]) - v));
        }
      }
    }
  }
  EXPECT_LT(max_error, 1e-5);
  for (int32_t s = 0; s < batch; ++s) {
    for (int32_t y = 0; y < 2 * height; ++y) {
      for (int32_t xx = 0; xx < 2 * width; ++xx) {
        for (int32_t c = 0; c < channels; ++c) {
          ASSERT_EQ(got_up[((s * 4 * pixels) + y * 2 * width + xx) * channels + c],
                    got[((s * pixels) + (y / 2) * width + xx / 2) * channels + c]);
        }
      }
    }
  }
}

// --- a tiny latent model from tern-mkmodel ---

std::string MakeTinyModel(const std::string& layout, const std::string& extra = "") {
  const std::string dir = (fs::temp_directory_path() /
                           ("tern-latent-dit-" + layout + (extra.empty() ? "" : "-distinct") + "-" +
                            std::to_string(getpid())))
                              .string();
  if (!fs::exists(dir + "/vae/config.json")) {
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch dit --preset tiny --layout " + layout + " " + extra +
                            " --seed 11 --dtype float32 --out " + dir + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  return dir;
}

TEST(LatentDitModelTest, VaeDecodesAloneAndBatchedTheSame) {
  const std::string dir = MakeTinyModel("diffusers");
  auto config = LoadDitConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->has_vae);
  CpuDitOps ops;
  auto vae = VaeDecoder::Load(dir + "/vae", config->vae, config->image_size, &ops);
  ASSERT_TRUE(vae.ok()) << vae.status();
  EXPECT_EQ((*vae)->image_size(), 64);
  const int64_t n = (*vae)->latent_elements(), m = (*vae)->image_elements();
  const std::vector<float> latents = GaussianNoise(3, 3 * n);
  std::vector<float> batched(3 * m);
  ASSERT_TRUE((*vae)->Decode(latents, absl::MakeSpan(batched)).ok());
  double mean = 0.0, max_abs = 0.0;
  for (float v : batched) {
    ASSERT_TRUE(std::isfinite(v));
    mean += v;
    max_abs = std::max(max_abs, double(std::abs(v)));
  }
  std::printf("tiny VAE: 3 images of 3x64x64, mean %.4f, max |x| %.3f\n", mean / batched.size(), max_abs);
  EXPECT_GT(max_abs, 1e-3);  // a decoder that outputs zeros would pass the rest
  for (int b = 2; b >= 0; --b) {
    std::vector<float> alone(m);
    ASSERT_TRUE((*vae)->Decode(absl::MakeConstSpan(latents.data() + b * n, n), absl::MakeSpan(alone)).ok());
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), batched.begin() + b * m)) << "image " << b;
  }
  std::vector<float> wrong(m + 1);
  EXPECT_EQ((*vae)->Decode(absl::MakeConstSpan(latents.data(), n), absl::MakeSpan(wrong)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LatentDitModelTest, GenerationsAreTheSameAloneAndBatchedInBothLayouts) {
  for (const std::string layout : {"diffusers", "original"}) {
    const std::string dir = MakeTinyModel(layout);
    auto runner = DitRunner::Create(dir, std::make_unique<CpuDitOps>(), {.max_decode_batch = 2, .model = {}});
    ASSERT_TRUE(runner.ok()) << layout << ": " << runner.status();
    const DitConfig& c = (*runner)->config();
    EXPECT_EQ(c.layout, layout == "diffusers" ? DitLayout::kDiffusers : DitLayout::kSingle);
    EXPECT_EQ(c.output_size(), 64);
    ASSERT_NE((*runner)->vae(), nullptr);
    auto pipeline = DitPipeline::Create((*runner)->model(), (*runner)->vae());
    ASSERT_TRUE(pipeline.ok());
    DitGenerateRequest guided{.class_label = 3, .num_images = 2, .sampler = DiffusionSamplerKind::kDdim,
                              .num_steps = 3, .guidance_scale = 2.5, .seed = 40, .schedule = {}};
    DitGenerateRequest plain{.class_label = 7, .num_images = 1, .sampler = DiffusionSamplerKind::kDpmSolverPp2m,
                             .num_steps = 2, .guidance_scale = 1.0, .seed = 99, .schedule = {}};
    auto batched = (*pipeline)->GenerateBatch({guided, plain});
    ASSERT_TRUE(batched.ok()) << batched.status();
    ASSERT_EQ((*batched)[0].size(), 2u);
    const DitImage& first = (*batched)[0][0];
    EXPECT_EQ(first.channels, 3);
    EXPECT_EQ(first.height, 64);
    EXPECT_EQ(first.pixels.size(), size_t(3 * 64 * 64));
    EXPECT_EQ(first.sample.size(), size_t(4 * 8 * 8));
    int distinct = 0;
    for (uint8_t p : first.pixels) distinct += p != first.pixels[0];
    EXPECT_GT(distinct, 100) << "a flat image";
    DitGenerateRequest second = guided;
    second.num_images = 1;
    second.seed = 41;
    auto alone = (*pipeline)->Generate(second);
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ((*alone)[0].sample, (*batched)[0][1].sample) << layout;
    EXPECT_EQ((*alone)[0].pixels, (*batched)[0][1].pixels) << layout;
    auto plain_alone = (*pipeline)->Generate(plain);
    ASSERT_TRUE(plain_alone.ok());
    EXPECT_EQ((*plain_alone)[0].pixels, (*batched)[1][0].pixels) << layout;
    // The engine's path: the runner decodes finished samples.
    auto sample = DenoisingSample::Create(c, &(*runner)->schedule(),
                                          {.class_label = 7, .sampler = DiffusionSamplerKind::kDpmSolverPp2m,
                                           .num_steps = 2, .guidance_scale = 1.0, .seed = 99, .schedule = {}});
    ASSERT_TRUE(sample.ok());
    DenoisingSample* s = sample->get();
    while (!s->done()) ASSERT_TRUE((*runner)->Step({&s, 1}).ok());
    const DenoisingSample* done = s;
    auto images = (*runner)->MakeImages({&done, 1});
    ASSERT_TRUE(images.ok()) << images.status();
    EXPECT_EQ((*images)[0].pixels, (*batched)[1][0].pixels) << layout;
  }
}

// The start-up warm-up runs the largest forward and decode first, then every
// row count and decode batch twice, and leaves nothing behind: a generation
// after it is bitwise a fresh runner's.
TEST(LatentDitModelTest, WarmupRunsEveryPassShapeAndChangesNoImage) {
  const std::string dir = MakeTinyModel("diffusers");
  const DitRunnerOptions options{.max_decode_batch = 2, .model = {}};
  auto fresh = DitRunner::Create(dir, std::make_unique<CpuDitOps>(), options);
  auto warmed = DitRunner::Create(dir, std::make_unique<CpuDitOps>(), options);
  ASSERT_TRUE(fresh.ok() && warmed.ok());
  EXPECT_EQ((*warmed)->Warmup(0).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*warmed)->Warmup(3).ok());
  EXPECT_EQ((*warmed)->warmup_counts().forwards, 1 + 2 * 3);
  EXPECT_EQ((*warmed)->warmup_counts().decodes, 1 + 2 * 2);
  EXPECT_EQ((*fresh)->warmup_counts().forwards, 0);
  std::vector<uint8_t> pixels[2];
  DitRunner* runners[2] = {fresh->get(), warmed->get()};
  for (int i = 0; i < 2; ++i) {
    auto sample = DenoisingSample::Create((*runners[i]).config(), &runners[i]->schedule(),
                                          {.class_label = 5, .sampler = DiffusionSamplerKind::kDdim,
                                           .num_steps = 3, .guidance_scale = 2.0, .seed = 12, .schedule = {}});
    ASSERT_TRUE(sample.ok());
    DenoisingSample* s = sample->get();
    while (!s->done()) ASSERT_TRUE(runners[i]->Step({&s, 1}).ok());
    const DenoisingSample* done = s;
    auto images = runners[i]->MakeImages({&done, 1});
    ASSERT_TRUE(images.ok()) << images.status();
    pixels[i] = (*images)[0].pixels;
  }
  EXPECT_EQ(pixels[0], pixels[1]);
}

// Reserving workspaces runs only the largest forward and decode, after
// which the ops hold the activation memory of every smaller batch: passes of
// fewer rows and generation allocate nothing more (DitOps::workspace_bytes
// stays put), and a batch of more rows needs more.
TEST(LatentDitModelTest, ReservedWorkspacesHoldEverySmallerBatch) {
  const std::string dir = MakeTinyModel("diffusers");
  const DitRunnerOptions options{.max_decode_batch = 2, .model = {}};
  auto small = DitRunner::Create(dir, std::make_unique<CpuDitOps>(), options);
  auto large = DitRunner::Create(dir, std::make_unique<CpuDitOps>(), options);
  ASSERT_TRUE(small.ok() && large.ok());
  EXPECT_EQ((*large)->ops()->workspace_bytes(), 0u);
  ASSERT_TRUE((*small)->ReserveWorkspaces(2).ok());
  ASSERT_TRUE((*large)->ReserveWorkspaces(6).ok());
  EXPECT_EQ((*large)->warmup_counts().forwards, 1);
  EXPECT_EQ((*large)->warmup_counts().decodes, 1);
  const size_t reserved = (*large)->ops()->workspace_bytes();
  EXPECT_GT(reserved, (*small)->ops()->workspace_bytes());
  // Samples of up to 6 rows (3 guided), stepped to the end and decoded: nothing grows.
  std::vector<std::unique_ptr<DenoisingSample>> samples;
  std::vector<DenoisingSample*> batch;
  for (int i = 0; i < 3; ++i) {
    auto sample = DenoisingSample::Create((*large)->config(), &(*large)->schedule(),
                                          {.class_label = 5, .sampler = DiffusionSamplerKind::kDdim,
                                           .num_steps = 2, .guidance_scale = 2.0, .seed = uint64_t(i), .schedule = {}});
    ASSERT_TRUE(sample.ok());
    batch.push_back(sample->get());
    samples.push_back(*std::move(sample));
  }
  while (!batch[0]->done()) ASSERT_TRUE((*large)->Step(batch).ok());
  const DenoisingSample* done[2] = {batch[0], batch[1]};
  ASSERT_TRUE((*large)->MakeImages(done).ok());
  EXPECT_EQ((*large)->ops()->workspace_bytes(), reserved);
}

TEST(LatentDitModelTest, PerBlockEmbeddersLoadAndMatter) {
  // diffusers' blocks each carry timestep and class embedders; converted
  // checkpoints repeat one set. Distinct ones change every block's
  // conditioning, and so eps.
  const std::string shared_dir = MakeTinyModel("diffusers");
  const std::string distinct_dir = MakeTinyModel("diffusers", "--distinct_block_embedders");
  CpuDitOps ops_a, ops_b;
  auto shared = DitModel::Load(shared_dir, &ops_a);
  auto distinct = DitModel::Load(distinct_dir, &ops_b);
  ASSERT_TRUE(shared.ok()) << shared.status();
  ASSERT_TRUE(distinct.ok()) << distinct.status();
  const std::vector<float> x = GaussianNoise(5, 2 * 4 * 8 * 8);
  std::vector<float> a(x.size()), b(x.size());
  ASSERT_TRUE((*shared)->Forward({x, std::vector<float>{10.0f, 900.0f}, std::vector<int32_t>{1, 10}, {}},
                                 absl::MakeSpan(a))
                  .ok());
  ASSERT_TRUE((*distinct)->Forward({x, std::vector<float>{10.0f, 900.0f}, std::vector<int32_t>{1, 10}, {}},
                                   absl::MakeSpan(b))
                  .ok());
  double diff = 0.0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, double(std::abs(a[i] - b[i])));
  EXPECT_GT(diff, 1e-3);
}

// Rewrites <dir>/<file> without `drop` and with `reshape` (if named) read as
// [rows, numel / rows] instead of its shape.
void RewriteTensors(const std::string& dir, const std::string& base, const std::string& drop,
                    const std::string& reshape = "") {
  auto store = WeightStore::Open(dir, base);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<TensorSpec> specs;
  for (const std::string& name : (*store)->Names()) {
    if (name == drop) continue;
    const TensorView t = *(*store)->Get(name);
    std::vector<int64_t> shape = t.shape;
    if (name == reshape) shape = {shape[0] / 2, t.numel() / (shape[0] / 2)};
    specs.push_back({name, t.dtype, shape});
  }
  const std::string path = dir + "/rewritten.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, specs, [&](const TensorSpec& spec, uint8_t* out) {
                const TensorView t = *(*store)->Get(spec.name);
                std::memcpy(out, t.data, t.nbytes);
              }).ok());
  store->reset();
  fs::rename(path, dir + "/" + base + ".safetensors");
}

TEST(LatentDitModelTest, BrokenFilesAreNamedErrors) {
  const std::string dir = MakeTinyModel("diffusers");
  const std::string broken = (fs::temp_directory_path() / ("tern-latent-broken-" + std::to_string(getpid()))).string();
  struct Case {
    const char* subdir;
    const char* drop;
    const char* reshape;
    const char* message;
  };
  for (const Case& c : {Case{"vae", "decoder.up_blocks.1.resnets.2.conv2.weight", "",
                             "decoder.up_blocks.1.resnets.2.conv2.weight"},
                        Case{"vae", "", "decoder.mid_block.attentions.0.to_k.weight",
                             "decoder.mid_block.attentions.0.to_k.weight\" has shape [32, 128]"},
                        Case{"transformer", "transformer_blocks.1.attn1.to_v.bias", "",
                             "transformer_blocks.1.attn1.to_v.bias"},
                        Case{"transformer", "", "transformer_blocks.0.ff.net.2.weight",
                             "transformer_blocks.0.ff.net.2.weight\" has shape [32, 512], expected [64, 256]"}}) {
    fs::remove_all(broken);
    fs::copy(dir, broken, fs::copy_options::recursive);
    RewriteTensors(broken + "/" + c.subdir, "diffusion_pytorch_model", c.drop, c.reshape);
    auto runner = DitRunner::Create(broken, std::make_unique<CpuDitOps>());
    ASSERT_FALSE(runner.ok()) << c.message;
    EXPECT_NE(runner.status().message().find(c.message), std::string::npos) << runner.status();
  }
  // A scheduler config that is not JSON; a pipeline without its VAE.
  std::ofstream(broken + "/scheduler/scheduler_config.json") << "{";
  auto config = LoadDitConfig(broken);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("scheduler/scheduler_config.json: not valid JSON"), std::string::npos)
      << config.status();
  fs::remove_all(broken + "/vae");
  fs::copy_file(dir + "/scheduler/scheduler_config.json", broken + "/scheduler/scheduler_config.json",
                fs::copy_options::overwrite_existing);
  config = LoadDitConfig(broken);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound) << config.status();
  EXPECT_NE(config.status().message().find("vae/config.json"), std::string::npos) << config.status();
  fs::remove_all(broken);
}

}  // namespace
}  // namespace tern::runtime
