// Backend::SampleRows (the default: host read-back and the host Sampler, as
// the CPU backend runs it): a row the sampler rejects fails alone, with an
// error naming the row, and the other rows of the batch are sampled as if it
// were not there. The CUDA backend's version is checked in
// tests/kernels/sampling_cuda_test.cc.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/sampling/sampler.h"

namespace tern::runtime {
namespace {

constexpr int64_t kVocab = 64;

std::vector<float> RowLogits(int row) {
  std::vector<float> logits(kVocab);
  for (int64_t i = 0; i < kVocab; ++i) logits[size_t(i)] = std::sin(float(row * 31 + i) * 0.7f);
  return logits;
}

TEST(SampleRowsTest, ABadRowFailsAloneAndNamesItself) {
  CpuBackend backend;
  const int rows = 4;
  Tensor logits = backend.Scratch(0, rows, kVocab);
  std::vector<std::vector<float>> host(rows);
  for (int r = 0; r < rows; ++r) {
    host[r] = RowLogits(r);
    if (r == 1) host[r][7] = std::nanf("");
    if (r == 2) std::fill(host[r].begin(), host[r].end(), -std::numeric_limits<float>::infinity());
    std::copy(host[r].begin(), host[r].end(), static_cast<float*>(logits.data) + r * kVocab);
  }
  SamplingParams sampled;
  sampled.temperature = 0.8f;
  sampled.seed = 11;
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  std::vector<SamplingParams> params = {sampled, greedy, greedy, greedy};
  std::vector<SequenceSamplingState> states;
  for (int r = 0; r < rows; ++r) states.emplace_back(11, uint32_t(r), std::vector<int32_t>{1, 2, 3});
  std::vector<SampleRequest> requests;
  for (int r = 0; r < rows; ++r) requests.push_back({&params[r], &states[r]});

  std::vector<absl::StatusOr<SampledToken>> out;
  ASSERT_TRUE(backend.SampleRows(logits, requests, &out).ok());
  ASSERT_EQ(out.size(), size_t(rows));
  EXPECT_EQ(out[1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out[1].status().message().find("row 1"), std::string::npos) << out[1].status();
  EXPECT_EQ(out[2].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out[2].status().message().find("row 2"), std::string::npos) << out[2].status();

  // The good rows get what the host Sampler gives them on their own.
  Sampler sampler;
  std::vector<SequenceSamplingState> fresh;
  for (int r = 0; r < rows; ++r) fresh.emplace_back(11, uint32_t(r), std::vector<int32_t>{1, 2, 3});
  for (int r : {0, 3}) {
    auto want = sampler.Sample(host[r], params[r], fresh[r]);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(out[r].ok()) << out[r].status();
    EXPECT_EQ(out[r]->token_id, want->token_id) << r;
  }
}

TEST(SampleRowsTest, RowCountMismatchFailsTheWholeCall) {
  CpuBackend backend;
  Tensor logits = backend.Scratch(0, 2, kVocab);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SequenceSamplingState state(1, 0, {1});
  std::vector<SampleRequest> requests = {{&greedy, &state}};
  std::vector<absl::StatusOr<SampledToken>> out;
  EXPECT_EQ(backend.SampleRows(logits, requests, &out).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tern::runtime
