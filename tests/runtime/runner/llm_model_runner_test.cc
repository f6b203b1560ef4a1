// LlmModelRunner on the CPU backend: what a step asks of the backend. A
// step waits for the device once (SampleRows, which reports the errors of
// the whole pass), whatever it computes and samples.
#include "runtime/runner/llm_model_runner.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_backend.h"

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
    if (result.ok()) EXPECT_EQ(result->outputs.size(), sample ? 1u : 0u);
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

}  // namespace
}  // namespace tern::runtime
