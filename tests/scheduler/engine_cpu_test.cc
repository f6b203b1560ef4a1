// The Engine end to end on the real CPU backend: a tiny tern-mkmodel Llama
// (batched greedy outputs equal each request alone, MoA plans, n choices,
// cancel) and a model with a real tokenizer (text deltas, stop strings).
#include "scheduler/engine.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/runner/llm_model_runner.h"
#include "scheduler/engine_impl.h"
#include "tests/scheduler/engine_test_helpers.h"
#include "tests/scheduler/fake_model_runner.h"

namespace tern::scheduler {
namespace {

namespace fs = std::filesystem;

class EngineCpuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string((fs::temp_directory_path() / ("tern-engine-test-" + std::to_string(getpid()))).string());
    const std::string cmd = std::string(TERN_BIN_DIR) +
                            "/tern-mkmodel --arch llama --preset tiny --vocab-size 512 --seed 7 --dtype float32 --out " +
                            *dir_ + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  std::unique_ptr<Engine> MakeEngine(int32_t num_blocks, EngineOptions options = {}) {
    runtime::LlmModelRunnerOptions o;
    o.model_dir = *dir_;
    o.block_size = 4;
    o.num_blocks = num_blocks;
    o.max_context_length = 256;
    auto runner = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), o);
    EXPECT_TRUE(runner.ok()) << runner.status();
    options.model_name = "tiny";
    auto engine = Engine::Create(options, *std::move(runner));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return *std::move(engine);
  }

  static std::string* dir_;
};
std::string* EngineCpuTest::dir_ = nullptr;

TEST_F(EngineCpuTest, BatchedGreedyOutputsEqualEachRequestAlone) {
  struct Case {
    int32_t prompt_len, max_tokens, seed;
    absl::Duration delay;
  };
  // The first three arrive together and need 12 + 8 + 5 = 25 blocks of 4
  // at their longest, more than the 20 of the shared engine below.
  const std::vector<Case> cases = {{40, 6, 4, absl::ZeroDuration()}, {23, 8, 2, absl::ZeroDuration()},
                                   {5, 12, 1, absl::ZeroDuration()},  {2, 15, 3, absl::Milliseconds(3)},
                                   {11, 10, 5, absl::Milliseconds(8)}, {17, 9, 1, absl::Milliseconds(2)}};
  // Alone: one engine per request, big cache.
  std::vector<std::vector<int32_t>> alone;
  {
    auto engine = MakeEngine(256);
    for (size_t i = 0; i < cases.size(); ++i) {
      auto sink = std::make_shared<CollectingSink>();
      ASSERT_TRUE(engine->Submit(Greedy("alone" + std::to_string(i), PromptOf(cases[i].prompt_len, cases[i].seed),
                                        cases[i].max_tokens),
                                 sink)
                      .ok());
      ASSERT_TRUE(sink->WaitDone());
      ASSERT_TRUE(sink->status().ok()) << sink->status();
      ASSERT_EQ(int32_t(sink->tokens().size()), cases[i].max_tokens);
      EXPECT_EQ(sink->finish(), runtime::FinishReason::kLength);
      alone.push_back(sink->tokens());
    }
  }
  // Together: a small cache (preemptions), a small token budget (chunked
  // prefill), staggered arrivals. Cases 2 and 5 share a prompt prefix
  // (seed 1), so the prefix cache is exercised too.
  EngineOptions options;
  options.max_num_batched_tokens = 16;
  options.max_num_seqs = 4;
  auto engine = MakeEngine(20, options);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (size_t i = 0; i < cases.size(); ++i) {
    absl::SleepFor(cases[i].delay);
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(engine->Submit(Greedy("together" + std::to_string(i), PromptOf(cases[i].prompt_len, cases[i].seed),
                                      cases[i].max_tokens),
                               sinks.back())
                    .ok());
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(sinks[i]->WaitDone());
    EXPECT_TRUE(sinks[i]->status().ok()) << sinks[i]->status();
    EXPECT_EQ(sinks[i]->tokens(), alone[i]) << "request " << i;
    EXPECT_EQ(sinks[i]->usage().prompt_tokens, cases[i].prompt_len);
    EXPECT_EQ(sinks[i]->usage().completion_tokens, cases[i].max_tokens);
  }
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.kv_blocks_total, 20);
  EXPECT_EQ(stats.running, 0);
  EXPECT_GT(stats.steps, 0);
  EXPECT_GT(stats.preemptions, 0) << "the small cache should force a preemption";
  EXPECT_EQ(stats.generation_tokens, 12 + 8 + 15 + 6 + 10 + 9);
}

