// Planning ahead (async scheduling): the next step is planned while the
// pending one "runs", each sequence reserving the output it will get; every
// request gets the tokens it gets with Schedule / Apply alternating.
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "scheduler/scheduler.h"
#include "tests/scheduler/fake_model_runner.h"
#include "tests/scheduler/scheduler_driver.h"

namespace tern::scheduler {
namespace {

using namespace scheduler_test;  // NOLINT: the shared helpers of this test binary

TEST(ScheduleAheadTest, DecodingAheadGivesEveryRequestItsTokens) {
  Driver d(128, 4, Options(8, 16));
  d.set_plan_ahead(true);
  d.Add("a", Prompt(9), 20);
  d.Add("b", Prompt(30, 100), 7);  // a prefill of two chunks
  d.Add("c", Prompt(9), 12);       // a's prompt: prefix-cache hits
  d.Add("d", Prompt(5, 300), 1);   // one token: finishes in its first step
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("a"), Reference(Prompt(9), 20));
  EXPECT_EQ(d.Output("b"), Reference(Prompt(30, 100), 7));
  EXPECT_EQ(d.Output("c"), Reference(Prompt(9), 12));
  EXPECT_EQ(d.Output("d"), Reference(Prompt(5, 300), 1));
  // Steady decoding was planned ahead: most steps.
  EXPECT_GE(d.steps_planned_ahead(), 12);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
  EXPECT_EQ(d.scheduler().stats().generation_tokens, 20 + 7 + 12 + 1);
}

TEST(ScheduleAheadTest, ASequenceStoppedByEosComputesOneDiscardedRow) {
  const std::vector<int32_t> full = Reference(Prompt(7), 30);
  SchedulerOptions options = Options(8, 64);
  options.eos_token_ids = {full[9]};  // the tenth output stops a (if it did not stop earlier)
  const int32_t stop = int32_t(std::find(full.begin(), full.end(), full[9]) - full.begin());
  for (const bool ahead : {false, true}) {
    Driver d(64, 4, options);
    d.set_plan_ahead(ahead);
    d.Add("a", Prompt(7), 30);
    d.Add("b", Prompt(6, 500), 16);
    d.RunUntilIdle();
    EXPECT_EQ(d.Output("a"), std::vector<int32_t>(full.begin(), full.begin() + stop + 1)) << "ahead " << ahead;
    const std::vector<int32_t> b = Reference(Prompt(6, 500), 16);
    const auto b_stop = std::find(b.begin(), b.end(), full[9]);
    EXPECT_EQ(d.Output("b"), std::vector<int32_t>(b.begin(), b_stop == b.end() ? b.end() : b_stop + 1))
        << "ahead " << ahead;
    EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0) << "ahead " << ahead;
    if (ahead) {
      // a's row after its EOS was computed in the step planned ahead and
      // discarded: a later step holds it, without a sample kept.
      EXPECT_GT(d.steps_planned_ahead(), 0);
      EXPECT_EQ(d.scheduler().stats().generation_tokens, int64_t(stop + 1 + d.Output("b").size()));
    }
  }
}

