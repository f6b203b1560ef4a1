// GPU sampling (kernels/sampling through runtime/cuda/cuda_sampling) against
// the host Sampler on fresh random rows: vocab 32000 and 128256, fp32, fp16
// and bf16 logits, every filter and penalty, mixed parameters in one batch,
// logprobs, and invalid rows.
//
// Greedy rows must match exactly. Sampled rows may differ only where a
// cumulative mass lands within rounding of a top-p or draw threshold, or a
// weight within an ulp of min_p (sampling.h): at least 99.5% of the rows of
// every configuration must match, and mismatches are printed.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/sampling/sampling.h"
#include "runtime/cuda/cuda_sampling.h"
#include "runtime/sampling/sampler.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using runtime::CudaSampling;
using runtime::SampledToken;
using runtime::Sampler;
using runtime::SampleRequest;
using runtime::SamplingParams;
using runtime::SequenceSamplingState;
using testing::DeviceArray;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

runtime::DType ToDType(ScalarType type) {
  return type == ScalarType::kF32 ? runtime::DType::kF32
         : type == ScalarType::kF16 ? runtime::DType::kF16
                                    : runtime::DType::kBF16;
}

// A batch of rows with their sampling parameters and sequence states.
struct Batch {
  int64_t vocab = 0;
  std::vector<float> logits;  // [rows, vocab], rounded to the launch type
  std::vector<SamplingParams> params;
  std::vector<SequenceSamplingState> states;
  int rows() const { return int(params.size()); }
};

// Rows of N(0, 2.5) logits (a few at -inf; `coarse` rounds them to halves so
// ties crowd every threshold), each sequence with a random prompt and output.
Batch MakeBatch(int rows, int64_t vocab, uint32_t seed, bool coarse,
                const std::function<SamplingParams(int, std::mt19937&)>& params) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.5f);
  std::uniform_int_distribution<int32_t> token(0, int32_t(vocab) - 1);
  Batch b;
  b.vocab = vocab;
  b.logits.resize(size_t(rows) * vocab);
  for (float& x : b.logits) {
    x = normal(rng);
    if (coarse) x = std::round(x * 2.0f) / 2.0f;
  }
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < 20; ++i) b.logits[size_t(r) * vocab + token(rng)] = kNegInf;
    b.params.push_back(params(r, rng));
    std::vector<int32_t> prompt(1 + rng() % 300);
    for (int32_t& id : prompt) id = token(rng);
    b.states.emplace_back(rng(), uint32_t(r), prompt);
    const int outputs = int(rng() % 40);
    for (int i = 0; i < outputs; ++i) b.states.back().AppendOutputToken(i % 3 == 0 ? prompt[i % prompt.size()] : token(rng));
  }
  return b;
}

