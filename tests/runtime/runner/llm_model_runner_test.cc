// LlmModelRunner: what a step asks of the backend (on the CPU backend: a
// step waits for the device once, SampleRows, which reports the errors of
// the whole pass, whatever it computes and samples), and block copies on the
// test backend (tests/runtime/test_backend.h: built again with
// TERN_TEST_CUDA_BACKEND, label gpu, for the CUDA backend's batched copy).
#include "runtime/runner/llm_model_runner.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/base/status_macros.h"
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

// A cache sized from a budget that holds no block is refused at start,
// naming the budget (the device's free memory on a GPU: see
// cuda_out_of_memory_test).
TEST_F(LlmModelRunnerTest, ABudgetThatHoldsNoBlockIsRefusedNamingIt) {
  LlmModelRunnerOptions options;
  options.model_dir = *dir_;
  options.block_size = 4;
  options.num_blocks = 0;
  options.kv_cache_bytes = 100;
  auto runner = LlmModelRunner::Create(std::make_unique<CpuBackend>(), options);
  ASSERT_FALSE(runner.ok());
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kResourceExhausted) << runner.status();
  EXPECT_NE(runner.status().message().find("the KV cache budget of 0.0 MiB holds no KV cache block of"),
            std::string::npos)
      << runner.status();
}

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
    const std::vector<std::vector<int32_t>> tables = {blocks};
    s.block_tables = tables;
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

TEST(WarmupPrefillLengthsTest, QuartersDownToTheShortestPrompt) {
  EXPECT_EQ(WarmupPrefillLengths(2048), (std::vector<int32_t>{2048, 2047, 512, 511, 128, 127, 32, 31}));
  EXPECT_EQ(WarmupPrefillLengths(100), (std::vector<int32_t>{100, 99, 25, 24}));
  EXPECT_EQ(WarmupPrefillLengths(kMinWarmupPrefillTokens),
            (std::vector<int32_t>{kMinWarmupPrefillTokens, kMinWarmupPrefillTokens - 1}));
  EXPECT_EQ(WarmupPrefillLengths(5), (std::vector<int32_t>{5, 4}));
  EXPECT_EQ(WarmupPrefillLengths(1), (std::vector<int32_t>{1}));
  EXPECT_TRUE(WarmupPrefillLengths(0).empty());
}