TEST(ScheduleAheadTest, ChoicesAndGangsForkThenDecodeAhead) {
  Driver d(128, 4, Options(16, 64));
  d.set_plan_ahead(true);
  d.Add("n2", Prompt(10), 9, nullptr, 0, /*n=*/2);
  d.AddGang("gang", Prompt(8), {Prompt(3, 100), Prompt(2, 200), Prompt(5, 300)}, 11);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("n2", 0), Reference(Prompt(10), 9, 0));
  EXPECT_EQ(d.Output("n2", 1), Reference(Prompt(10), 9, 1));
  for (int32_t i = 0; i < 3; ++i) {
    const std::vector<int32_t> suffix = i == 0 ? Prompt(3, 100) : i == 1 ? Prompt(2, 200) : Prompt(5, 300);
    EXPECT_EQ(d.Output("gang", i), Reference(Concat(Prompt(8), suffix), 11, i)) << "point " << i;
  }
  EXPECT_GT(d.steps_planned_ahead(), 5);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(ScheduleAheadTest, KvGroupsFreeWhatTheyNoLongerReadAhead) {
  const runtime::KvCacheGroups groups = NarrowAndWide();
  Driver d(64, 4, RetainingOptions(&groups, 8, 16));
  d.set_plan_ahead(true);
  d.Add("a", Prompt(30), 50);
  d.Add("b", Prompt(22, 600), 40, nullptr, 0, /*n=*/2);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("a"), GroupedReference(groups, Prompt(30), 50));
  EXPECT_EQ(d.Output("b", 0), GroupedReference(groups, Prompt(22, 600), 40, 0));
  EXPECT_EQ(d.Output("b", 1), GroupedReference(groups, Prompt(22, 600), 40, 1));
  EXPECT_GT(d.steps_planned_ahead(), 20);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(ScheduleAheadTest, UnderBlockPressureItWaitsForPlanningInStep) {
  // 12 blocks of 4: three requests growing to 44 tokens each cannot all
  // stay; planning ahead stops when the free blocks do not cover every
  // sequence's next position, and the preemptions happen in sync steps.
  Driver d(12, 4, Options(8, 64, /*caching=*/false));
  d.set_plan_ahead(true);
  d.Add("a", Prompt(12), 32);
  d.Add("b", Prompt(12, 200), 32);
  d.Add("c", Prompt(12, 400), 32, nullptr, /*priority=*/5);
  d.RunUntilIdle();
  EXPECT_GT(d.scheduler().stats().preemptions, 0);
  EXPECT_GT(d.steps_planned_ahead(), 0);
  EXPECT_EQ(d.Output("a"), Reference(Prompt(12), 32));
  EXPECT_EQ(d.Output("b"), Reference(Prompt(12, 200), 32));
  EXPECT_EQ(d.Output("c"), Reference(Prompt(12, 400), 32));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(ScheduleAheadTest, AWaitingRequestStartsInTheStepAhead) {
  Driver d(64, 4, Options(8, 64));
  d.Add("a", Prompt(5), 10);
  const ScheduleOutput& first = d.scheduler().Schedule();
  ASSERT_EQ(first.plan.sequences.size(), 1u);
  d.Add("late", Prompt(5, 100), 3);
  const ScheduleOutput* ahead = d.scheduler().ScheduleAhead();
  ASSERT_NE(ahead, nullptr);
  ASSERT_EQ(ahead->plan.sequences.size(), 2u);
  EXPECT_TRUE(ahead->plan.sequences[0].input_from_last_sample);  // a's next position
  EXPECT_FALSE(ahead->plan.sequences[1].input_from_last_sample);  // late's prompt
  EXPECT_EQ(ahead->plan.sequences[1].token_ids.size(), 5u);
  EXPECT_EQ(ahead->num_started, 1);
  d.scheduler().DiscardStep();

  // Arrivals while decoding ahead: each starts in a step planned ahead, and
  // every request gets its tokens.
  Driver ahead_driver(128, 4, Options(8, 64));
  ahead_driver.set_plan_ahead(true);
  ahead_driver.Add("a", Prompt(9), 30);
  for (int i = 0; i < 6; ++i) {
    for (int step = 0; step < 3; ++step) ahead_driver.Step();
    ahead_driver.Add("r" + std::to_string(i), Prompt(4 + i, 200 + 50 * i), 8 + i);
  }
  ahead_driver.RunUntilIdle();
  EXPECT_EQ(ahead_driver.Output("a"), Reference(Prompt(9), 30));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(ahead_driver.Output("r" + std::to_string(i)), Reference(Prompt(4 + i, 200 + 50 * i), 8 + i)) << i;
  }
  // Only the first prefill and the last step of the wave are planned in step.
  EXPECT_GE(ahead_driver.steps_planned_ahead(), 25);
  EXPECT_EQ(ahead_driver.scheduler().block_manager().stats().num_used, 0);
}