// Runs the batch through CudaSampling: Prepare's status; on OK, Collect's
// per-row results in *out.
absl::Status SampleOnGpu(ScalarType type, Batch& b, std::vector<absl::StatusOr<SampledToken>>* out) {
  DeviceArray logits(type, b.logits.size());
  logits.Upload(b.logits);
  std::vector<SampleRequest> requests;
  for (int r = 0; r < b.rows(); ++r) requests.push_back({&b.params[r], &b.states[r]});
  const runtime::Tensor tensor{logits.data(), ToDType(type), b.rows(), b.vocab, b.vocab};
  CudaSampling sampling;
  if (absl::Status s = sampling.Prepare(tensor, requests); !s.ok()) return s;
  cudaStream_t stream;
  EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  EXPECT_EQ(sampling.Enqueue(type, tensor, stream), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  cudaStreamDestroy(stream);
  sampling.Collect(requests, out);
  return absl::OkStatus();
}

struct Tally {
  int rows = 0, mismatches = 0;
};

// Compares every row with the host Sampler; logprobs within 1e-3.
void CompareWithHost(const std::string& name, ScalarType type, Batch& b, bool exact, Tally* tally) {
  std::vector<absl::StatusOr<SampledToken>> results;
  const absl::Status status = SampleOnGpu(type, b, &results);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(int(results.size()), b.rows());
  std::vector<SampledToken> gpu;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    gpu.push_back(*result);
  }
  Sampler sampler;
  for (int r = 0; r < b.rows(); ++r) {
    auto host = sampler.Sample(absl::MakeConstSpan(&b.logits[size_t(r) * b.vocab], b.vocab), b.params[r], b.states[r]);
    ASSERT_TRUE(host.ok()) << host.status();
    ++tally->rows;
    const std::string where = name + " " + testing::Name(type) + " vocab " + std::to_string(b.vocab) + " row " +
                              std::to_string(r);
    if (gpu[r].token_id != host->token_id) {
      ++tally->mismatches;
      std::printf("mismatch: %s: gpu %d, host %d (t=%g k=%d p=%g min_p=%g)\n", where.c_str(), gpu[r].token_id,
                  host->token_id, b.params[r].temperature, b.params[r].top_k, b.params[r].top_p, b.params[r].min_p);
      EXPECT_FALSE(exact) << where;
      continue;
    }
    ASSERT_EQ(gpu[r].logprob.has_value(), host->logprob.has_value()) << where;
    if (host->logprob.has_value()) {
      EXPECT_NEAR(*gpu[r].logprob, *host->logprob, 1e-3) << where;
    }
    ASSERT_EQ(gpu[r].top_logprobs.size(), host->top_logprobs.size()) << where;
    for (size_t i = 0; i < host->top_logprobs.size(); ++i) {
      EXPECT_EQ(gpu[r].top_logprobs[i].token_id, host->top_logprobs[i].token_id) << where << " top " << i;
      EXPECT_NEAR(gpu[r].top_logprobs[i].logprob, host->top_logprobs[i].logprob, 1e-3) << where << " top " << i;
    }
  }
}

struct Config {
  std::string name;
  std::function<SamplingParams(int, std::mt19937&)> params;
  bool exact = false;
  bool coarse = false;
};

SamplingParams With(std::function<void(SamplingParams&)> f) {
  SamplingParams p;
  f(p);
  return p;
}

std::vector<Config> Configs(int64_t vocab) {
  const auto fixed = [](SamplingParams p) { return [p](int, std::mt19937&) { return p; }; };
  std::vector<SamplingParams> menu = {
      With([](SamplingParams& p) { p.temperature = 0.0f; }),
      With([](SamplingParams& p) { p.temperature = 0.8f; }),
      With([](SamplingParams& p) { p.top_k = 1; }),
      With([](SamplingParams& p) { p.top_k = 50; p.temperature = 0.7f; }),
      With([](SamplingParams& p) { p.top_p = 0.1f; }),
      With([](SamplingParams& p) { p.top_p = 0.9f; p.temperature = 0.8f; }),
      With([](SamplingParams& p) { p.top_k = 50; p.top_p = 0.9f; }),
      With([](SamplingParams& p) { p.min_p = 0.05f; p.temperature = 1.3f; }),
      With([](SamplingParams& p) {
        p.repetition_penalty = 1.3f; p.frequency_penalty = 0.5f; p.presence_penalty = 0.3f; p.top_p = 0.9f;
        p.logprobs = 5;
      }),
  };
  std::vector<Config> c;
  c.push_back({"greedy", fixed(menu[0]), true});
  c.push_back({"greedy+penalties+logprobs",
               fixed(With([](SamplingParams& p) {
                 p.temperature = 0.0f; p.repetition_penalty = 1.5f; p.presence_penalty = -0.5f;
                 p.frequency_penalty = 1.0f; p.logprobs = 20;
               })),
               true});
  c.push_back({"greedy ties", fixed(menu[0]), true, true});
  c.push_back({"temperature=1", fixed(SamplingParams{})});
  c.push_back({"temperature=0.5", fixed(With([](SamplingParams& p) { p.temperature = 0.5f; }))});
  c.push_back({"top_k=1", fixed(menu[2]), true});
  c.push_back({"top_k=50", fixed(menu[3])});
  c.push_back({"top_k=vocab", fixed(With([vocab](SamplingParams& p) { p.top_k = int32_t(vocab); }))});
  c.push_back({"top_k=50 ties", fixed(menu[3]), false, true});
  c.push_back({"top_p=0.1", fixed(menu[4])});
  c.push_back({"top_p=0.9,t=0.8", fixed(menu[5])});
  c.push_back({"top_p=1", fixed(With([](SamplingParams& p) { p.top_p = 1.0f; p.logprobs = 3; }))});
  c.push_back({"top_p=0.9 ties", fixed(menu[5]), false, true});
  c.push_back({"top_k=50,top_p=0.9", fixed(menu[6])});
  c.push_back({"min_p=0.05", fixed(menu[7])});
  c.push_back({"min_p=0.2,top_k=1000,top_p=0.95", fixed(With([](SamplingParams& p) {
                 p.min_p = 0.2f; p.top_k = 1000; p.top_p = 0.95f;
               }))});
  c.push_back({"penalties", fixed(menu[8])});
  c.push_back({"mixed", [menu](int, std::mt19937& rng) { return menu[rng() % menu.size()]; }});
  return c;
}