// The start-up warm-up runs one step per prefill length (each cut to the
// cache: 64 tokens of a 64-slot cache become 63, the prompt plus the one
// decoded token) and one decode step after the longest.
TEST_F(LlmModelRunnerTest, WarmupPrefillsEachLengthAndDecodesOnce) {
  int finish_steps = 0;
  LlmModelRunnerOptions options;
  options.model_dir = *dir_;
  options.block_size = 4;
  options.num_blocks = 16;
  options.warmup_tokens = 64;  // lengths 64 and 63 (both cut to 63), 16 and 15
  auto runner = LlmModelRunner::Create(std::make_unique<CountingCpuBackend>(&finish_steps), options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_EQ(finish_steps, 4);  // 16, 15, then 63 and its decode step
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
    const std::vector<std::vector<int32_t>> tables = {blocks};
    s.block_tables = tables;
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

// The same with KV-cache groups: a plan whose two layers read differently
// gives each layer its own group, whose blocks hold that layer alone; a
// copies-only step copies every pool of the listed blocks, so a sequence
// continues alike over its own blocks and over copies of them in both groups.
TEST_F(LlmModelRunnerTest, CopiedBlocksOfEveryGroupContinueLikeTheirSources) {
  std::unique_ptr<Backend> backend = testing::MakeTestBackend();
  if (backend == nullptr) GTEST_SKIP() << "no CUDA device";
  const std::string plan_path = *dir_ + "/groups_plan.json";
  std::ofstream(plan_path) << R"({"format": "tern.moa.v1", "num_layers": 2, "num_heads": 4,
      "sinks": [[4, 0, 8, 4], [0, 4, 4, 16]],
      "buckets": [{"alphas": [[8, 12, 4, 16], [6, 10, 20, 4]], "betas": [[0.0, 0.125, 0.125, 0.0], [0.1, 0.0, 0.0, 0.05]]}]})";
  LlmModelRunnerOptions options;
  options.model_dir = *dir_;
  options.block_size = 4;
  options.num_blocks = 16;
  options.max_context_length = 64;
  options.model.attention.plan_path = plan_path;
  auto runner = LlmModelRunner::Create(std::move(backend), options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_EQ((*runner)->kv_cache_layout().num_groups, 2);
  SamplingParams params;
  params.temperature = 0.0f;
  params.logprobs = 2;
  std::vector<int32_t> tokens = {5, 6, 7, 8, 9, 10, 11};
  const auto step = [&](int32_t computed, const std::vector<std::vector<int32_t>>& tables, bool sample) {
    SequenceSamplingState state(1, 0, tokens);
    SequenceStep s;
    s.seq_id = 1;
    s.token_ids = absl::MakeConstSpan(tokens).subspan(computed);
    s.num_computed_tokens = computed;
    s.block_tables = tables;
    s.sample = sample;
    s.sampling = &params;
    s.sampling_state = &state;
    StepPlan plan;
    plan.sequences.push_back(s);
    return (*runner)->Execute(plan);
  };
  tokens.resize(6);
  ASSERT_TRUE(step(0, {{3, 1}, {7, 2}}, false).ok());
  StepPlan copies;
  copies.block_copies = {{3, 9}, {1, 12}, {7, 10}, {2, 13}};
  ASSERT_TRUE((*runner)->Execute(copies).ok());
  tokens.push_back(11);
  auto original = step(6, {{3, 1}, {7, 2}}, true);
  auto copied = step(6, {{9, 12}, {10, 13}}, true);
  ASSERT_TRUE(original.ok()) << original.status();
  ASSERT_TRUE(copied.ok()) << copied.status();
  ASSERT_TRUE(original->outputs[0].token.ok());
  ASSERT_TRUE(copied->outputs[0].token.ok());
  const SampledToken& a = *original->outputs[0].token;
  const SampledToken& b = *copied->outputs[0].token;
  EXPECT_EQ(a.token_id, b.token_id);
  EXPECT_EQ(a.logprob, b.logprob);
  // The second group's blocks matter: one of them unwritten changes the logprobs.
  auto unwritten = step(6, {{9, 12}, {10, 14}}, true);
  ASSERT_TRUE(unwritten.ok());
  ASSERT_TRUE(unwritten->outputs[0].token.ok());
  EXPECT_NE(unwritten->outputs[0].token->logprob, a.logprob);
  // A plan with one table for two groups is refused.
  auto short_plan = step(6, {{3, 1}}, true);
  EXPECT_EQ(short_plan.status().code(), absl::StatusCode::kInvalidArgument);
}

// MoA spans on the demo LLM (8 layers of 6 query heads, 2 kv heads, head_dim
// 64): a long prompt prefilled in chunks, then greedy decode steps, with
// every block no head reads again unmapped (-1) as the scheduler leaves it,
// on the test backend (CPU, bit for bit; or CUDA in fp32, whose decode steps
// replay CUDA graphs, and in bf16, whose prefill takes the tensor-core
// kernel) against the CPU backend with the same plan and every block kept:
// the same tokens (teacher-forced in bf16) and their logprobs close. On CUDA
// with auto, int8 and fp8 KV caches.
std::string WriteDemoMoaPlan(const std::string& path) {
  std::ostringstream sinks, alphas0, betas0, alphas1, betas1;
  const int sink_choice[] = {0, 16, 64};
  const double alpha_choice[] = {32, 96, 64, 48};
  const double beta_choice[] = {0.0, 0.05, 0.1, 0.02};
  for (int l = 0; l < 8; ++l) {
    for (auto* os : {&sinks, &alphas0, &betas0, &alphas1, &betas1}) *os << (l ? ", [" : "[");
    for (int h = 0; h < 6; ++h) {
      const char* sep = h ? ", " : "";
      sinks << sep << sink_choice[(l + h) % 3];
      alphas0 << sep << alpha_choice[(l * 5 + h) % 4] / 2;
      betas0 << sep << beta_choice[(l + 2 * h) % 4];
      alphas1 << sep << alpha_choice[(l * 5 + h) % 4];
      betas1 << sep << beta_choice[(l + 2 * h) % 4];
    }
    for (auto* os : {&sinks, &alphas0, &betas0, &alphas1, &betas1}) *os << "]";
  }
  std::ofstream(path) << R"({"format": "tern.moa.v1", "num_layers": 8, "num_heads": 6, "sinks": [)" << sinks.str()
                      << R"(], "buckets": [{"max_length": 256, "alphas": [)" << alphas0.str() << R"(], "betas": [)"
                      << betas0.str() << R"(]}, {"alphas": [)" << alphas1.str() << R"(], "betas": [)" << betas1.str()
                      << "]}]}";
  return path;
}

struct MoaRun {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  // Table entries unmapped at the end, over every KV-cache group, and the
  // same weighted by the layers a block of the group holds.
  int32_t freed_blocks = 0;
  int64_t freed_layer_blocks = 0;
};

// Prefill `prompt` in chunks of 96, then `steps` decode steps, each KV-cache
// group in its own run of blocks. `force`: feed these tokens instead of the
// sampled ones. `unmap`: unmap what each group's retention frees after each
// step, as the scheduler does.
absl::StatusOr<MoaRun> RunMoa(LlmModelRunner& runner, std::vector<int32_t> tokens, int32_t steps, bool unmap,
                              const std::vector<int32_t>* force) {
  const int32_t bs = 16;
  const KvCacheGroups* groups = runner.kv_cache_groups();
  if (groups == nullptr || !groups->any_retention()) return absl::InternalError("an MoA runner frees nothing");
  const int32_t num_groups = groups->num_groups();
  const int32_t per_group = int32_t((tokens.size() + steps + bs - 1) / bs);
  if (int64_t(per_group) * num_groups > runner.kv_cache_layout().num_blocks) {
    return absl::InternalError("the cache is too small for the run");
  }
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(num_groups),
                                           std::vector<int32_t>(static_cast<size_t>(per_group), 0));
  for (int32_t g = 0; g < num_groups; ++g) std::iota(tables[size_t(g)].begin(), tables[size_t(g)].end(), g * per_group);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  greedy.logprobs = 0;
  MoaRun run;
  const int32_t prompt = int32_t(tokens.size());
  int32_t computed = 0;
  for (int32_t i = 0; computed < int32_t(tokens.size()) && i < prompt + steps; ++i) {
    const int32_t n = computed < prompt ? std::min(96, prompt - computed) : 1;
    SequenceSamplingState state(1, 0, tokens);
    SequenceStep s;
    s.seq_id = 1;
    s.token_ids = absl::MakeConstSpan(tokens).subspan(size_t(computed), size_t(n));
    s.num_computed_tokens = computed;
    s.block_tables = tables;
    s.sample = computed + n == int32_t(tokens.size());
    s.sampling = &greedy;
    s.sampling_state = &state;
    StepPlan plan;
    plan.sequences.push_back(s);
    ASSIGN_OR_RETURN(StepResult result, runner.Execute(plan));
    computed += n;
    if (unmap) {
      for (int32_t g = 0; g < num_groups; ++g) {
        const KvRetention* retention = groups->group_retention(g);
        if (retention == nullptr) continue;
        for (int32_t b = (retention->sink_tokens() + bs - 1) / bs; (b + 1) * bs <= retention->FreeBefore(computed);
             ++b) {
          tables[size_t(g)][size_t(b)] = kFreedBlock;
        }
      }
    }
    if (!s.sample) continue;
    if (!result.outputs[0].token.ok()) return result.outputs[0].token.status();
    const SampledToken& t = *result.outputs[0].token;
    run.tokens.push_back(t.token_id);
    run.logprobs.push_back(t.logprob.value_or(NAN));
    if (int32_t(run.tokens.size()) == steps) break;
    tokens.push_back(force != nullptr ? (*force)[run.tokens.size() - 1] : t.token_id);
  }
  const int32_t group_layers = int32_t(groups->layer_group.size()) / num_groups;
  for (const std::vector<int32_t>& table : tables) {
    const int32_t freed = int32_t(std::count(table.begin(), table.end(), kFreedBlock));
    run.freed_blocks += freed;
    run.freed_layer_blocks += int64_t(freed) * group_layers;
  }
  return run;
}