TEST(ScheduleAheadTest, APromptInChunksGoesOnInTheStepAhead) {
  // Budget 8: "long"'s 40-token prompt takes six steps beside "a"'s decode.
  Driver d(64, 4, Options(8, 8));
  d.set_plan_ahead(true);
  d.Add("a", Prompt(5), 16);
  d.Step();
  d.Step();
  d.Add("long", Prompt(40, 100), 6);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("a"), Reference(Prompt(5), 16));
  EXPECT_EQ(d.Output("long"), Reference(Prompt(40, 100), 6));
  // Every step after the first is planned ahead, the chunks of "long" included.
  EXPECT_GE(d.steps_planned_ahead(), d.scheduler().stats().steps - 2);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(ScheduleAheadTest, ARequestStartedAheadOfAFailedStepRecomputesItsPrompt) {
  Driver d(64, 4, Options(8, 64));
  d.Add("a", Prompt(5), 10);
  d.Step();  // a's prefill
  d.scheduler().Schedule();
  d.Add("late", Prompt(9, 300), 4);  // prompt hits no cache; starts in the plan ahead
  const ScheduleOutput* ahead = d.scheduler().ScheduleAhead();
  ASSERT_NE(ahead, nullptr);
  ASSERT_EQ(ahead->plan.sequences.size(), 2u);
  // The pending step fails: a's request ends; late's keeps running without the blocks it took.
  std::vector<std::unique_ptr<SequenceGroup>> aborted = d.scheduler().AbortStep();
  ASSERT_EQ(aborted.size(), 1u);
  EXPECT_EQ(aborted[0]->request_id(), "a");
  SequenceGroup* late = d.scheduler().Find({"default", "late"});
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(late->sequences()[0]->num_computed_tokens(), 0);
  EXPECT_FALSE(late->sequences()[0]->holds_blocks());
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("late"), Reference(Prompt(9, 300), 4));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

// Random workloads (arrivals between steps, prompt lengths across chunks,
// shared prefixes, n = 2, EOS stops, a cache small enough to preempt): the
// same tokens with and without steps planned ahead.
TEST(ScheduleAheadTest, RandomWorkloadsGiveTheSameTokens) {
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    std::map<std::string, std::map<int32_t, std::vector<int32_t>>> outputs[2];
    int planned = 0;
    for (const bool ahead : {false, true}) {
      std::mt19937 rng(seed);
      SchedulerOptions options = Options(6, 24, /*caching=*/seed % 2 == 0);
      options.eos_token_ids = {int32_t(rng() % 1000)};
      Driver d(seed % 3 == 0 ? 18 : 96, 4, options);
      d.set_plan_ahead(ahead);
      std::vector<std::pair<std::string, int32_t>> requests;  // id, n
      for (int i = 0; i < 14; ++i) {
        const std::string id = "r" + std::to_string(i);
        const int32_t n = rng() % 4 == 0 ? 2 : 1;
        const int32_t prompt_len = 1 + int32_t(rng() % 30);
        const int32_t start = rng() % 2 == 0 ? 1 : 100 * (1 + int32_t(rng() % 5));  // shared prefixes
        d.Add(id, Prompt(prompt_len, start), 1 + int32_t(rng() % 24), nullptr, 0, n);
        requests.emplace_back(id, n);
        const int steps = int(rng() % 4);
        for (int k = 0; k < steps && (d.scheduler().HasWork() || d.launched()); ++k) d.Step();
      }
      d.RunUntilIdle();
      for (const auto& [id, n] : requests) {
        for (int32_t c = 0; c < n; ++c) outputs[ahead ? 1 : 0][id][c] = d.Output(id, c);
      }
      EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0) << "seed " << seed << ", ahead " << ahead;
      if (ahead) planned = d.steps_planned_ahead();
    }
    EXPECT_EQ(outputs[1], outputs[0]) << "seed " << seed;
    EXPECT_GT(planned, 0) << "seed " << seed;
  }
}

