// The CUDA backend out of device memory, for real (label gpu): a KV cache
// larger than the device, weights that do not fit beside what another
// process holds, and a step larger than any before it when the device has no
// room left for its activations. Each is RESOURCE_EXHAUSTED naming what did
// not fit, how much it asked for and how much was free; none is a fault: the
// backend stays healthy, and the step that failed runs again once there is
// room, with the tokens of a run that never failed.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "gtest/gtest.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"
#include "runtime/runner/llm_model_runner.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;

// Takes (nearly) every byte of free device memory until released, as another
// process on the same card would.
class DeviceMemoryHog {
 public:
  DeviceMemoryHog() = default;
  DeviceMemoryHog(const DeviceMemoryHog&) = delete;
  DeviceMemoryHog& operator=(const DeviceMemoryHog&) = delete;
  ~DeviceMemoryHog() { Release(); }

  // Allocates chunks, halving their size on each failure, down to 64 KiB.
  void TakeAll() {
    size_t free = 0, total = 0;
    ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
    for (size_t chunk = free; chunk >= (size_t(64) << 10);) {
      void* p = nullptr;
      if (cudaMalloc(&p, chunk) == cudaSuccess) {
        taken_.push_back(p);
      } else {
        chunk /= 2;
      }
    }
    // The failed attempts leave the runtime's last error set; clear it so
    // that it is not taken for an error of the backend's next step.
    (void)cudaGetLastError();
  }
  void Release() {
    for (void* p : taken_) cudaFree(p);
    taken_.clear();
  }

 private:
  std::vector<void*> taken_;
};

class CudaOutOfMemoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (ListCudaDevices().empty()) return;
    dir_ = new std::string((fs::temp_directory_path() / ("tern-oom-test-" + std::to_string(getpid()))).string());
    // The 100m shape with 2 layers and a 4096-token vocabulary: about 35 MB
    // of fp16 weights, and a 1024-token prefill that needs 8 MiB of MLP
    // activations alone.
    // tools/device/run.sh names the bundle's bin/ in TERN_BIN_DIR.
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin +
                            "/tern-mkmodel --arch llama --preset 100m --layers 2 --vocab-size 4096 --seed 3 "
                            "--dtype float16 --out " +
                            *dir_ + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    if (dir_ == nullptr) return;
    fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  }
  static std::unique_ptr<Backend> MakeBackend() {
    CudaBackendOptions options;
    options.compute_dtype = DType::kF16;
    options.cuda_graphs = false;
    auto backend = CudaBackend::Create(options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::unique_ptr<Backend>(std::move(*backend)) : nullptr;
  }
  static LlmModelRunnerOptions RunnerOptions() {
    LlmModelRunnerOptions options;
    options.model_dir = *dir_;
    options.block_size = 16;
    options.num_blocks = 128;
    return options;
  }
  static std::string* dir_;
};
std::string* CudaOutOfMemoryTest::dir_ = nullptr;

void ExpectNamesDeviceMemory(const absl::Status& status, const std::string& what) {
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_NE(status.message().find("out of memory"), std::string::npos) << status;
  EXPECT_NE(status.message().find(what), std::string::npos) << status;
  EXPECT_NE(status.message().find("of device memory asked"), std::string::npos) << status;
  EXPECT_NE(status.message().find(" free of "), std::string::npos) << status;
}

// A greedy prefill of `prompt` into blocks 0.., one sampled token.
absl::StatusOr<int32_t> Prefill(LlmModelRunner& runner, const std::vector<int32_t>& prompt) {
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SequenceSamplingState state(0, 0, prompt);
  std::vector<int32_t> blocks((prompt.size() + 16) / 16);
  std::iota(blocks.begin(), blocks.end(), 0);
  SequenceStep step;
  step.seq_id = 1;
  step.token_ids = prompt;
  const std::vector<std::vector<int32_t>> tables = {blocks};
  step.block_tables = tables;
  step.sample = true;
  step.sampling = &greedy;
  step.sampling_state = &state;
  StepPlan plan;
  plan.sequences = {step};
  absl::StatusOr<StepResult> result = runner.Execute(plan);
  if (!result.ok()) return result.status();
  if (result->outputs.size() != 1 || !result->outputs[0].token.ok()) return absl::InternalError("no token");
  return result->outputs[0].token->token_id;
}

