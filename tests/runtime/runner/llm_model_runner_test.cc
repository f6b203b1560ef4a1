// LlmModelRunner: what a step asks of the backend (on the CPU backend: a
// step waits for the device once, SampleRows, which reports the errors of
// the whole pass, whatever it computes and samples), and block copies on the
// test backend (tests/runtime/test_backend.h: built again with
// TERN_TEST_CUDA_BACKEND, label gpu, for the CUDA backend's batched copy).
#include "runtime/runner/llm_model_runner.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_backend.h"
#include "tests/runtime/test_backend.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;

// The CPU backend, counting the waits for the device.
class CountingCpuBackend final : public CpuBackend {
 public:
  explicit CountingCpuBackend(int* finish_steps) : finish_steps_(finish_steps) {}
  absl::Status FinishStep() override {
    ++*finish_steps_;
    return CpuBackend::FinishStep();
  }

 private:
  int* finish_steps_;
};

class LlmModelRunnerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string((fs::temp_directory_path() / ("tern-runner-test-" + std::to_string(getpid()))).string());
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch llama --preset tiny --vocab-size 512 --seed 7 " +
                            "--dtype float32 --out " + *dir_ + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* LlmModelRunnerTest::dir_ = nullptr;

TEST_F(LlmModelRunnerTest, EachStepWaitsForTheDeviceOnce) {
  int finish_steps = 0;
  LlmModelRunnerOptions options;
  options.model_dir = *dir_;
  options.block_size = 4;
  options.num_blocks = 16;
  auto runner = LlmModelRunner::Create(std::make_unique<CountingCpuBackend>(&finish_steps), options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  SamplingParams params;
  params.temperature = 0.0f;
  std::vector<int32_t> tokens = {5, 6, 7, 8, 9, 10};
  SequenceSamplingState state(1, 0, tokens);
  const std::vector<int32_t> blocks = {3, 1};
  const auto step = [&](int32_t computed, int32_t count, bool sample) {
    SequenceStep s;
    s.seq_id = 1;
    s.token_ids = absl::MakeConstSpan(tokens).subspan(computed, count);
    s.num_computed_tokens = computed;
    s.block_table = blocks;
    s.sample = sample;
    s.sampling = &params;
    s.sampling_state = &state;
    StepPlan plan;
    plan.sequences.push_back(s);
    finish_steps = 0;
    auto result = (*runner)->Execute(plan);
    EXPECT_TRUE(result.ok()) << result.status();
    if (result.ok()) {
      EXPECT_EQ(result->outputs.size(), sample ? 1u : 0u);
    }
    return finish_steps;
  };
  EXPECT_EQ(step(0, 3, /*sample=*/false), 1) << "a prefill chunk that samples nothing";
  EXPECT_EQ(step(3, 3, /*sample=*/true), 1) << "the end of the prompt, sampled";
  tokens.push_back(11);
  EXPECT_EQ(step(6, 1, /*sample=*/true), 1) << "a decode step";
  // Block copies alone (no sequence computes): waited for in the same step,
  // so that an error of the copies fails this step, not a later one.
  StepPlan copies;
  copies.block_copies = {{3, 5}, {1, 6}};
  finish_steps = 0;
  auto result = (*runner)->Execute(copies);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->outputs.empty());
  EXPECT_EQ(finish_steps, 1);
  copies.block_copies = {{3, 16}};
  EXPECT_EQ((*runner)->Execute(copies).status().code(), absl::StatusCode::kInvalidArgument);
}

// A prompt prefilled into some blocks, the blocks copied by a copies-only
// step, then the same next step over the originals and over the copies:
// the copies hold the same KV, so the logprobs are the same bits.
TEST_F(LlmModelRunnerTest, CopiedBlocksContinueLikeTheirSources) {
  std::unique_ptr<Backend> backend = testing::MakeTestBackend();
  if (backend == nullptr) GTEST_SKIP() << "no CUDA device";
  LlmModelRunnerOptions options;
  options.model_dir = *dir_;
  options.block_size = 4;
  options.num_blocks = 16;
  auto runner = LlmModelRunner::Create(std::move(backend), options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  SamplingParams params;
  params.temperature = 0.0f;
  params.logprobs = 2;
  std::vector<int32_t> tokens = {5, 6, 7, 8, 9, 10, 11};
  const auto step = [&](int32_t computed, const std::vector<int32_t>& blocks, bool sample) {
    SequenceSamplingState state(1, 0, tokens);
    SequenceStep s;
    s.seq_id = 1;
    s.token_ids = absl::MakeConstSpan(tokens).subspan(computed);
    s.num_computed_tokens = computed;
    s.block_table = blocks;
    s.sample = sample;
    s.sampling = &params;
    s.sampling_state = &state;
    StepPlan plan;
    plan.sequences.push_back(s);
    return (*runner)->Execute(plan);
  };
  // Positions 0..5 in blocks 3 and 1 (the second half full), then copies.
  tokens.resize(6);
  ASSERT_TRUE(step(0, {3, 1}, false).ok());
  StepPlan copies;
  copies.block_copies = {{3, 9}, {1, 12}};
  ASSERT_TRUE((*runner)->Execute(copies).ok());
  tokens.push_back(11);
  auto original = step(6, {3, 1}, true);
  auto copied = step(6, {9, 12}, true);
  ASSERT_TRUE(original.ok()) << original.status();
  ASSERT_TRUE(copied.ok()) << copied.status();
  ASSERT_TRUE(original->outputs[0].token.ok());
  ASSERT_TRUE(copied->outputs[0].token.ok());
  const SampledToken& a = *original->outputs[0].token;
  const SampledToken& b = *copied->outputs[0].token;
  EXPECT_EQ(a.token_id, b.token_id);
  EXPECT_EQ(a.logprob, b.logprob);
  ASSERT_EQ(a.top_logprobs.size(), b.top_logprobs.size());
  for (size_t i = 0; i < a.top_logprobs.size(); ++i) {
    EXPECT_EQ(a.top_logprobs[i].token_id, b.top_logprobs[i].token_id);
    EXPECT_EQ(a.top_logprobs[i].logprob, b.top_logprobs[i].logprob);
  }
  // A block of the cache never written gives other logprobs (the copies
  // carried something).
  auto unwritten = step(6, {9, 14}, true);
  ASSERT_TRUE(unwritten.ok());
  ASSERT_TRUE(unwritten->outputs[0].token.ok());
  EXPECT_NE(unwritten->outputs[0].token->logprob, a.logprob);
}

}  // namespace
}  // namespace tern::runtime
