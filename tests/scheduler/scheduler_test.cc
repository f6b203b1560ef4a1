// Scheduler timeline tests: a Scheduler driven step by step against the
// FakeModelRunner, asserting what each step ran (steps planned ahead:
// schedule_ahead_test.cc).
#include "scheduler/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/backend/kv_retention.h"
#include "tests/scheduler/fake_model_runner.h"
#include "tests/scheduler/scheduler_driver.h"

namespace tern::scheduler {
namespace {

using namespace scheduler_test;  // NOLINT: the shared helpers of this test binary

TEST(SchedulerTest, ChunkedPrefillInterleavesWithDecode) {
  Driver d(64, 4, Options(8, 8));
  SequenceGroup* a = d.Add("a", Prompt(3), 6);
  {
    const RecordedStep& s = d.Step();  // a's whole prompt
    ASSERT_EQ(s.sequences.size(), 1u);
    EXPECT_EQ(s.sequences[0].token_ids, Prompt(3));
    EXPECT_TRUE(s.sequences[0].sample);
  }
  SequenceGroup* b = d.Add("b", Prompt(20, 100), 2);
  const int64_t a_id = a->sequences()[0]->seq_id(), b_id = b->sequences()[0]->seq_id();
  // Decode of a first, then b's prompt in chunks of what the budget leaves: 7, 7, 6.
  const int32_t chunks[] = {7, 7, 6};
  int32_t b_done = 0;
  for (int32_t chunk : chunks) {
    const RecordedStep& s = d.Step();
    ASSERT_EQ(s.sequences.size(), 2u);
    EXPECT_EQ(s.sequences[0].seq_id, a_id);
    EXPECT_EQ(s.sequences[0].token_ids.size(), 1u);
    EXPECT_TRUE(s.sequences[0].sample);
    EXPECT_EQ(s.sequences[1].seq_id, b_id);
    EXPECT_EQ(s.sequences[1].num_computed_tokens, b_done);
    EXPECT_EQ(int32_t(s.sequences[1].token_ids.size()), chunk);
    EXPECT_EQ(s.sequences[1].sample, b_done + chunk == 20);
    b_done += chunk;
  }
  {
    const RecordedStep& s = d.Step();  // both decode
    ASSERT_EQ(s.sequences.size(), 2u);
    EXPECT_EQ(s.sequences[0].token_ids.size(), 1u);
    EXPECT_EQ(s.sequences[1].token_ids.size(), 1u);
  }
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("a"), Reference(Prompt(3), 6));
  EXPECT_EQ(d.Output("b"), Reference(Prompt(20, 100), 2));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(SchedulerTest, DecodesGoFirstEvenBehindALongerRunningPrefill) {
  // A high-priority long prompt is being prefilled in chunks; a lower
  // priority decode still gets its token each step before the chunk.
  Driver d(64, 4, Options(8, 4));
  d.Add("low", Prompt(2), 8, nullptr, /*priority=*/0);
  d.Step();
  SequenceGroup* high = d.Add("high", Prompt(12, 50), 1, nullptr, /*priority=*/5);
  const int64_t high_id = high->sequences()[0]->seq_id();
  for (int i = 0; i < 4; ++i) {
    const RecordedStep& s = d.Step();
    ASSERT_EQ(s.sequences.size(), 2u);
    EXPECT_EQ(s.sequences[0].token_ids.size(), 1u);  // the decode
    EXPECT_EQ(s.sequences[1].seq_id, high_id);
    EXPECT_EQ(s.sequences[1].token_ids.size(), 3u);
  }
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("high"), Reference(Prompt(12, 50), 1));
  EXPECT_EQ(d.Output("low"), Reference(Prompt(2), 8));
}

TEST(SchedulerTest, PreemptsNewestUnderBlockPressureAndResumesExactly) {
  for (bool caching : {false, true}) {
    SCOPED_TRACE(caching ? "prefix caching on" : "prefix caching off");
    // Two requests each growing to 4 + 12 - 1 = 15 positions = 8 blocks of 2;
    // the cache has 10 blocks, so the newer one must be preempted.
    Driver d(10, 2, Options(8, 64, caching));
    SequenceGroup* a = d.Add("a", Prompt(4), 12);
    SequenceGroup* b = d.Add("b", Prompt(4, 40), 12);
    const int64_t b_id = b->sequences()[0]->seq_id();
    const int64_t a_id = a->sequences()[0]->seq_id();
    // Find the step where b is preempted, then check it comes back with
    // all its tokens and computes from where the cache lets it.
    int preempt_step = -1;
    for (int step = 0; step < 200 && d.scheduler().HasWork(); ++step) {
      const size_t before = d.preempted().size();
      const RecordedStep& s = d.Step();
      if (d.preempted().size() > before && preempt_step < 0) {
        preempt_step = step;
        EXPECT_EQ(d.preempted()[before], b_id);  // the newest goes
        for (const RecordedSequence& r : s.sequences) EXPECT_NE(r.seq_id, b_id);
      }
    }
    ASSERT_FALSE(d.scheduler().HasWork());
    ASSERT_GE(preempt_step, 0);
    for (int64_t id : d.preempted()) EXPECT_EQ(id, b_id);
    // The resumption of b: its first step after the preemption computes its
    // prompt + the outputs it had as one chunk.
    const auto& steps = d.runner().steps();
    bool resumed = false;
    for (size_t i = preempt_step + 1; i < steps.size() && !resumed; ++i) {
      for (const RecordedSequence& r : steps[i].sequences) {
        if (r.seq_id != b_id) continue;
        resumed = true;
        EXPECT_GT(r.token_ids.size(), 1u);
        EXPECT_TRUE(r.sample);
        if (!caching) {
          EXPECT_EQ(r.num_computed_tokens, 0);
        }
      }
    }
    EXPECT_TRUE(resumed);
    (void)a_id;
    EXPECT_EQ(d.Output("a"), Reference(Prompt(4), 12));
    EXPECT_EQ(d.Output("b"), Reference(Prompt(4, 40), 12));
    EXPECT_EQ(d.scheduler().stats().preemptions, int64_t(d.preempted().size()));
    EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
  }
}

TEST(SchedulerTest, PreemptsLowerPriorityBeforeNewer) {
  Driver d(10, 2, Options(8, 64, false));
  SequenceGroup* low = d.Add("low", Prompt(4), 12, nullptr, /*priority=*/-1);
  d.Add("high", Prompt(4, 40), 12, nullptr, /*priority=*/1);  // newer but more important
  d.RunUntilIdle();
  ASSERT_FALSE(d.preempted().empty());
  for (int64_t id : d.preempted()) EXPECT_EQ(id, low->sequences()[0]->seq_id());
  EXPECT_LT(d.finished_at()["high"], d.finished_at()["low"]);
  EXPECT_EQ(d.Output("low"), Reference(Prompt(4), 12));
  EXPECT_EQ(d.Output("high"), Reference(Prompt(4, 40), 12));
}

TEST(SchedulerTest, PrefixCacheHitSkipsComputedBlocks) {
  Driver d(64, 4, Options(8, 64));
  const Tenant acme = MakeTenant("acme"), beta = MakeTenant("beta");
  d.Add("a", Prompt(10), 2, &acme);
  d.RunUntilIdle();
  // Same first 8 tokens (2 full blocks), different tail.
  std::vector<int32_t> prompt_b = Prompt(8);
  prompt_b.push_back(500);
  prompt_b.push_back(501);
  SequenceGroup* b = d.Add("b", prompt_b, 2, &acme);
  const RecordedStep& s = d.Step();
  ASSERT_EQ(s.sequences.size(), 1u);
  EXPECT_EQ(s.sequences[0].num_computed_tokens, 8);
  EXPECT_EQ(s.sequences[0].token_ids, (std::vector<int32_t>{500, 501}));
  EXPECT_EQ(d.runner().steps()[0].sequences[0].block_table[0], s.sequences[0].block_table[0]);
  EXPECT_EQ(d.runner().steps()[0].sequences[0].block_table[1], s.sequences[0].block_table[1]);
  EXPECT_EQ(b->cached_prompt_tokens(), 8);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("b"), Reference(prompt_b, 2));