std::vector<int32_t> PromptOf(int32_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) v[size_t(i)] = (i * 37 + 11) % 4000 + 3;
  return v;
}

TEST_F(CudaOutOfMemoryTest, AKvCacheLargerThanTheDeviceNamesItsSize) {
  LlmModelRunnerOptions options = RunnerOptions();
  options.num_blocks = (1 << 30) / options.block_size;  // 2^30 slots: about 6 TiB of fp16 K and V
  auto runner = LlmModelRunner::Create(MakeBackend(), options);
  ASSERT_FALSE(runner.ok());
  ExpectNamesDeviceMemory(runner.status(), "allocating the KV cache (67108864 blocks of 16 tokens");
}

TEST_F(CudaOutOfMemoryTest, ABudgetThatHoldsNoKvBlockNamesTheDeviceMemory) {
  LlmModelRunnerOptions options = RunnerOptions();
  options.num_blocks = 0;  // sized from the free device memory
  options.gpu_memory_fraction = 1e-6;
  auto runner = LlmModelRunner::Create(MakeBackend(), options);
  ASSERT_FALSE(runner.ok());
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kResourceExhausted) << runner.status();
  EXPECT_NE(runner.status().message().find("free x gpu_memory_fraction 1e-06"), std::string::npos) << runner.status();
  EXPECT_NE(runner.status().message().find("holds no KV cache block"), std::string::npos) << runner.status();
}

TEST_F(CudaOutOfMemoryTest, WeightsBesideAFullCardAreRefusedNamingTheRoomLeft) {
  std::unique_ptr<Backend> backend = MakeBackend();
  ASSERT_NE(backend, nullptr);
  DeviceMemoryHog hog;
  hog.TakeAll();
  auto runner = LlmModelRunner::Create(std::move(backend), RunnerOptions());
  ASSERT_FALSE(runner.ok());
  ExpectNamesDeviceMemory(runner.status(), "allocating");
}

// A step larger than any before needs bigger activation buffers; with the
// device full they cannot grow. The step fails alone, the backend stays
// healthy, and once memory is back the same step gives the token of a
// runner that never failed.
TEST_F(CudaOutOfMemoryTest, AStepLargerThanPlannedFailsAloneAndRunsOnceThereIsRoom) {
  const std::vector<int32_t> large = PromptOf(1024);
  auto reference = LlmModelRunner::Create(MakeBackend(), RunnerOptions());
  ASSERT_TRUE(reference.ok()) << reference.status();
  absl::StatusOr<int32_t> expected = Prefill(**reference, large);
  ASSERT_TRUE(expected.ok()) << expected.status();

  auto runner = LlmModelRunner::Create(MakeBackend(), RunnerOptions());
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_TRUE(Prefill(**runner, PromptOf(8)).ok());  // buffers sized for 8 tokens
  DeviceMemoryHog hog;
  hog.TakeAll();
  absl::StatusOr<int32_t> failed = Prefill(**runner, large);
  ASSERT_FALSE(failed.ok());
  ExpectNamesDeviceMemory(failed.status(), "allocating");
  EXPECT_TRUE((*runner)->Health().ok()) << (*runner)->Health();
  hog.Release();
  absl::StatusOr<int32_t> again = Prefill(**runner, large);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *expected);
  // And a small step, as before the failure.
  EXPECT_TRUE(Prefill(**runner, PromptOf(8)).ok());
}

}  // namespace
}  // namespace tern::runtime