// A sequence with penalties is planned ahead too: the output it reserved is
// counted once its step is collected, before the step ahead samples, and
// once only (applying the step does not count it again).
TEST(ScheduleAheadTest, PenaltyCountsSeeTheCollectedTokenOnce) {
  FakeModelRunner runner(64, 4, kVocab, 4096);
  SchedulerOptions options = Options(8, 64);
  options.max_context_length = 4096;
  Scheduler scheduler(options, runner.kv_cache_layout());
  const Tenant tenant = MakeTenant("t");
  SequenceGroup::Options o;
  o.request_id = "penalized";
  o.tenant = &tenant;
  o.sampling.temperature = 0;
  o.sampling.max_tokens = 6;
  o.sampling.frequency_penalty = 0.5f;
  SequenceGroup* group = scheduler.Add(std::move(o), Prompt(5), 1);
  const Sequence& seq = *group->sequences()[0];
  ASSERT_TRUE(runner.Launch(scheduler.Schedule().plan).ok());
  const ScheduleOutput* ahead = scheduler.ScheduleAhead();
  ASSERT_NE(ahead, nullptr);
  EXPECT_TRUE(seq.has_reserved_output());
  EXPECT_TRUE(seq.sampling_state().output_counts().empty());  // not known yet
  const auto collected = runner.Collect();
  ASSERT_TRUE(collected.ok());
  const int32_t first = collected->outputs[0].token->token_id;
  scheduler.CountCollectedSamples(*collected);
  EXPECT_EQ(seq.sampling_state().output_counts().at(first), 1);
  EXPECT_EQ(seq.sampling_state().num_output_tokens(), 1);
  ASSERT_TRUE(runner.Launch(ahead->plan).ok());
  ASSERT_TRUE(scheduler.Apply(*collected).ok());
  EXPECT_EQ(seq.sampling_state().output_counts().at(first), 1);
  EXPECT_EQ(seq.tokens().back(), first);
  // The step ahead is now pending; its output is counted when applied.
  const auto second = runner.Collect();
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(scheduler.Apply(*second).ok());
  int32_t counted = 0;
  for (const auto& [token, count] : seq.sampling_state().output_counts()) counted += count;
  EXPECT_EQ(counted, 2);
  EXPECT_EQ(seq.num_output_tokens(), 2);
}

TEST(ScheduleAheadTest, AFailedStepAbortsItsRequestsAndTakesTheReservationsBack) {
  Driver d(64, 4, Options(8, 64));
  SequenceGroup* a = d.Add("a", Prompt(5), 10);
  d.Add("b", Prompt(5, 100), 10);
  d.Step();  // prefill
  d.scheduler().Schedule();
  const ScheduleOutput* ahead = d.scheduler().ScheduleAhead();
  ASSERT_NE(ahead, nullptr);
  ASSERT_EQ(ahead->plan.sequences.size(), 2u);
  EXPECT_TRUE(ahead->plan.sequences[0].input_from_last_sample);
  EXPECT_TRUE(a->sequences()[0]->has_reserved_output());
  EXPECT_EQ(a->sequences()[0]->tokens().back(), kReservedToken);
  // The pending step fails on the device: both requests end, every block is free.
  std::vector<std::unique_ptr<SequenceGroup>> aborted = d.scheduler().AbortStep();
  ASSERT_EQ(aborted.size(), 2u);
  for (const auto& group : aborted) {
    const Sequence& seq = *group->sequences()[0];
    EXPECT_FALSE(seq.has_reserved_output());
    EXPECT_EQ(seq.num_output_tokens(), 1);  // the prefill's token, not the reservation
  }
  EXPECT_FALSE(d.scheduler().has_plan_ahead());
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(ScheduleAheadTest, AStepAheadTakesTheInputTheCollectedStepSampled) {
  FakeModelRunner runner(16, 4, kVocab, 4096);
  const std::vector<int32_t> prompt = Prompt(3);
  std::vector<std::vector<int32_t>> tables = {{0, 1}};
  runtime::SamplingParams greedy;
  greedy.temperature = 0;
  runtime::SequenceSamplingState state(1, 0, prompt, runtime::OutputCounts::kUntracked);
  runtime::StepPlan plan = testing::OneSampledStep(7, prompt, 0, tables, &greedy, &state);
  runtime::SequenceStep step = plan.sequences[0];
  ASSERT_TRUE(runner.Launch(plan).ok());
  const auto first = runner.Collect();
  ASSERT_TRUE(first.ok());
  const std::vector<int32_t> reserved = {kReservedToken};
  step.token_ids = reserved;
  step.input_from_last_sample = true;
  step.num_computed_tokens = 3;
  plan.sequences = {step};
  ASSERT_TRUE(runner.Launch(plan).ok());
  const auto second = runner.Collect();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(runner.steps().back().sequences[0].token_ids, std::vector<int32_t>{first->outputs[0].token->token_id});
  EXPECT_EQ(second->outputs[0].token->token_id, Reference(prompt, 2)[1]);
  // A sequence the collected step did not sample cannot take its input from it.
  plan.sequences[0].seq_id = 8;
  EXPECT_EQ(runner.Launch(plan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(runner.Collect().status().code(), absl::StatusCode::kInvalidArgument);
  // Execute never resolves it.
  EXPECT_EQ(runner.Execute(plan).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tern::scheduler