// Async scheduling on the CPU backend: with the next step planned while the
// one before runs, every request gets the greedy tokens it gets alone, and
// seeded sampled choices the tokens they get without planning ahead; under
// chunked prefill, preemptions, prefix hits and staggered arrivals (which
// pause planning ahead for a step).
TEST_F(EngineCpuTest, AsyncSchedulingGivesEveryRequestTheSameTokens) {
  struct Case {
    int32_t prompt_len, max_tokens, seed;
    absl::Duration delay;
  };
  const std::vector<Case> cases = {{40, 6, 4, absl::ZeroDuration()}, {23, 18, 2, absl::ZeroDuration()},
                                   {5, 22, 1, absl::ZeroDuration()},  {2, 15, 3, absl::Milliseconds(3)},
                                   {11, 10, 5, absl::Milliseconds(8)}, {17, 19, 1, absl::Milliseconds(2)}};
  const auto requests = [&](const std::string& tag) {
    std::vector<EngineRequest> out;
    for (size_t i = 0; i < cases.size(); ++i) {
      out.push_back(Greedy(tag + std::to_string(i), PromptOf(cases[i].prompt_len, cases[i].seed),
                           cases[i].max_tokens));
    }
    // Penalties: their counts see each token before the next is sampled.
    EngineRequest penalized = Greedy(tag + "penalized", PromptOf(12, 7), 20);
    penalized.sampling.frequency_penalty = 0.8f;
    penalized.sampling.presence_penalty = 0.4f;
    penalized.sampling.repetition_penalty = 1.3f;
    out.push_back(std::move(penalized));
    // Two seeded choices, sampled.
    EngineRequest sampled = Greedy(tag + "sampled", PromptOf(9, 6), 14);
    sampled.sampling.temperature = 0.8f;
    sampled.sampling.seed = 99;
    sampled.sampling.n = 2;
    out.push_back(std::move(sampled));
    return out;
  };
  const auto run = [&](bool async, int32_t num_blocks, const std::string& tag, int64_t* planned_ahead) {
    EngineOptions options;
    options.max_num_batched_tokens = 16;
    options.max_num_seqs = 6;
    options.async_scheduling = async;
    auto engine = MakeEngine(num_blocks, options);
    std::vector<std::shared_ptr<CollectingSink>> sinks;
    std::vector<EngineRequest> all = requests(tag);
    for (size_t i = 0; i < all.size(); ++i) {
      if (i < cases.size()) absl::SleepFor(cases[i].delay);  // the last two arrive with the last case
      sinks.push_back(std::make_shared<CollectingSink>());
      EXPECT_TRUE(engine->Submit(std::move(all[i]), sinks.back()).ok());
    }
    std::vector<std::vector<int32_t>> tokens;
    for (auto& sink : sinks) {
      EXPECT_TRUE(sink->WaitDone());
      EXPECT_TRUE(sink->status().ok()) << sink->status();
      tokens.push_back(sink->tokens(0));
    }
    tokens.push_back(sinks.back()->tokens(1));
    const EngineStats stats = engine->Stats();
    EXPECT_EQ(stats.kv_blocks_used, 0);
    EXPECT_EQ(stats.running, 0);
    *planned_ahead = stats.steps_planned_ahead;
    return tokens;
  };
  int64_t sync_ahead = 0, async_ahead = 0, roomy_ahead = 0;
  const auto sync = run(false, 24, "sync", &sync_ahead);
  const auto async = run(true, 24, "async", &async_ahead);   // preemptions: planning ahead pauses
  const auto roomy = run(true, 256, "roomy", &roomy_ahead);  // steady decoding: mostly planned ahead
  EXPECT_EQ(sync_ahead, 0);
  EXPECT_GT(async_ahead, 0);
  EXPECT_GT(roomy_ahead, 10);
  ASSERT_EQ(async.size(), sync.size());
  for (size_t i = 0; i < sync.size(); ++i) {
    EXPECT_EQ(async[i], sync[i]) << "request " << i;
    EXPECT_EQ(roomy[i], sync[i]) << "request " << i;
  }
}