class SamplingCudaTest : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(SamplingCudaTest, MatchesHostSampler) {
  const int64_t vocab = GetParam();
  const int rows = vocab > 50000 ? 48 : 128;
  uint32_t seed = uint32_t(vocab);
  for (const Config& config : Configs(vocab)) {
    Tally tally;
    for (ScalarType type : {ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16}) {
      Batch b = MakeBatch(rows, vocab, ++seed, config.coarse, config.params);
      CompareWithHost(config.name, type, b, config.exact, &tally);
    }
    const double agree = 1.0 - double(tally.mismatches) / tally.rows;
    std::printf("%-34s vocab %6lld: %d/%d rows agree\n", config.name.c_str(), static_cast<long long>(vocab),
                tally.rows - tally.mismatches, tally.rows);
    EXPECT_GE(agree, 0.995) << config.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocab, SamplingCudaTest, ::testing::Values(int64_t{32000}, int64_t{128256}),
                         [](const auto& info) { return "vocab" + std::to_string(info.param); });

TEST(SamplingCudaErrorsTest, InvalidRowsAreRejectedPerRow) {
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t vocab = 1000;
  for (ScalarType type : {ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16}) {
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    Batch b = MakeBatch(6, vocab, 5, false, [&](int r, std::mt19937&) {
      SamplingParams p = r % 2 == 0 ? greedy : SamplingParams{};
      if (r == 5) p.repetition_penalty = 1.2f;
      return p;
    });
    b.logits[1 * vocab + 7] = std::nanf("");
    b.logits[2 * vocab + 100] = std::numeric_limits<float>::infinity();
    b.logits[2 * vocab + 300] = std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < vocab; ++i) b.logits[3 * vocab + i] = kNegInf;

    // Kernel level: each bad row gets its status, the others their tokens.
    DeviceArray logits(type, b.logits.size());
    logits.Upload(b.logits);
    std::vector<SamplingRowParams> rows(6);
    for (int r = 0; r < 6; ++r) {
      rows[r].temperature = b.params[r].temperature;
      rows[r].uniform = b.states[r].NextUniform();
    }
    rows[5].repetition_penalty = 1.2f;
    rows[5].workspace_row = 0;
    const std::vector<int32_t> indptr = {0, 0, 0, 0, 0, 0, 2};
    const std::vector<SamplingPenalty> penalties = {{3, 0, 1}, {int32_t(vocab), 1, 0}};
    testing::DeviceVector<SamplingRowParams> d_rows(rows);
    testing::DeviceVector<int32_t> d_indptr(indptr);
    testing::DeviceVector<SamplingPenalty> d_penalties(penalties);
    float* workspace = nullptr;
    SampledRow* d_out = nullptr;
    ASSERT_EQ(cudaMalloc(&workspace, vocab * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_out, 6 * sizeof(SampledRow)), cudaSuccess);
    SampleRowsParams p;
    p.num_rows = 6;
    p.vocab = vocab;
    p.row_stride = vocab;
    p.logits = logits.data();
    p.rows = d_rows.data();
    p.penalty_indptr = d_indptr.data();
    p.penalties = d_penalties.data();
    p.workspace = workspace;
    p.out = d_out;
    ASSERT_EQ(LaunchSampleRows(type, p, nullptr), cudaSuccess);
    std::vector<SampledRow> out(6);
    ASSERT_EQ(cudaMemcpy(out.data(), d_out, 6 * sizeof(SampledRow), cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(workspace);
    cudaFree(d_out);
    Sampler sampler;
    for (int r : {0, 4}) {
      auto host = sampler.Sample(absl::MakeConstSpan(&b.logits[r * vocab], vocab), b.params[r], b.states[r]);
      ASSERT_TRUE(host.ok());
      EXPECT_EQ(out[r].status, kSampleOk) << r;
      EXPECT_EQ(out[r].token_id, host->token_id) << r;
    }
    EXPECT_EQ(out[1].status, kNonFiniteLogit);
    EXPECT_EQ(out[1].detail, 7);
    EXPECT_EQ(out[2].status, kNonFiniteLogit);
    EXPECT_EQ(out[2].detail, 100);
    EXPECT_EQ(out[3].status, kNoFiniteLogit);
    EXPECT_EQ(out[5].status, kPenaltyOutOfVocab);
    EXPECT_EQ(out[5].detail, vocab);
    for (int r : {1, 2, 3, 5}) EXPECT_EQ(out[r].token_id, -1) << r;

    // Through CudaSampling: each bad row gets INVALID_ARGUMENT naming it and
    // the cause (the host Sampler's code for that row); the good rows in the
    // same batch get the host Sampler's tokens.
    std::vector<absl::StatusOr<SampledToken>> tokens;
    ASSERT_TRUE(SampleOnGpu(type, b, &tokens).ok());
    ASSERT_EQ(tokens.size(), 6u);
    const std::vector<std::pair<int, std::string>> bad = {
        {1, "token 7"}, {2, "token 100"}, {3, "every logit is -inf"}};
    for (const auto& [r, cause] : bad) {
      EXPECT_EQ(tokens[r].status().code(), absl::StatusCode::kInvalidArgument) << r << ": " << tokens[r].status();
      EXPECT_NE(tokens[r].status().message().find("row " + std::to_string(r)), std::string::npos) << tokens[r].status();
      EXPECT_NE(tokens[r].status().message().find(cause), std::string::npos) << tokens[r].status();
      auto host = sampler.Sample(absl::MakeConstSpan(&b.logits[r * vocab], vocab), b.params[r], b.states[r]);
      EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument);
    }

    // A penalty token outside the vocabulary is caught on the host first,
    // and fails only its row.
    Batch mixed = MakeBatch(3, vocab, 9, false, [](int r, std::mt19937&) {
      SamplingParams p;
      p.temperature = 0.0f;
      if (r != 2) p.frequency_penalty = 0.5f;
      return p;
    });
    mixed.states[0].AppendOutputToken(3);
    mixed.states[1].AppendOutputToken(int32_t(vocab) + 5);
    mixed.states[2].AppendOutputToken(4);
    ASSERT_TRUE(SampleOnGpu(type, mixed, &tokens).ok());
    ASSERT_EQ(tokens.size(), 3u);
    EXPECT_EQ(tokens[1].status().code(), absl::StatusCode::kInvalidArgument) << tokens[1].status();
    EXPECT_NE(tokens[1].status().message().find("row 1"), std::string::npos) << tokens[1].status();
    EXPECT_NE(tokens[1].status().message().find("outside the vocabulary"), std::string::npos) << tokens[1].status();
    for (int r : {0, 2}) {
      auto host = sampler.Sample(absl::MakeConstSpan(&mixed.logits[r * vocab], vocab), mixed.params[r], mixed.states[r]);
      ASSERT_TRUE(host.ok()) << host.status();
      ASSERT_TRUE(tokens[r].ok()) << r << ": " << tokens[r].status();
      EXPECT_EQ(tokens[r]->token_id, host->token_id) << r;
    }
  }
}

TEST(SamplingCudaErrorsTest, EmptyBatchIsANoOp) {
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  Batch b;
  b.vocab = 32000;
  std::vector<absl::StatusOr<SampledToken>> tokens(3);
  EXPECT_TRUE(SampleOnGpu(ScalarType::kBF16, b, &tokens).ok());
  EXPECT_TRUE(tokens.empty());
}

}  // namespace
}  // namespace tern::kernels