// The demo LLM's layers read differently under the plan, so each gets its
// own KV-cache group (at most 8): with every unread block unmapped per
// group, the test backend's tokens and logprobs are those of the run that
// keeps every block (bit for bit on the CPU; within 1e-4 on CUDA in fp32,
// whose KV append, prefill and graph-replayed decode then run through 8
// groups' tables), and the groups free more of the cache (in blocks of one
// layer) than one table for all layers does (the union rule).
void ExpectSameLogprob(float got, float want, size_t i) {
#if defined(TERN_TEST_CUDA_BACKEND)
  EXPECT_NEAR(got, want, 1e-4) << i;
#else
  EXPECT_EQ(got, want) << i;
#endif
}

TEST(LlmModelRunnerMoaTest, GroupsFreeMoreThanTheUnionAndKeepTheLogits) {
  const std::string plan = WriteDemoMoaPlan(
      (fs::temp_directory_path() / ("tern-moa-groups-" + std::to_string(getpid()) + ".json")).string());
  const int32_t prompt_len = 224, steps = 8;
  std::vector<int32_t> prompt(prompt_len);
  for (int32_t i = 0; i < prompt_len; ++i) prompt[size_t(i)] = 3 + (i * 7919) % 8000;
  LlmModelRunnerOptions options;
  options.model_dir = std::string(TERN_MODELS_DIR) + "/tern-demo-llm";
  options.block_size = 16;
  options.num_blocks = 8 * 16;
  options.model.attention.plan_path = plan;
  std::optional<MoaRun> grouped_run;
  for (const int32_t max_groups : {8, 1}) {
    SCOPED_TRACE(max_groups);
    options.max_kv_cache_groups = max_groups;
    std::unique_ptr<Backend> kept_backend = testing::MakeTestBackend();
    if (kept_backend == nullptr) GTEST_SKIP() << "no CUDA device";
    auto kept = LlmModelRunner::Create(std::move(kept_backend), options);
    ASSERT_TRUE(kept.ok()) << kept.status();
    ASSERT_EQ((*kept)->kv_cache_layout().num_groups, max_groups);
    auto freed = LlmModelRunner::Create(testing::MakeTestBackend(), options);
    ASSERT_TRUE(freed.ok()) << freed.status();
    auto want = RunMoa(**kept, prompt, steps, /*unmap=*/false, nullptr);
    ASSERT_TRUE(want.ok()) << want.status();
    auto got = RunMoa(**freed, prompt, steps, /*unmap=*/true, nullptr);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(want->freed_blocks, 0);
    EXPECT_GT(got->freed_blocks, 0);
    EXPECT_EQ(got->tokens, want->tokens);
    ASSERT_EQ(got->logprobs.size(), want->logprobs.size());
    for (size_t i = 0; i < want->logprobs.size(); ++i) ExpectSameLogprob(got->logprobs[i], want->logprobs[i], i);
    if (max_groups == 8) {
      grouped_run = *got;
    } else {
      // The same tokens whatever the grouping (blocks hold other layers, the
      // arithmetic is the same), and the groups free more.
      ASSERT_TRUE(grouped_run.has_value());
      EXPECT_EQ(got->tokens, grouped_run->tokens);
      for (size_t i = 0; i < got->logprobs.size(); ++i) ExpectSameLogprob(got->logprobs[i], grouped_run->logprobs[i], i);
      EXPECT_GT(grouped_run->freed_layer_blocks, got->freed_layer_blocks);
    }
  }
  fs::remove(plan);
}