  // Another tenant with the same prompt shares nothing.
  SequenceGroup* c = d.Add("c", prompt_b, 2, &beta);
  EXPECT_EQ(d.Step().sequences[0].num_computed_tokens, 0);
  EXPECT_EQ(c->cached_prompt_tokens(), 0);
  d.RunUntilIdle();

  // A prompt entirely in the cache still recomputes its last token.
  SequenceGroup* e = d.Add("e", Prompt(8), 3, &acme);
  const RecordedStep& se = d.Step();
  EXPECT_EQ(se.sequences[0].num_computed_tokens, 7);
  EXPECT_EQ(se.sequences[0].token_ids, std::vector<int32_t>{8});
  EXPECT_EQ(e->cached_prompt_tokens(), 7);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("e"), Reference(Prompt(8), 3));
  const BlockManagerStats stats = d.scheduler().block_manager().stats();
  EXPECT_GT(stats.prefix_hits, 0);
  EXPECT_EQ(stats.num_used, 0);
}

TEST(SchedulerTest, FullPrefixHitOnABlockInUseCopiesItBeforeRecomputingTheLastToken) {
  Driver d(64, 4, Options(8, 64));
  SequenceGroup* a = d.Add("a", Prompt(8), 6);
  d.Step();  // a computes its 8 prompt tokens: 2 full blocks, both cached
  const std::vector<int32_t> a_blocks = a->sequences()[0]->block_table();
  SequenceGroup* b = d.Add("b", Prompt(8), 3);
  const RecordedStep& s = d.Step();
  ASSERT_EQ(s.sequences.size(), 2u);
  const RecordedSequence& rb = s.sequences[1];
  EXPECT_EQ(rb.seq_id, b->sequences()[0]->seq_id());
  EXPECT_EQ(rb.num_computed_tokens, 7);
  EXPECT_EQ(rb.block_table[0], a_blocks[0]);  // shared, untouched
  EXPECT_NE(rb.block_table[1], a_blocks[1]);  // written: a private copy
  ASSERT_EQ(s.block_copies.size(), 1u);
  EXPECT_EQ(s.block_copies[0], std::make_pair(a_blocks[1], rb.block_table[1]));
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("a"), Reference(Prompt(8), 6));
  EXPECT_EQ(d.Output("b"), Reference(Prompt(8), 3));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