TEST_F(EngineCpuTest, AsyncSchedulingCancelsAtTheNextStepBoundary) {
  EngineOptions options;
  options.async_scheduling = true;
  auto engine = MakeEngine(64, options);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(engine->Submit(Greedy("c" + std::to_string(i), PromptOf(10 + i, i), 200), sinks.back()).ok());
  }
  for (int i = 0; i < 2000 && engine->Stats().steps_planned_ahead < 4; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_GT(engine->Stats().steps_planned_ahead, 0);
  engine->Cancel({kDefaultTenantName, "c1"});
  ASSERT_TRUE(sinks[1]->WaitDone());
  EXPECT_TRUE(sinks[1]->aborted());
  EXPECT_LT(sinks[1]->tokens().size(), 200u);
  // The others run to the end, token for token as without planning ahead.
  for (int i : {0, 2}) {
    ASSERT_TRUE(sinks[size_t(i)]->WaitDone());
    EXPECT_TRUE(sinks[size_t(i)]->status().ok());
    EXPECT_EQ(sinks[size_t(i)]->tokens().size(), 200u);
  }
  auto plain = MakeEngine(64);
  auto alone = std::make_shared<CollectingSink>();
  ASSERT_TRUE(plain->Submit(Greedy("alone", PromptOf(10, 0), 200), alone).ok());
  ASSERT_TRUE(alone->WaitDone());
  EXPECT_EQ(sinks[0]->tokens(), alone->tokens());
  for (int i = 0; i < 1000 && engine->Stats().kv_blocks_used != 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

// An MoA plan on the real CPU backend: sequences longer than the whole KV
// cache run because the blocks no head of a KV-cache group's layers reads
// again are freed after each step, and every greedy token equals the
// model's own greedy continuation with the same plan over a cache that keeps
// every block: with one group per layer (the plan's layers differ) and with
// one group for both layers (the union of their reads).
TEST_F(EngineCpuTest, MoaPlanFreesUnreadBlocksAndKeepsTheOutputs) {
  // The tiny preset: 2 layers of 4 query heads (2 kv heads). Heads of a GQA
  // group differ; the second bucket's band starts wider.
  const std::string plan_path = *dir_ + "/moa_plan.json";
  {
    std::ofstream plan(plan_path);
    plan << R"({"format": "tern.moa.v1", "num_layers": 2, "num_heads": 4, "reference_length": 200,
                "sinks": [[4, 0, 8, 4], [0, 4, 4, 16]],
                "buckets": [{"max_length": 96, "alphas": [[8, 12, 4, 16], [6, 10, 20, 4]],
                             "betas": [[0.0, 0.125, 0.125, 0.0], [0.1, 0.0, 0.0, 0.05]]},
                            {"alphas": [[12, 12, 6, 16], [8, 10, 20, 6]],
                             "betas": [[0.0, 0.125, 0.125, 0.0], [0.1, 0.0, 0.0, 0.05]]}]})";
  }
  const auto runner_options = [&](int32_t num_blocks, int32_t max_groups) {
    runtime::LlmModelRunnerOptions o;
    o.model_dir = *dir_;
    o.block_size = 4;
    o.num_blocks = num_blocks;
    o.max_context_length = 256;
    o.model.attention.plan_path = plan_path;
    o.max_kv_cache_groups = max_groups;
    return o;
  };
  for (const int32_t max_groups : {2, 1}) {
    SCOPED_TRACE(absl::StrCat("at most ", max_groups, " KV-cache groups"));
    // The reference: the runner alone, every block kept, greedy one token a step.
    auto full = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), runner_options(128, max_groups));
    ASSERT_TRUE(full.ok()) << full.status();
    ASSERT_NE((*full)->kv_cache_groups(), nullptr);
    ASSERT_TRUE((*full)->kv_cache_groups()->any_retention());
    const int32_t groups = (*full)->kv_cache_layout().num_groups;
    ASSERT_EQ(groups, max_groups) << "the plan's two layers read differently";
    const auto continuation = [&](std::vector<int32_t> tokens, int32_t max_tokens) {
      runtime::SamplingParams greedy;
      greedy.temperature = 0;
      std::vector<std::vector<int32_t>> tables(static_cast<size_t>(groups), std::vector<int32_t>(64, 0));
      for (int32_t g = 0; g < groups; ++g) std::iota(tables[size_t(g)].begin(), tables[size_t(g)].end(), 64 * g);
      std::vector<int32_t> out;
      int32_t computed = 0;
      for (int32_t i = 0; i < max_tokens; ++i) {
        runtime::SequenceSamplingState state(0, 0, tokens);
        const runtime::StepPlan plan = testing::OneSampledStep(
            0, absl::MakeConstSpan(tokens).subspan(size_t(computed)), computed, tables, &greedy, &state);
        auto result = (*full)->Execute(plan);
        EXPECT_TRUE(result.ok() && result->outputs[0].token.ok());
        if (!result.ok() || !result->outputs[0].token.ok()) return out;
        computed = int32_t(tokens.size());
        out.push_back(result->outputs[0].token->token_id);
        tokens.push_back(out.back());
      }
      return out;
    };

    // 24 blocks of 4 tokens per group hold 96 positions of every layer; each
    // request reaches 200 (a sink block or four, a band of up to ~40 tokens
    // and an 8-token chunk: about 17 blocks per group), and three compete
    // for the cache.
    auto runner =
        runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), runner_options(24 * groups, max_groups));
    ASSERT_TRUE(runner.ok()) << runner.status();
    EngineOptions options;
    options.model_name = "tiny-moa";
    options.max_num_batched_tokens = 8;
    auto engine = Engine::Create(options, *std::move(runner));
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::vector<std::shared_ptr<CollectingSink>> sinks;
    for (int32_t i = 0; i < 3; ++i) {
      sinks.push_back(std::make_shared<CollectingSink>());
      ASSERT_TRUE((*engine)->Submit(Greedy("moa" + std::to_string(i), PromptOf(120, i), 80), sinks.back()).ok());
    }
    for (int32_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(sinks[i]->WaitDone());
      ASSERT_TRUE(sinks[i]->status().ok()) << sinks[i]->status();
      EXPECT_EQ(sinks[i]->tokens(), continuation(PromptOf(120, i), 80)) << "request " << i;
    }
    EXPECT_EQ((*engine)->Stats().kv_blocks_used, 0);
  }
}

