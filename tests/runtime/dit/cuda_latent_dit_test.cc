// A tiny latent DiT and its VAE decoder on CudaDitOps against the CPU, the
// decode bitwise the same alone and batched through graph capture and replay,
// and two latent sizes sharing one ops. Part of cuda_dit_ops_test.
// Label gpu: every test skips without a GPU.
#include "runtime/dit/vae_decoder.h"

#include "runtime/dit/cuda_dit_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/diffusion_runner.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/model/dtype.h"
#include "tests/runtime/dit/cuda_dit_test_util.h"

namespace tern::runtime {
namespace {

using dit_test::DtypeName;
using dit_test::ExpectClose;
using dit_test::MakeCudaOps;
using dit_test::OpTolerance;

// A tiny latent DiT with its VAE (tern-mkmodel --arch dit --preset tiny):
// the DiT step and the VAE decode on CUDA against the CPU reference, and the
// decode bitwise the same alone and batched through graph capture and replay.
std::string MakeTinyLatentModel() {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("tern-cuda-latent-" + std::to_string(getpid()))).string();
  if (!std::filesystem::exists(dir + "/vae/config.json")) {
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch dit --preset tiny --layout diffusers --seed 11 "
                                  "--dtype float32 --out " + dir + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  return dir;
}

TEST(CudaLatentDitTest, StepAndDecodeMatchTheCpuAndDecodesAreBatchInvariant) {
  if (MakeCudaOps(DType::kF32) == nullptr) GTEST_SKIP() << "no CUDA device";
  const std::string dir = MakeTinyLatentModel();
  auto config = LoadDitConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  CpuDitOps cpu;
  auto cpu_model = DitModel::Load(dir, &cpu);
  auto cpu_vae = VaeDecoder::Load(dir + "/vae", config->vae, config->image_size, &cpu);
  ASSERT_TRUE(cpu_model.ok() && cpu_vae.ok());
  const int64_t n = config->sample_elements(), m = (*cpu_vae)->image_elements();
  const std::vector<float> x = GaussianNoise(3, 3 * n);
  const std::vector<float> t = {999.0f, 500.0f, 3.0f};
  const std::vector<int32_t> y = {1, 10, 4};
  std::vector<float> want_eps(3 * n), want_images(3 * m);
  ASSERT_TRUE((*cpu_model)->Forward({x, t, y, {}}, absl::MakeSpan(want_eps)).ok());
  ASSERT_TRUE((*cpu_vae)->Decode(x, absl::MakeSpan(want_images)).ok());
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    auto ops = MakeCudaOps(dtype, /*graphs=*/true);
    auto model = DitModel::Load(dir, ops.get());
    auto vae = VaeDecoder::Load(dir + "/vae", config->vae, config->image_size, ops.get());
    ASSERT_TRUE(model.ok() && vae.ok());
    std::vector<float> eps(3 * n), images(3 * m);
    ASSERT_TRUE((*model)->Forward({x, t, y, {}}, absl::MakeSpan(eps)).ok());
    ExpectClose(absl::StrCat("tiny latent DiT eps ", DtypeName(dtype)), want_eps, eps, n, 5 * OpTolerance(dtype));
    // Batches 3, 1, 1, 1 (eager, then captured, then replayed at batch 1), 3.
    ASSERT_TRUE((*vae)->Decode(x, absl::MakeSpan(images)).ok());
    ExpectClose(absl::StrCat("tiny VAE decode ", DtypeName(dtype)), want_images, images, m, 5 * OpTolerance(dtype));
    for (int round = 0; round < 3; ++round) {
      for (int b = 0; b < 3; ++b) {
        std::vector<float> alone(m);
        ASSERT_TRUE((*vae)->Decode(absl::MakeConstSpan(x.data() + b * n, n), absl::MakeSpan(alone)).ok());
        ASSERT_TRUE(std::equal(alone.begin(), alone.end(), images.begin() + b * m))
            << DtypeName(dtype) << " image " << b << " round " << round << " differs alone and batched";
      }
    }
    std::vector<float> again(3 * m);
    ASSERT_TRUE((*vae)->Decode(x, absl::MakeSpan(again)).ok());
    EXPECT_EQ(again, images) << DtypeName(dtype);
    EXPECT_GT(ops->graph_stats().replayed, 0) << DtypeName(dtype);
  }
}


// One VAE decodes latents of two sizes on one ops, at the same batch sizes
// (tern-vae-bench's sweep, which failed at 64x64 latents x 16 with "host
// staging grew in a replayed pass"): a graph is per (kind, batch, image
// shape), so a decode at a new latent size never replays another size's
// graph. The sequence first captures 8x8 x 16, then grows the other buffers
// with 16x16 x 1, captures 8x8 x 16 again and decodes 16x16 x 16, whose
// latents (64 KB) outgrow the staging area the 8x8 graph recorded; then two
// rounds over all four keys, the last replaying every one. Every decode
// equals its key's first bitwise, batched images equal their decode alone,
// and each size matches the CPU.
TEST(CudaLatentDitTest, DecodersOfTwoLatentSizesShareOneOpsAtEqualBatches) {
  if (MakeCudaOps(DType::kF32) == nullptr) GTEST_SKIP() << "no CUDA device";
  const std::string dir = MakeTinyLatentModel();
  auto config = LoadDitConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto store = WeightStore::Open(dir + "/vae", "diffusion_pytorch_model");
  ASSERT_TRUE(store.ok()) << store.status();
  constexpr int64_t kBigBatch = 16;
  const std::vector<int32_t> sizes = {config->image_size, 2 * config->image_size};
  auto ops = MakeCudaOps(DType::kBF16, /*graphs=*/true);
  ASSERT_NE(ops, nullptr);
  CpuDitOps cpu;
  std::map<int32_t, std::unique_ptr<VaeDecoder>> decoders;
  std::map<int32_t, std::vector<float>> latents, want;  // want: the CPU's decode of sample 0
  for (const int32_t size : sizes) {
    auto vae = VaeDecoder::Create(config->vae, size, **store, ops.get());
    ASSERT_TRUE(vae.ok()) << vae.status();
    latents[size] = GaussianNoise(uint64_t(size), size_t(kBigBatch * (*vae)->latent_elements()));
    auto cpu_vae = VaeDecoder::Create(config->vae, size, **store, &cpu);
    ASSERT_TRUE(cpu_vae.ok()) << cpu_vae.status();
    want[size].resize((*vae)->image_elements());
    ASSERT_TRUE((*cpu_vae)
                    ->Decode(absl::MakeConstSpan(latents[size]).subspan(0, (*vae)->latent_elements()),
                             absl::MakeSpan(want[size]))
                    .ok());
    decoders[size] = std::move(*vae);
  }

  std::map<std::pair<int32_t, int64_t>, std::vector<float>> first;  // by (latent size, batch)
  const auto decode3 = [&](int32_t size, int64_t batch) {
    VaeDecoder& vae = *decoders[size];
    const int64_t n = vae.latent_elements(), m = vae.image_elements();
    for (int pass = 0; pass < 3; ++pass) {
      const std::string what = absl::StrCat(size, "x", size, " latents x ", batch, ", pass ", pass);
      std::vector<float> images(size_t(batch * m));
      const absl::Status status =
          vae.Decode(absl::MakeConstSpan(latents[size]).subspan(0, size_t(batch * n)), absl::MakeSpan(images));
      ASSERT_TRUE(status.ok()) << what << ": " << status;
      std::vector<float>& reference = first[{size, batch}];
      if (reference.empty()) {
        reference = images;
      } else {
        ASSERT_TRUE(images == reference) << what << " differs from the first decode of its size and batch";
      }
      const std::vector<float>& alone = first[{size, 1}];
      if (batch > 1 && !alone.empty()) {
        ASSERT_TRUE(std::equal(alone.begin(), alone.end(), images.begin())) << what << ": image 0 differs alone";
      }
    }
  };
  const int32_t small = sizes[0], big = sizes[1];
  decode3(small, kBigBatch);
  decode3(big, 1);
  decode3(small, kBigBatch);
  decode3(big, kBigBatch);
  for (int round = 0; round < 2; ++round) {
    const auto before = ops->graph_stats();
    for (const int32_t size : sizes) {
      for (const int64_t batch : {int64_t(1), kBigBatch}) decode3(size, batch);
    }
    const auto after = ops->graph_stats();
    std::printf("round %d: %lld eager, %lld captured, %lld replayed\n", round,
                (long long)(after.eager - before.eager), (long long)(after.captured - before.captured),
                (long long)(after.replayed - before.replayed));
    if (round == 1) {  // nothing grows any more: every key replays its graph
      EXPECT_EQ(after.eager, before.eager);
      EXPECT_EQ(after.captured, before.captured);
      EXPECT_EQ(after.replayed - before.replayed, 12);
    }
  }
  for (const int32_t size : sizes) {
    ExpectClose(absl::StrCat("tiny VAE decode ", size, "x", size, " latents bf16"), want[size], first[{size, 1}],
                decoders[size]->image_elements(), 5 * OpTolerance(DType::kBF16));
  }
  EXPECT_TRUE(ops->Health().ok()) << ops->Health();
}

// DitRunner::Warmup on ops with graphs: after it, every row count up to the
// warm-up's and every decode batch up to max_decode_batch replays a graph,
// and none records one or runs eagerly.
TEST(CudaLatentDitTest, WarmupRecordsEveryPassShapeBeforeTheFirstRequest) {
  auto ops = MakeCudaOps(DType::kBF16, /*graphs=*/true);
  TERN_SKIP_WITHOUT_GPU(ops);
  const std::string dir = MakeTinyLatentModel();
  CudaDitOps* cuda = ops.get();
  constexpr int32_t kRows = 4, kDecodeBatch = 3;
  auto runner = DitRunner::Create(dir, std::move(ops), {.max_decode_batch = kDecodeBatch, .model = {}});
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_TRUE((*runner)->ops()->records_graphs());
  ASSERT_TRUE((*runner)->Warmup(kRows).ok());
  const CudaDitOps::GraphStats warm = cuda->graph_stats();
  EXPECT_EQ(warm.captured, kRows + kDecodeBatch);
  const DitConfig& c = (*runner)->config();
  const int64_t n = c.sample_elements();
  const std::vector<float> x = GaussianNoise(5, size_t(kRows * n));
  const std::vector<float> t = {999.0f, 10.0f, 500.0f, 250.0f};
  const std::vector<int32_t> y = {1, c.null_class, 4, 2};
  std::vector<float> eps(size_t(kRows * n));
  for (int32_t rows = kRows; rows >= 1; --rows) {
    const DitBatch batch{absl::MakeConstSpan(x.data(), size_t(rows * n)), absl::MakeConstSpan(t.data(), size_t(rows)),
                         absl::MakeConstSpan(y.data(), size_t(rows)), {}};
    ASSERT_TRUE((*runner)->model()->Forward(batch, absl::MakeSpan(eps.data(), size_t(rows * n))).ok()) << rows;
  }
  auto* vae = (*runner)->vae();
  ASSERT_NE(vae, nullptr);
  std::vector<float> images(size_t(kDecodeBatch * vae->image_elements()));
  for (int32_t b = 1; b <= kDecodeBatch; ++b) {
    ASSERT_TRUE(vae->Decode(absl::MakeConstSpan(x.data(), size_t(b * vae->latent_elements())),
                            absl::MakeSpan(images.data(), size_t(b * vae->image_elements())))
                    .ok())
        << b;
  }
  const CudaDitOps::GraphStats after = cuda->graph_stats();
  EXPECT_EQ(after.captured, warm.captured) << "a pass shape the warm-up missed was recorded";
  EXPECT_EQ(after.eager, warm.eager) << "a pass ran eagerly after the warm-up";
  EXPECT_EQ(after.replayed, warm.replayed + kRows + kDecodeBatch);
}

}  // namespace
}  // namespace tern::runtime