// A whole prompt found in the cache, its blocks free (ref 1 once matched):
// the last token is recomputed into a private copy of the last block, so
// the published block keeps the bytes every later hit reads.
TEST(SchedulerTest, FullPrefixHitNeverWritesAPublishedBlock) {
  Driver d(64, 4, Options(8, 64));
  d.Add("a", Prompt(8), 1);
  const std::vector<int32_t> published = d.Step().sequences[0].block_table;  // a finishes
  ASSERT_EQ(published.size(), 2u);
  const BlockManager& blocks = d.scheduler().block_manager();
  for (int32_t b : published) {
    ASSERT_EQ(blocks.ref_count(b), 0);
    ASSERT_TRUE(blocks.block_hash(b).has_value());
  }
  const uint64_t last_hash = *blocks.block_hash(published[1]);
  for (const char* id : {"e", "f"}) {
    SCOPED_TRACE(id);
    SequenceGroup* g = d.Add(id, Prompt(8), 3);
    const RecordedStep& s = d.Step();
    ASSERT_EQ(s.sequences.size(), 1u);
    const RecordedSequence& rs = s.sequences[0];
    EXPECT_EQ(rs.num_computed_tokens, 7);
    EXPECT_EQ(g->cached_prompt_tokens(), 7);
    // Every slot the step wrote lies outside the published blocks.
    for (int32_t p = rs.num_computed_tokens; p < rs.num_computed_tokens + int32_t(rs.token_ids.size()); ++p) {
      const int32_t written = rs.block_table[p / 4];
      EXPECT_NE(written, published[0]) << "position " << p;
      EXPECT_NE(written, published[1]) << "position " << p;
    }
    EXPECT_EQ(rs.block_table[0], published[0]);  // read from the cache
    ASSERT_EQ(s.block_copies.size(), 1u);
    EXPECT_EQ(s.block_copies[0], std::make_pair(published[1], rs.block_table[1]));
    EXPECT_EQ(blocks.block_hash(published[1]), last_hash);
    d.RunUntilIdle();
    EXPECT_EQ(d.Output(id), Reference(Prompt(8), 3));
  }
  EXPECT_EQ(blocks.stats().num_used, 0);
  EXPECT_EQ(blocks.stats().cow_copies, 2);
}

TEST(SchedulerTest, ForkSharesBlocksUntilAWrite) {
  Driver d(64, 4, Options(8, 64));
  SequenceGroup* g = d.Add("g", Prompt(6), 5, nullptr, 0, /*n=*/2);
  {
    const RecordedStep& s = d.Step();  // sequence 0 alone, all but the last prompt token
    ASSERT_EQ(s.sequences.size(), 1u);
    EXPECT_EQ(s.sequences[0].token_ids, Prompt(5));
    EXPECT_FALSE(s.sequences[0].sample);
  }
  {
    const RecordedStep& s = d.Step();  // the fork: both compute token 5 and sample
    ASSERT_EQ(s.sequences.size(), 2u);
    ASSERT_EQ(g->sequences().size(), 2u);
    for (const RecordedSequence& r : s.sequences) {
      EXPECT_EQ(r.num_computed_tokens, 5);
      EXPECT_EQ(r.token_ids, std::vector<int32_t>{6});
      EXPECT_TRUE(r.sample);
    }
    // The full first block stays shared; the partial second block is copied once.
    EXPECT_EQ(s.sequences[0].block_table[0], s.sequences[1].block_table[0]);
    EXPECT_NE(s.sequences[0].block_table[1], s.sequences[1].block_table[1]);
    ASSERT_EQ(s.block_copies.size(), 1u);
    EXPECT_EQ(d.scheduler().block_manager().ref_count(s.sequences[0].block_table[0]), 2);
  }
  {
    const RecordedStep& s = d.Step();  // plain decodes: no more copies
    EXPECT_TRUE(s.block_copies.empty());
  }
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("g", 0), Reference(Prompt(6), 5, 0));
  EXPECT_EQ(d.Output("g", 1), Reference(Prompt(6), 5, 1));
  EXPECT_NE(d.Output("g", 0), d.Output("g", 1));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(SchedulerTest, TenantsShareTokensByWeightUnderSaturation) {
  Driver d(1024, 4, Options(4, 64, false));
  const Tenant light = MakeTenant("light", 1.0), heavy = MakeTenant("heavy", 3.0);
  std::map<std::string, int32_t> queued = {{"light", 0}, {"heavy", 0}};
  std::map<int64_t, std::string> tenant_of;
  int next = 0;
  auto top_up = [&] {
    for (const Tenant* t : {&light, &heavy}) {
      while (d.scheduler().tenant_queues().Find(t->name) == nullptr ||
             d.scheduler().tenant_queues().Find(t->name)->waiting.size() < 4) {
        SequenceGroup* g = d.Add(t->name + std::to_string(next), Prompt(4, next % 100), 16, t);
        tenant_of[g->sequences()[0]->seq_id()] = t->name;
        ++next;
      }
    }
  };
  std::map<std::string, int64_t> tokens;
  for (int step = 0; step < 1500; ++step) {
    top_up();
    for (const RecordedSequence& r : d.Step().sequences) tokens[tenant_of[r.seq_id]] += r.token_ids.size();
  }
  ASSERT_GT(tokens["light"], 0);
  const double ratio = double(tokens["heavy"]) / double(tokens["light"]);
  EXPECT_NEAR(ratio, 3.0, 0.15) << "heavy " << tokens["heavy"] << " light " << tokens["light"];
  std::printf("tokens: heavy %ld light %ld ratio %.4f\n", long(tokens["heavy"]), long(tokens["light"]), ratio);
}

