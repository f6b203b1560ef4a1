// Windowed perplexity (runtime/model/windowed_perplexity.h) on the committed
// demo model. Built twice: on the CPU backend, and with TERN_TEST_CUDA_BACKEND
// on the CUDA backend in fp32 (label gpu; skipped without a device). Against a token-by-token decode through the KV
// cache (a different path through the model), and against PyTorch's figures
// for the same text, stored in tests/data/golden/tern-demo-llm-score.json
// (made by tools/eval/score_text.py; provenance in tests/data/README.md).
#include "runtime/model/windowed_perplexity.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/cpu_backend.h"
#if defined(TERN_TEST_CUDA_BACKEND)
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"
#endif
#include "tests/runtime/test_backend.h"
#include "runtime/model/llama_model.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tests/test_files.h"

namespace tern::runtime {
namespace {

constexpr int32_t kBlockSize = 16;
const std::string kModelDir = std::string(TERN_MODELS_DIR) + "/tern-demo-llm";

using testing::MakeTestBackend;

class WindowedPerplexityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = MakeTestBackend();
    if (backend_ == nullptr) GTEST_SKIP() << "no CUDA device";
    auto model = LlamaModel::Load(kModelDir, backend_.get(), {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto tokenizer = Tokenizer::FromModelDirectory(kModelDir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    auto cache = backend_->AllocateKvCache(model_->CacheSpec(CacheBlocks(2048, kBlockSize), kBlockSize));
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
  }

  // The fixture text: the longest prefix of whole lines of the WikiText-2 test
  // split within `max_bytes` bytes (as score_text.py --max-bytes cuts it).
  static std::string TextPrefix(int64_t max_bytes) {
    std::string text = test_data::ReadTestFile(std::string(TERN_TEST_DATA_DIR) + "/text/wikitext-2-test.txt");
    text.resize(text.rfind('\n', size_t(max_bytes) - 1) + 1);
    return text;
  }

  // -ln p(ids[i] | bos, ids[..i]) summed over a window computed one token per
  // forward pass (decode steps through the cache), for comparison.
  double DecodeNll(const std::vector<int32_t>& window_ids) {
    const int64_t vocab = model_->config().vocab_size;
    double nll = 0;
    std::vector<float> logits;
    for (size_t p = 0; p + 1 < window_ids.size(); ++p) {
      ForwardBatch batch;
      batch.token_ids = {window_ids[p]};
      batch.positions = {int32_t(p)};
      // Blocks in reverse order, unlike ScoreWindows' 0, 1, 2, ...
      const int32_t blocks = int32_t(p) / kBlockSize + 1;
      const int32_t total = cache_->spec().num_blocks;
      batch.slots = {(total - 1 - int32_t(p) / kBlockSize) * kBlockSize + int32_t(p) % kBlockSize};
      batch.query_start = {0, 1};
      batch.context_lens = {int32_t(p) + 1};
      batch.block_indptr = {0, blocks};
      for (int32_t b = 0; b < blocks; ++b) batch.block_ids.push_back(total - 1 - b);
      batch.logits_rows = {0};
      EXPECT_TRUE(model_->Forward(batch, *cache_, &logits).ok());
      double max = logits[0];
      for (int64_t v = 0; v < vocab; ++v) max = std::max(max, double(logits[v]));
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - max);
      nll += std::log(sum) + max - double(logits[window_ids[p + 1]]);
    }
    return nll;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<KvCache> cache_;
};

TEST_F(WindowedPerplexityTest, ChunkedWindowsMatchTokenByTokenDecode) {
  const std::vector<int32_t> all = tokenizer_->Encode(TextPrefix(2000), /*add_special_tokens=*/false);
  ASSERT_GT(all.size(), 130u);
  const std::vector<int32_t> ids(all.begin(), all.begin() + 130);
  WindowedPerplexityOptions options;
  options.window = 48;  // windows of 47 tokens: 47 + 47 + 36
  options.chunk_tokens = 20;
  options.bos_id = tokenizer_->bos_id();
  auto got = ScoreWindows(*model_, *cache_, ids, options);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->tokens, 130);
  EXPECT_EQ(got->windows, 3);
  double want = 0;
  for (size_t begin = 0; begin < ids.size(); begin += 47) {
    std::vector<int32_t> window = {options.bos_id};
    for (size_t i = begin; i < std::min(ids.size(), begin + 47); ++i) window.push_back(ids[i]);
    want += DecodeNll(window);
  }
  EXPECT_NEAR(got->nll_sum, want, 1e-4 * want);
  // The chunk size does not change the result.
  options.chunk_tokens = 47;
  auto whole = ScoreWindows(*model_, *cache_, ids, options);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_NEAR(whole->nll_sum, got->nll_sum, 1e-5 * want);
}

TEST_F(WindowedPerplexityTest, MatchesPyTorchOnWikiText2Prefix) {
  const auto doc = nlohmann::json::parse(
      test_data::ReadTestFile(std::string(TERN_TEST_DATA_DIR) + "/golden/tern-demo-llm-score.json"));
  const std::string text = TextPrefix(doc["max_bytes"].get<int64_t>());
  ASSERT_EQ(int64_t(text.size()), doc["bytes"].get<int64_t>());
  const std::vector<int32_t> ids = tokenizer_->Encode(text, /*add_special_tokens=*/false);
  ASSERT_FALSE(doc["scores"].empty());
  for (const auto& score : doc["scores"]) {
    WindowedPerplexityOptions options;
    options.window = score["window"].get<int32_t>();
    options.bos_id = tokenizer_->bos_id();
    auto got = ScoreWindows(*model_, *cache_, ids, options);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->tokens, score["tokens"].get<int64_t>()) << "window " << options.window;
    EXPECT_EQ(got->windows, score["windows"].get<int64_t>()) << "window " << options.window;
    const double want = score["token_ppl"].get<double>();
    // Both float32; the difference is summation order (measured 2e-7 and 3e-7).
    EXPECT_NEAR(got->TokenPerplexity(), want, 1e-4 * want) << "window " << options.window;
  }
}

TEST_F(WindowedPerplexityTest, RejectsBadInput) {
  WindowedPerplexityOptions options;
  options.bos_id = tokenizer_->bos_id();
  const std::vector<int32_t> ids = {5, 6, 7};
  EXPECT_EQ(ScoreWindows(*model_, *cache_, {}, options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ScoreWindows(*model_, *cache_, std::vector<int32_t>{5, 8192}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.window = 1;
  EXPECT_EQ(ScoreWindows(*model_, *cache_, ids, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.window = 4096;  // beyond the model's 2048 positions
  EXPECT_EQ(ScoreWindows(*model_, *cache_, ids, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.window = 2048;
  options.chunk_tokens = 0;
  EXPECT_EQ(ScoreWindows(*model_, *cache_, ids, options).status().code(), absl::StatusCode::kInvalidArgument);
  auto small = backend_->AllocateKvCache(model_->CacheSpec(4, kBlockSize));
  ASSERT_TRUE(small.ok());
  options.chunk_tokens = 512;
  EXPECT_EQ(ScoreWindows(*model_, **small, ids, options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tern::runtime
