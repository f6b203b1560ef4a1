// The CUDA backend's prefill attention path inside the model: a fp16 Llama
// with head_dim 64 (tern-mkmodel's 100m shape, 2 layers) run once token by
// token (every step one query row per sequence, the per-row kernel) and once
// in steps that mix a long prefill, a one-row sequence and a chunk over prior
// context (the tiled prefill kernel). Both runs must give the same logits at
// every position up to fp16 rounding. Label gpu; skipped without a device.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"
#include "runtime/model/llama_model.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kBlockSize = 16;
constexpr int32_t kNumBlocks = 64;

struct Sequence {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blocks;
  int32_t cached = 0;
};

// Appends tokens [cached, cached + n) of `seq` to `batch`, asking for the
// logits of every row.
void Add(Sequence& seq, int32_t n, std::vector<int32_t>& free_blocks, ForwardBatch* batch) {
  const int32_t end = seq.cached + n;
  while (int32_t(seq.blocks.size()) * kBlockSize < end) {
    seq.blocks.push_back(free_blocks.back());
    free_blocks.pop_back();
  }
  if (batch->query_start.empty()) batch->query_start.push_back(0);
  if (batch->block_indptr.empty()) batch->block_indptr.push_back(0);
  for (int32_t p = seq.cached; p < end; ++p) {
    batch->logits_rows.push_back(batch->num_tokens());
    batch->token_ids.push_back(seq.tokens[p]);
    batch->positions.push_back(p);
    batch->slots.push_back(seq.blocks[p / kBlockSize] * kBlockSize + p % kBlockSize);
  }
  batch->query_start.push_back(batch->num_tokens());
  batch->context_lens.push_back(end);
  batch->block_ids.insert(batch->block_ids.end(), seq.blocks.begin(), seq.blocks.end());
  batch->block_indptr.push_back(int32_t(batch->block_ids.size()));
  seq.cached = end;
}

class CudaPrefillAttentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
    dir_ = (fs::temp_directory_path() / ("tern-prefill-" + std::to_string(getpid()))).string();
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch llama --preset 100m --layers 2 --vocab-size 512 --seed 3 " +
                            "--dtype float16 --out " + dir_ + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    CudaBackendOptions options;
    options.compute_dtype = DType::kF16;
    auto backend = CudaBackend::Create(options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto model = LlamaModel::Load(dir_, backend_.get(), {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    ASSERT_EQ(model_->config().head_dim, 64);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Runs `steps` (per step, rows for each sequence; 0 leaves it out) over
  // fresh sequences of `tokens` and returns every position's logits per sequence.
  std::vector<std::vector<float>> Run(const std::vector<std::vector<int32_t>>& tokens,
                                      const std::vector<std::vector<int32_t>>& steps) {
    auto cache = backend_->AllocateKvCache(model_->CacheSpec(kNumBlocks, kBlockSize));
    EXPECT_TRUE(cache.ok());
    std::vector<int32_t> free_blocks(kNumBlocks);
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(5));
    std::vector<Sequence> seqs;
    for (const auto& t : tokens) seqs.push_back(Sequence{t, {}, 0});
    const size_t vocab = size_t(model_->config().vocab_size);
    std::vector<std::vector<float>> out(tokens.size());
    for (const auto& step : steps) {
      ForwardBatch batch;
      std::vector<size_t> order;
      for (size_t s = 0; s < seqs.size(); ++s) {
        if (step[s] == 0) continue;
        Add(seqs[s], step[s], free_blocks, &batch);
        order.push_back(s);
      }
      EXPECT_TRUE(batch.Validate((*cache)->spec(), int64_t(vocab)).ok());
      std::vector<float> logits;
      const absl::Status status = model_->Forward(batch, **cache, &logits);
      EXPECT_TRUE(status.ok()) << status;
      if (!status.ok()) return out;
      size_t row = 0;
      for (size_t i = 0; i < order.size(); ++i) {
        const size_t n = size_t(step[order[i]]);
        out[order[i]].insert(out[order[i]].end(), logits.begin() + row * vocab, logits.begin() + (row + n) * vocab);
        row += n;
      }
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<CudaBackend> backend_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_F(CudaPrefillAttentionTest, MixedPrefillStepsMatchTokenByToken) {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int32_t> token(0, 511);
  std::vector<std::vector<int32_t>> tokens = {std::vector<int32_t>(150), std::vector<int32_t>(41),
                                              std::vector<int32_t>(3)};
  for (auto& t : tokens) {
    for (auto& id : t) id = token(rng);
  }
  std::vector<std::vector<int32_t>> one_by_one;
  for (int32_t i = 0; i < 150; ++i) one_by_one.push_back({1, i < 41 ? 1 : 0, i < 3 ? 1 : 0});
  // Step 1: a 100-row prefill beside one-row sequences; step 2: a 50-row
  // chunk over the cached 100, a 40-row chunk over 1, and a one-row step.
  const std::vector<std::vector<int32_t>> mixed = {{100, 1, 1}, {50, 40, 1}, {0, 0, 1}};
  const auto want = Run(tokens, one_by_one);
  const auto got = Run(tokens, mixed);
  const size_t vocab = size_t(model_->config().vocab_size);
  for (size_t s = 0; s < tokens.size(); ++s) {
    ASSERT_EQ(got[s].size(), tokens[s].size() * vocab);
    ASSERT_EQ(want[s].size(), tokens[s].size() * vocab);
    for (size_t p = 0; p < tokens[s].size(); ++p) {
      double diff = 0, scale = 0;
      for (size_t v = 0; v < vocab; ++v) {
        const double a = got[s][p * vocab + v], b = want[s][p * vocab + v];
        diff = std::isfinite(a) ? std::max(diff, std::abs(a - b)) : INFINITY;
        scale = std::max(scale, std::abs(b));
      }
      EXPECT_LT(diff / scale, 1e-2) << "sequence " << s << " position " << p;
    }
  }
}

}  // namespace
}  // namespace tern::runtime