TEST(SchedulerTest, AnIdleTenantBanksNoCredit) {
  Driver d(1024, 4, Options(4, 64, false));
  const Tenant early = MakeTenant("early"), late = MakeTenant("late");
  std::map<int64_t, std::string> tenant_of;
  int next = 0;
  auto top_up = [&](const Tenant& t) {
    const auto* state = d.scheduler().tenant_queues().Find(t.name);
    while (state == nullptr || state->waiting.size() < 4) {
      SequenceGroup* g = d.Add(t.name + std::to_string(next), Prompt(4, next % 100), 8, &t);
      tenant_of[g->sequences()[0]->seq_id()] = t.name;
      ++next;
      state = d.scheduler().tenant_queues().Find(t.name);
    }
  };
  for (int step = 0; step < 300; ++step) {
    top_up(early);
    d.Step();
  }
  // "late" arrives after "early" was served alone for 300 steps; from now on
  // they share equally instead of "late" taking everything to catch up.
  std::map<std::string, int64_t> tokens;
  for (int step = 0; step < 100; ++step) {
    top_up(early);
    top_up(late);
    for (const RecordedSequence& r : d.Step().sequences) tokens[tenant_of[r.seq_id]] += r.token_ids.size();
  }
  ASSERT_GT(tokens["late"], 0);
  EXPECT_NEAR(double(tokens["early"]) / double(tokens["late"]), 1.0, 0.25)
      << "early " << tokens["early"] << " late " << tokens["late"];
}

TEST(SchedulerTest, TenantAtItsConcurrencyLimitWaitsWithoutSlowingOthers) {
  const Tenant capped = MakeTenant("capped", 1.0, 1), free_tenant = MakeTenant("free");
  std::map<std::string, int> alone;
  {
    Driver d(256, 4, Options(8, 64, false));
    for (int i = 0; i < 3; ++i) d.Add("f" + std::to_string(i), Prompt(5, 10 * i), 6 + i, &free_tenant);
    d.RunUntilIdle();
    alone = d.finished_at();
  }
  Driver d(256, 4, Options(8, 64, false));
  for (int i = 0; i < 3; ++i) d.Add("c" + std::to_string(i), Prompt(5, 200 + i), 4, &capped);
  for (int i = 0; i < 3; ++i) d.Add("f" + std::to_string(i), Prompt(5, 10 * i), 6 + i, &free_tenant);
  while (d.scheduler().HasWork()) {
    d.Step();
    const auto* state = d.scheduler().tenant_queues().Find("capped");
    ASSERT_NE(state, nullptr);
    EXPECT_LE(state->active_requests, 1);
  }
  for (int i = 0; i < 3; ++i) {
    const std::string f = "f" + std::to_string(i);
    EXPECT_EQ(d.finished_at()[f], alone[f]) << f;
    EXPECT_EQ(d.Output(f), Reference(Prompt(5, 10 * i), 6 + i));
  }
  // The capped requests ran one after another.
  EXPECT_LT(d.finished_at()["c0"], d.finished_at()["c1"]);
  EXPECT_LT(d.finished_at()["c1"], d.finished_at()["c2"]);
}