TEST(LlmModelRunnerMoaTest, FreedBlocksAndSpansMatchTheCpuReference) {
  const std::string plan = WriteDemoMoaPlan(
      (fs::temp_directory_path() / ("tern-moa-plan-" + std::to_string(getpid()) + ".json")).string());
#if defined(TERN_TEST_CUDA_BACKEND)
  const int32_t prompt_len = 600, steps = 40;
  const std::vector<KvCacheDtype> kv_types = {KvCacheDtype::kAuto, KvCacheDtype::kInt8, KvCacheDtype::kFp8E4M3};
#else
  // The CPU against itself (holes against every block kept): bit for bit, and short for CI.
  const int32_t prompt_len = 224, steps = 8;
  const std::vector<KvCacheDtype> kv_types = {KvCacheDtype::kAuto};
#endif
  std::vector<int32_t> prompt(prompt_len);
  for (int32_t i = 0; i < prompt_len; ++i) prompt[size_t(i)] = 3 + (i * 7919) % 8000;
  for (KvCacheDtype kv : kv_types) {
    SCOPED_TRACE(KvCacheDtypeName(kv));
    LlmModelRunnerOptions options;
    options.model_dir = std::string(TERN_MODELS_DIR) + "/tern-demo-llm";
    options.block_size = 16;
    options.num_blocks = 8 * 48;  // 8 KV-cache groups (one per layer) of 48 blocks
    options.model.kv_cache_dtype = kv;
    options.model.attention.plan_path = plan;
    auto reference = LlmModelRunner::Create(std::make_unique<CpuBackend>(), options);
    ASSERT_TRUE(reference.ok()) << reference.status();
    auto want = RunMoa(**reference, prompt, steps, /*unmap=*/false, nullptr);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE((*reference)->kv_cache_groups()->any_retention()) << "the plan frees nothing";

    std::vector<std::pair<std::string, std::unique_ptr<Backend>>> backends;
    backends.emplace_back("test backend", testing::MakeTestBackend());
#if defined(TERN_TEST_CUDA_BACKEND)
    if (backends[0].second == nullptr) GTEST_SKIP() << "no CUDA device";
    CudaBackendOptions bf16;
    bf16.compute_dtype = DType::kBF16;
    auto made = CudaBackend::Create(bf16);
    ASSERT_TRUE(made.ok()) << made.status();
    backends.emplace_back("cuda bf16", std::move(*made));
#endif
    for (auto& [name, backend] : backends) {
      SCOPED_TRACE(name);
      const bool bf16_run = name == "cuda bf16";
      auto runner = LlmModelRunner::Create(std::move(backend), options);
      ASSERT_TRUE(runner.ok()) << runner.status();
      auto got = RunMoa(**runner, prompt, steps, /*unmap=*/true, bf16_run ? &want->tokens : nullptr);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->tokens.size(), want->tokens.size());
      int32_t same = 0;
      for (size_t i = 0; i < want->tokens.size(); ++i) same += got->tokens[i] == want->tokens[i] ? 1 : 0;
      // A quantized cache is a step function of K and V: where two backends' K or V differ by a
      // rounding, a code can flip (one int8 step of the token's range; an eighth of the value for
      // e4m3's 3-bit mantissa), and later tokens' logprobs inherit it. Same-precision runs keep
      // the native cache's tight bound.
      const double quantized_slack = kv == KvCacheDtype::kAuto ? 0.0 : kv == KvCacheDtype::kInt8 ? 0.05 : 0.5;
      if (bf16_run) {
        // bf16 against the fp32 reference: 90% of the greedy tokens agree with a native or int8
        // cache; e4m3's coarse grid lets bf16's roundings flip more codes (35 of 40 on an H100).
        const int32_t agree_percent = kv == KvCacheDtype::kFp8E4M3 ? 80 : 90;
        EXPECT_GE(same, int32_t(want->tokens.size()) * agree_percent / 100);
        EXPECT_NEAR(got->logprobs[0], want->logprobs[0], 0.15 + quantized_slack);
      } else {
        EXPECT_EQ(got->tokens, want->tokens);
        const double tolerance = kv == KvCacheDtype::kAuto ? 2e-3 : 5e-2;
        for (size_t i = 0; i < want->logprobs.size(); ++i) {
          EXPECT_NEAR(got->logprobs[i], want->logprobs[i], tolerance) << i;
        }
      }
    }
  }
  fs::remove(plan);
}

}  // namespace
}  // namespace tern::runtime