TEST_F(EngineCpuTest, ChoicesOfOneRequestMatchSeparateSeededRequests) {
  auto engine = MakeEngine(128);
  EngineRequest r = Greedy("n3", PromptOf(9, 4), 7);
  r.sampling.temperature = 0.9f;
  r.sampling.seed = 1234;
  r.sampling.n = 3;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok());
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(sink->tokens(i).size(), 7u);
  // Same seed, same request again: the same three choices.
  r.request_id = "n3-again";
  auto again = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), again).ok());
  ASSERT_TRUE(again->WaitDone());
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(again->tokens(i), sink->tokens(i));
  EXPECT_GT(again->usage().cached_prompt_tokens, 0);
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

TEST_F(EngineCpuTest, CancelFreesAllBlocks) {
  auto engine = MakeEngine(64);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(engine->Submit(Greedy("c" + std::to_string(i), PromptOf(10 + i, i), 200), sinks.back()).ok());
  }
  // Wait until they are running and hold blocks.
  for (int i = 0; i < 2000 && engine->Stats().generation_tokens < 6; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_GT(engine->Stats().kv_blocks_used, 0);
  for (int i = 0; i < 3; ++i) engine->Cancel({kDefaultTenantName, "c" + std::to_string(i)});
  engine->Cancel({kDefaultTenantName, "unknown"});
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status().ok());
    EXPECT_TRUE(sink->aborted());
    EXPECT_LT(sink->tokens().size(), 200u);
  }
  for (int i = 0; i < 1000 && engine->Stats().kv_blocks_used != 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
  EXPECT_EQ(engine->Stats().running, 0);
}