TEST(SchedulerTest, MaxNumSeqsBoundsTheBatch) {
  Driver d(256, 4, Options(2, 64));
  for (int i = 0; i < 5; ++i) d.Add("r" + std::to_string(i), Prompt(3, 10 * i), 3);
  while (d.scheduler().HasWork()) EXPECT_LE(d.Step().sequences.size(), 2u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(d.Output("r" + std::to_string(i)), Reference(Prompt(3, 10 * i), 3));
}

TEST(SchedulerTest, AbortFreesEveryBlock) {
  Driver d(64, 4, Options(8, 64));
  d.Add("a", Prompt(9), 20, nullptr, 0, /*n=*/3);
  d.Add("b", Prompt(30, 300), 5);
  for (int i = 0; i < 4; ++i) d.Step();
  EXPECT_GT(d.scheduler().block_manager().stats().num_used, 0);
  EXPECT_EQ(d.scheduler().Abort({"other", "a"}), nullptr) << "another tenant's request of the same id";
  auto a = d.scheduler().Abort({"default", "a"});
  ASSERT_NE(a, nullptr);
  for (const auto& seq : a->sequences()) EXPECT_TRUE(seq->aborted());
  auto b = d.scheduler().Abort({"default", "b"});
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(d.scheduler().Abort({"default", "nope"}), nullptr);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
  EXPECT_EQ(d.scheduler().block_manager().num_free(), 64);
  EXPECT_FALSE(d.scheduler().HasWork());
  EXPECT_EQ(d.scheduler().num_running(), 0);
}

TEST(SchedulerTest, ARowThatCannotBeSampledFailsOnlyItsOwnRequest) {
  Driver d(64, 4, Options(8, 64));
  d.runner().set_poison_token(777);
  d.Add("before", Prompt(9), 6);
  d.Add("bad", Prompt(5, 775), 6, nullptr, 0, /*n=*/2);  // its prompt holds 777
  d.Add("after", Prompt(12, 100), 6);
  d.RunUntilIdle();
  ASSERT_EQ(d.failed().size(), 1u);
  ASSERT_TRUE(d.failed().count("bad"));
  const absl::Status& status = d.failed().at("bad");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("nan"), std::string::npos) << status;
  EXPECT_FALSE(d.finished_at().count("bad"));
  // The requests batched with it run to completion, token for token.
  EXPECT_EQ(d.Output("before"), Reference(Prompt(9), 6));
  EXPECT_EQ(d.Output("after"), Reference(Prompt(12, 100), 6));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
  EXPECT_EQ(d.scheduler().num_running(), 0);
}

// Also with the steps planned ahead: the failing row's request ends, the
// row planned after it is discarded, the other request runs on.
TEST(SchedulerTest, ARequestFailingMidDecodeFreesItsBlocks) {
  for (const bool ahead : {false, true}) {
    Driver d(64, 4, Options(8, 64));
    d.set_plan_ahead(ahead);
    const std::vector<int32_t> prompt = Prompt(6, 40);
    const std::vector<int32_t> expected = Reference(prompt, 8);
    // Poison the third generated token: the request fails after two tokens.
    d.runner().set_poison_token(expected[2]);
    d.Add("dies", prompt, 8);
    d.Add("lives", Prompt(7, 500), 8);
    d.RunUntilIdle();
    ASSERT_TRUE(d.failed().count("dies")) << "ahead " << ahead;
    EXPECT_EQ(d.Output("dies"), std::vector<int32_t>(expected.begin(), expected.begin() + 3)) << "ahead " << ahead;
    EXPECT_EQ(d.Output("lives"), Reference(Prompt(7, 500), 8)) << "ahead " << ahead;
    EXPECT_EQ(d.steps_planned_ahead() > 0, ahead);
    EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0) << "ahead " << ahead;
  }
}

TEST(SchedulerTest, ApplyRejectsAResultThatDoesNotMatchThePlan) {
  Driver d(64, 4, Options(8, 64));
  d.Add("a", Prompt(3), 2);
  d.scheduler().Schedule();
  runtime::StepResult wrong;  // no outputs for a sampled sequence
  EXPECT_EQ(d.scheduler().Apply(wrong).status().code(), absl::StatusCode::kInternal);
  // The step was discarded: the next one plans the same work.
  const ScheduleOutput& again = d.scheduler().Schedule();
  ASSERT_EQ(again.plan.sequences.size(), 1u);
  EXPECT_EQ(again.plan.sequences[0].num_computed_tokens, 0);
  d.scheduler().DiscardStep();
}

}  // namespace
}  // namespace tern::scheduler

namespace tern::scheduler {
namespace {

using namespace scheduler_test;  // NOLINT: the shared helpers of this test binary

TEST(SchedulerGangTest, PointsShareThePrefixBlocksOnce) {
  Driver d(64, 4, Options(16, 256));
  const std::vector<int32_t> prefix = Prompt(10);  // 2 full blocks + 2 tokens
  const std::vector<std::vector<int32_t>> suffixes = {Prompt(3, 100), Prompt(3, 200), Prompt(3, 300)};
  d.AddGang("sot", prefix, suffixes, 4);
  // Step 1: the carrier computes the prefix alone.
  const RecordedStep& first = d.Step();
  ASSERT_EQ(first.sequences.size(), 1u);
  EXPECT_EQ(first.sequences[0].token_ids.size(), 10u);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 3);
  // Step 2: every point computes only its own suffix.
  const RecordedStep& second = d.Step();
  ASSERT_EQ(second.sequences.size(), 3u);
  for (const auto& s : second.sequences) EXPECT_EQ(s.token_ids.size(), 3u);
  // 2 shared full blocks; per point its copy of the partial block and one new block.
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 2 + 3 + 3);
  d.RunUntilIdle();
  for (int32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(d.Output("sot", i), Reference(Concat(prefix, suffixes[i]), 4, i)) << "point " << i;
  }
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(SchedulerGangTest, AGangWaitsUntilAllItsPromptsFit) {
  // 8 blocks of 4: "long" holds 5 (17 positions); the gang needs 2 shared + 2 x 2 = 6 more.
  Driver d(8, 4, Options(16, 256, /*caching=*/false));
  d.Add("long", Prompt(17, 500), 3);
  d.Step();
  d.AddGang("gang", Prompt(8), {Prompt(5, 100), Prompt(5, 200)}, 2);
  // While "long" runs, the gang is not admitted (its carrier alone would fit).
  while (!d.finished_at().contains("long")) {
    const RecordedStep& step = d.Step();
    for (const auto& s : step.sequences) EXPECT_EQ(d.RequestOf(s.seq_id), "long");
  }
  d.RunUntilIdle();
  EXPECT_TRUE(d.preempted().empty());
  EXPECT_EQ(d.Output("gang", 0), Reference(Concat(Prompt(8), Prompt(5, 100)), 2, 0));
  EXPECT_EQ(d.Output("gang", 1), Reference(Concat(Prompt(8), Prompt(5, 200)), 2, 1));
}

TEST(SchedulerGangTest, AGangIsPreemptedWholeAndResumesIntact) {
  // A high-priority request arrives and grows while a gang decodes: the gang
  // is the victim, all its points at once, and recomputes its prefix once.
  // 16 blocks of 4: the gang grows to 2 + 3 x 4 = 14 blocks, the vip to 7.
  Driver d(16, 4, Options(16, 256, /*caching=*/false));
  SequenceGroup* gang = d.AddGang("gang", Prompt(8), {Prompt(2, 100), Prompt(2, 200), Prompt(2, 300)}, 12);
  d.Step();
  d.Step();
  d.Add("vip", Prompt(15, 700), 12, nullptr, /*priority=*/10);
  d.RunUntilIdle();
  ASSERT_FALSE(d.preempted().empty());
  // Every preemption took all three points together.
  std::map<int64_t, int> times;
  for (int64_t id : d.preempted()) ++times[id];
  ASSERT_EQ(times.size(), 3u) << "only part of the gang was preempted";
  EXPECT_EQ(times.begin()->second, std::prev(times.end())->second);
  (void)gang;
  for (int32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(d.Output("gang", i), Reference(Concat(Prompt(8), Prompt(2, 100 * (i + 1))), 12, i)) << "point " << i;
  }
  EXPECT_EQ(d.Output("vip"), Reference(Prompt(15, 700), 12));
}

TEST(SchedulerGangTest, TheTenantIsChargedForEveryPointToken) {
  Driver d(64, 4, Options(16, 256));
  const Tenant acme = MakeTenant("acme");
  d.AddGang("sot", Prompt(10), {Prompt(3, 100), Prompt(3, 200)}, 5, &acme);
  d.RunUntilIdle();
  // Prefix once (10), each suffix (3 + 3), and each point's fed-back outputs (4 + 4).
  EXPECT_EQ(d.scheduler().tenant_queues().Find("acme")->tokens_served, 10 + 6 + 8);
}

// ---------------------------------------------------------------------------
// KV retention (MoA spans, sliding windows): blocks no query reads again go
// back after each step; the runner reads only the retained positions.

TEST(SchedulerRetentionTest, BlocksInUseFollowThePrediction) {
  const runtime::KvRetention r = SinkAndBand();
  const runtime::KvCacheGroups groups = runtime::KvCacheGroups::Single(1, r);
  Driver d(64, 4, RetainingOptions(&groups, 8, 8, /*caching=*/false));
  SequenceGroup* a = d.Add("a", Prompt(30), 40);
  const Sequence& seq = *a->sequences()[0];
  int32_t peak = 0;
  while (d.scheduler().HasWork()) {
    d.Step();
    if (!d.scheduler().HasWork()) break;
    const int32_t computed = seq.num_computed_tokens();
    const int32_t held = (computed + 3) / 4 - r.FreedBlocks(computed, 4);
    // The table may already hold the block the next token goes into.
    const int32_t used = d.scheduler().block_manager().stats().num_used;
    EXPECT_EQ(used, seq.num_held_blocks()) << computed;
    EXPECT_TRUE(used == held || used == held + 1) << computed << ": " << used << " blocks, predicted " << held;
    peak = std::max(peak, used);
  }
  EXPECT_EQ(d.Output("a"), GroupedReference(groups, Prompt(30), 40));
  // 70 tokens would take 18 blocks; the sink block and the band take 5 or 6.
  EXPECT_LE(peak, int32_t(r.PeakBlocks(70, 4, 8)));
  EXPECT_LE(peak, 6);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(SchedulerRetentionTest, SequencesLongerThanTheCacheRunWithForksAndPrefixHits) {
  // 12 blocks of 4 tokens (48 positions): each request reaches 90 tokens.
  const runtime::KvRetention r = SinkAndBand();
  const runtime::KvCacheGroups groups = runtime::KvCacheGroups::Single(1, r);
  Driver d(12, 4, RetainingOptions(&groups, 8, 16));
  d.Add("a", Prompt(50), 40);
  d.Add("b", Prompt(50, 300), 40);
  d.Add("c", Prompt(40, 600), 20, nullptr, 0, /*n=*/2);  // two choices on a shared prefix
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("a"), GroupedReference(groups, Prompt(50), 40));
  EXPECT_EQ(d.Output("b"), GroupedReference(groups, Prompt(50, 300), 40));
  EXPECT_EQ(d.Output("c", 0), GroupedReference(groups, Prompt(40, 600), 20, 0));
  EXPECT_EQ(d.Output("c", 1), GroupedReference(groups, Prompt(40, 600), 20, 1));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);