// Text: the deltas of a model with a real tokenizer concatenate to the
// decoded output, and a stop string is cut out (never shown in part).
TEST(EngineTextTest, TextDeltasAndStopStrings) {
  const std::string dir = (fs::temp_directory_path() / ("tern-engine-text-" + std::to_string(getpid()))).string();
  const std::string cmd = std::string(TERN_BIN_DIR) + "/tern-mkmodel --arch llama --preset tiny --seed 3 --tokenizer " +
                          TERN_TEST_DATA_DIR + "/tokenizers/llama2 --out " + dir + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto tokenizer = runtime::Tokenizer::FromModelDirectory(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto make_engine = [&] {
    runtime::LlmModelRunnerOptions o;
    o.model_dir = dir;
    o.block_size = 8;
    o.num_blocks = 64;
    auto runner = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), o);
    EXPECT_TRUE(runner.ok()) << runner.status();
    EngineOptions options;
    options.tokenizer = tokenizer->get();
    auto engine = Engine::Create(options, *std::move(runner));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return *std::move(engine);
  };
  auto engine = make_engine();
  const std::vector<int32_t> prompt = (*tokenizer)->Encode("The quick brown fox jumps over", true);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Greedy("free", prompt, 40), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok()) << sink->status();
  std::vector<int32_t> all = prompt;
  const std::vector<int32_t> output = sink->tokens();
  all.insert(all.end(), output.begin(), output.end());
  auto full = (*tokenizer)->Decode(all, true);
  auto head = (*tokenizer)->Decode(prompt, true);
  ASSERT_TRUE(full.ok() && head.ok());
  ASSERT_EQ(full->substr(0, head->size()), *head);
  const std::string text = sink->text();
  EXPECT_EQ(text, full->substr(head->size()));

  // A stop string taken from the middle of that text: two ASCII letters.
  size_t at = std::string::npos;
  for (size_t i = text.size() / 3; i + 1 < text.size(); ++i) {
    if (std::isalpha(static_cast<unsigned char>(text[i])) && std::isalpha(static_cast<unsigned char>(text[i + 1]))) {
      at = i;
      break;
    }
  }
  if (at == std::string::npos) GTEST_SKIP() << "no ASCII pair in the random model's text: " << text;
  const std::string stop = text.substr(at, 2);
  EngineRequest r = Greedy("stop", prompt, 40);
  r.sampling.stop = {stop};
  auto stopped = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), stopped).ok());
  ASSERT_TRUE(stopped->WaitDone());
  ASSERT_TRUE(stopped->status().ok());
  EXPECT_EQ(stopped->text(), text.substr(0, text.find(stop)));
  EXPECT_EQ(stopped->finish(), runtime::FinishReason::kStop);
  EXPECT_EQ(stopped->stop_reason(), runtime::StopReason(stop));
  EXPECT_LT(stopped->tokens().size(), output.size());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tern::scheduler