  // In a cache with room to keep them, the same prompt again hits the cached
  // full blocks (the freed ones too: freeing keeps their hash), hit blocks
  // no query reads go back at once, and the output is the same.
  Driver big(64, 4, RetainingOptions(&groups, 8, 16));
  big.Add("p", Prompt(50), 10);
  big.RunUntilIdle();
  big.Add("p2", Prompt(50), 10);
  big.RunUntilIdle();
  EXPECT_EQ(big.Output("p2"), GroupedReference(groups, Prompt(50), 10));
  EXPECT_EQ(big.scheduler().block_manager().stats().prefix_hits, 50 / 4);
  EXPECT_EQ(big.scheduler().block_manager().stats().num_used, 0);
}

TEST(SchedulerRetentionTest, PreemptedSequencesRecomputeAndMatch) {
  // 8 blocks: three long requests cannot all hold their band at once.
  const runtime::KvRetention r = SinkAndBand();
  const runtime::KvCacheGroups groups = runtime::KvCacheGroups::Single(1, r);
  Driver d(8, 4, RetainingOptions(&groups, 8, 64, /*caching=*/false));
  d.Add("a", Prompt(20), 30);
  d.Add("b", Prompt(20, 200), 30);
  d.Add("c", Prompt(20, 400), 30, nullptr, /*priority=*/5);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("a"), GroupedReference(groups, Prompt(20), 30));
  EXPECT_EQ(d.Output("b"), GroupedReference(groups, Prompt(20, 200), 30));
  EXPECT_EQ(d.Output("c"), GroupedReference(groups, Prompt(20, 400), 30));
}

// ---------------------------------------------------------------------------
// KV-cache groups: one block table per group, each freed by its own
// retention; prefix hits, copy-on-write, forks and preemption act on every
// group's table at once.

TEST(SchedulerKvGroupsTest, EachGroupFreesWhatItsLayersNoLongerRead) {
  const runtime::KvCacheGroups groups = NarrowAndWide();
  const runtime::KvCacheGroups joined = UnionOf(groups);
  // Blocks of one group hold half the layers: the union's table, whose
  // blocks hold both, costs two of them a block.
  Driver d(64, 4, RetainingOptions(&groups, 8, 8, /*caching=*/false));
  Driver u(32, 4, RetainingOptions(&joined, 8, 8, /*caching=*/false));
  SequenceGroup* a = d.Add("a", Prompt(30), 60);
  u.Add("a", Prompt(30), 60);
  const Sequence& seq = *a->sequences()[0];
  int32_t peak = 0, union_peak = 0;
  while (d.scheduler().HasWork()) {
    d.Step();
    u.Step();
    const int32_t used = d.scheduler().block_manager().stats().num_used;
    if (d.scheduler().HasWork()) {
      EXPECT_EQ(used, seq.num_held_blocks());
      // Each group holds no more than its own retention's prediction (plus
      // the block the next token goes into).
      const int32_t computed = seq.num_computed_tokens();
      for (int32_t g = 0; g < 2; ++g) {
        const runtime::KvRetention& r = *groups.retention[size_t(g)];
        const BlockTable& table = seq.block_table(g);
        const int32_t held = int32_t(std::count_if(table.begin(), table.end(), [](int32_t b) { return b >= 0; }));
        EXPECT_LE(held, (computed + 3) / 4 - r.FreedBlocks(computed, 4) + 1) << "group " << g << " at " << computed;
      }
    }
    peak = std::max(peak, used);
    union_peak = std::max(union_peak, 2 * u.scheduler().block_manager().stats().num_used);
  }
  EXPECT_EQ(d.Output("a"), GroupedReference(groups, Prompt(30), 60));
  EXPECT_EQ(u.Output("a"), GroupedReference(joined, Prompt(30), 60));
  EXPECT_LE(peak, int32_t(groups.PeakBlocks(90, 4, 8)));
  // The narrow group gives back what the union keeps for the wide one.
  EXPECT_LT(peak, union_peak);
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(SchedulerKvGroupsTest, PrefixHitsForksAndCopiesCoverEveryGroup) {
  // A dense group beside a retaining one (a hybrid model's layers).
  runtime::KvCacheGroups groups;
  groups.layer_group = {0, 1};
  groups.retention.emplace_back(std::nullopt);
  groups.retention.emplace_back(SinkAndBand());
  Driver d(96, 4, RetainingOptions(&groups, 8, 16));
  d.Add("p", Prompt(50), 10);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("p"), GroupedReference(groups, Prompt(50), 10));
  // The same prompt again: every full block hits in both groups, each group
  // its own block.
  d.Add("p2", Prompt(50), 10);
  const RecordedStep& s = d.Step();
  ASSERT_EQ(s.sequences.size(), 1u);
  EXPECT_EQ(s.sequences[0].num_computed_tokens, 48);
  ASSERT_EQ(s.sequences[0].block_tables.size(), 2u);
  const std::vector<int32_t>& dense = s.sequences[0].block_tables[0];
  const std::vector<int32_t>& band = s.sequences[0].block_tables[1];
  for (int32_t b : band) {
    if (b >= 0) {
      EXPECT_EQ(std::count(dense.begin(), dense.end(), b), 0) << "block " << b << " in both groups";
    }
  }
  EXPECT_EQ(std::count(dense.begin(), dense.end(), kFreedBlock), 0);
  EXPECT_GT(std::count(band.begin(), band.end(), kFreedBlock), 0);
  d.RunUntilIdle();
  EXPECT_EQ(d.Output("p2"), GroupedReference(groups, Prompt(50), 10));
  EXPECT_EQ(d.scheduler().block_manager().stats().prefix_hits, 50 / 4);

  // Two choices on a shared prefix: the partial block is copied in each
  // group, the full ones shared.
  SequenceGroup* c = d.Add("c", Prompt(22, 600), 12, nullptr, 0, /*n=*/2);
  d.Step();  // the carrier's prefix, 16 of its 21 tokens
  d.Step();  // the rest of it
  const RecordedStep& fork = d.Step();
  ASSERT_EQ(fork.sequences.size(), 2u);
  EXPECT_EQ(fork.block_copies.size(), 2u);  // the partial block of each group
  for (int32_t g = 0; g < 2; ++g) {
    EXPECT_EQ(fork.sequences[0].block_tables[size_t(g)][0], fork.sequences[1].block_tables[size_t(g)][0]);
    EXPECT_NE(fork.sequences[0].block_tables[size_t(g)][5], fork.sequences[1].block_tables[size_t(g)][5]);
  }
  d.RunUntilIdle();
  EXPECT_EQ(c->sequences().size(), 2u);
  EXPECT_EQ(d.Output("c", 0), GroupedReference(groups, Prompt(22, 600), 12, 0));
  EXPECT_EQ(d.Output("c", 1), GroupedReference(groups, Prompt(22, 600), 12, 1));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

TEST(SchedulerKvGroupsTest, PreemptedSequencesGiveBackEveryGroupAndMatch) {
  const runtime::KvCacheGroups groups = NarrowAndWide();
  // 20 blocks over two groups: three long requests cannot all hold their bands.
  Driver d(20, 4, RetainingOptions(&groups, 8, 64, /*caching=*/false));
  d.Add("a", Prompt(20), 40);
  d.Add("b", Prompt(20, 200), 40);
  d.Add("c", Prompt(20, 400), 40, nullptr, /*priority=*/5);
  d.RunUntilIdle();
  EXPECT_GT(d.scheduler().stats().preemptions, 0);
  EXPECT_EQ(d.Output("a"), GroupedReference(groups, Prompt(20), 40));
  EXPECT_EQ(d.Output("b"), GroupedReference(groups, Prompt(20, 200), 40));
  EXPECT_EQ(d.Output("c"), GroupedReference(groups, Prompt(20, 400), 40));
  EXPECT_EQ(d.scheduler().block_manager().stats().num_used, 0);
}

}  // namespace
}  // namespace tern::scheduler
