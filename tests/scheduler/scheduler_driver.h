// What the scheduler tests share: a Scheduler and a FakeModelRunner stepped
// together (Driver: plain steps, or steps planned ahead as the engine's
// async scheduling runs them), the fake model's reference outputs, tenants,
// options, and KV retentions for the retention and KV-cache group tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/backend/kv_cache_groups.h"
#include "runtime/backend/kv_retention.h"
#include "scheduler/scheduler.h"
#include "tests/scheduler/fake_model_runner.h"

namespace tern::scheduler::scheduler_test {

using testing::FakeModelRunner;
using testing::RecordedSequence;
using testing::RecordedStep;

inline constexpr int64_t kVocab = 1000;

inline std::vector<int32_t> Prompt(int32_t n, int32_t start = 1) {
  std::vector<int32_t> v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

// What a request produces alone, by the fake model's rule.
inline std::vector<int32_t> Reference(std::vector<int32_t> tokens, int32_t max_tokens, uint32_t stream = 0) {
  std::vector<int32_t> out;
  for (int32_t i = 0; i < max_tokens; ++i) {
    const int32_t t = FakeModelRunner::NextToken(tokens, kVocab, stream);
    out.push_back(t);
    tokens.push_back(t);
  }
  return out;
}

inline Tenant MakeTenant(const std::string& name, double weight = 1.0, int max_concurrent = 0) {
  Tenant t;
  t.name = name;
  t.weight = weight;
  t.max_concurrent_requests = max_concurrent;
  return t;
}

// A Scheduler and a FakeModelRunner, stepped together; collects outputs.
class Driver {
 public:
  Driver(int32_t num_blocks, int32_t block_size, SchedulerOptions options)
      : runner_(num_blocks, block_size, kVocab, 4096) {
    options.max_context_length = 4096;
    runner_.set_groups(options.kv_groups);
    scheduler_ = std::make_unique<Scheduler>(options, runner_.kv_cache_layout());
  }

  SequenceGroup* Add(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens,
                     const Tenant* tenant = nullptr, int32_t priority = 0, int32_t n = 1) {
    SequenceGroup::Options o;
    o.request_id = id;
    o.tenant = tenant != nullptr ? tenant : &default_tenant_;
    o.priority = priority;
    o.sampling.temperature = 0;
    o.sampling.max_tokens = max_tokens;
    o.sampling.n = n;
    o.arrival_time = absl::UnixEpoch() + absl::Seconds(next_arrival_++);
    SequenceGroup* g = scheduler_->Add(std::move(o), std::move(prompt), /*seed=*/1);
    seq0_of_[g->sequences()[0]->seq_id()] = id;
    return g;
  }

  // A group whose sequences are `prefix` + each suffix (branch i, stream i).
  SequenceGroup* AddGang(const std::string& id, std::vector<int32_t> prefix,
                         std::vector<std::vector<int32_t>> suffixes, int32_t max_tokens,
                         const Tenant* tenant = nullptr) {
    SequenceGroup::Options o;
    o.request_id = id;
    o.tenant = tenant != nullptr ? tenant : &default_tenant_;
    o.sampling.temperature = 0;
    o.sampling.max_tokens = max_tokens;
    o.arrival_time = absl::UnixEpoch() + absl::Seconds(next_arrival_++);
    std::vector<BranchSpec> branches;
    for (size_t i = 0; i < suffixes.size(); ++i) branches.push_back({int32_t(i), suffixes[i], o.sampling});
    SequenceGroup* g = scheduler_->AddGroup(std::move(o), std::move(prefix), std::move(branches), /*seed=*/1);
    seq0_of_[g->sequences()[0]->seq_id()] = id;
    return g;
  }

  // Async scheduling: each step launched, the next planned ahead while it
  // "runs" (Scheduler::ScheduleAhead), then collected and applied after the
  // step ahead is launched, as the engine does.
  void set_plan_ahead(bool on) { plan_ahead_ = on; }
  int steps_planned_ahead() const { return steps_planned_ahead_; }
  bool launched() const { return launched_; }

  // Runs one step; returns what ran.
  const RecordedStep& Step() {
    if (plan_ahead_) return StepAhead();
    const ScheduleOutput& out = scheduler_->Schedule();
    for (int64_t id : out.preempted) preempted_.push_back(id);
    auto result = runner_.Execute(out.plan);
    EXPECT_TRUE(result.ok()) << result.status();
    ApplyResult(*result);
    return runner_.steps().back();
  }

  // Plan ahead, collect, launch the plan ahead, apply: the step collected is
  // the one recorded.
  const RecordedStep& StepAhead() {
    if (!launched_) {
      const ScheduleOutput& out = scheduler_->Schedule();
      for (int64_t id : out.preempted) preempted_.push_back(id);
      EXPECT_TRUE(runner_.Launch(out.plan).ok());
      launched_ = true;
    }
    const ScheduleOutput* ahead = scheduler_->ScheduleAhead();
    auto result = runner_.Collect();
    EXPECT_TRUE(result.ok()) << result.status();
    const size_t collected = runner_.steps().size() - 1;
    launched_ = false;
    if (ahead != nullptr) {
      ++steps_planned_ahead_;
      scheduler_->CountCollectedSamples(*result);
      const absl::Status launched = runner_.Launch(ahead->plan);
      EXPECT_TRUE(launched.ok()) << launched;
      launched_ = launched.ok();
    }
    ApplyResult(*result);
    return runner_.steps()[collected];
  }

  void ApplyResult(const runtime::StepResult& result) {
    auto outcome = scheduler_->Apply(result);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    for (SequenceGroup* g : outcome->updated) Collect(*g);
    for (auto& g : outcome->finished) {
      Collect(*g);
      finished_at_[g->request_id()] = step_;
      finished_.push_back(std::move(g));
    }
    for (FailedGroup& f : outcome->failed) {
      failed_[f.group->request_id()] = f.status;
      finished_.push_back(std::move(f.group));
    }
    ++step_;
  }

  void RunUntilIdle(int max_steps = 10000) {
    for (int i = 0; i < max_steps && (scheduler_->HasWork() || launched_); ++i) Step();
    ASSERT_FALSE(scheduler_->HasWork());
    ASSERT_FALSE(launched_);
  }

  std::vector<int32_t> Output(const std::string& id, int32_t index = 0) { return outputs_[id][index]; }

  Scheduler& scheduler() { return *scheduler_; }
  FakeModelRunner& runner() { return runner_; }
  const std::vector<int64_t>& preempted() const { return preempted_; }
  std::map<std::string, int>& finished_at() { return finished_at_; }
  const std::map<std::string, absl::Status>& failed() const { return failed_; }
  const std::string& RequestOf(int64_t seq0) { return seq0_of_[seq0]; }

 private:
  void Collect(SequenceGroup& g) {
    for (auto& seq : g.sequences()) {
      auto& dst = outputs_[g.request_id()][seq->index()];
      dst.insert(dst.end(), seq->pending().token_ids.begin(), seq->pending().token_ids.end());
      seq->pending().token_ids.clear();
    }
  }

  FakeModelRunner runner_;
  std::unique_ptr<Scheduler> scheduler_;
  Tenant default_tenant_ = MakeTenant("default");
  int64_t next_arrival_ = 0;
  int step_ = 0;
  std::map<std::string, std::map<int32_t, std::vector<int32_t>>> outputs_;
  std::map<int64_t, std::string> seq0_of_;
  std::vector<int64_t> preempted_;
  std::map<std::string, int> finished_at_;
  std::map<std::string, absl::Status> failed_;
  std::vector<std::unique_ptr<SequenceGroup>> finished_;
  bool plan_ahead_ = false;
  bool launched_ = false;
  int steps_planned_ahead_ = 0;
};

inline SchedulerOptions Options(int32_t max_seqs, int32_t budget, bool caching = true) {
  SchedulerOptions o;
  o.max_num_seqs = max_seqs;
  o.max_num_batched_tokens = budget;
  o.enable_prefix_caching = caching;
  return o;
}

inline std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A 4-token sink and a 10-token band (band_min[n] = n - 10).
inline runtime::KvRetention SinkAndBand(int32_t max_context = 4096) {
  std::vector<int32_t> band_min(size_t(max_context) + 1, 0);
  for (int32_t n = 1; n <= max_context; ++n) band_min[size_t(n)] = std::max(0, n - 10);
  return runtime::KvRetention::Create(4, band_min);
}

// What a request produces alone when each sample reads the retained
// positions of every group only (FakeModelRunner::ReadContext).
inline std::vector<int32_t> GroupedReference(const runtime::KvCacheGroups& groups, std::vector<int32_t> tokens,
                                      int32_t max_tokens, uint32_t stream = 0) {
  std::vector<int32_t> out;
  for (int32_t i = 0; i < max_tokens; ++i) {
    const int32_t t =
        FakeModelRunner::NextToken(FakeModelRunner::ReadContext(&groups, tokens, int32_t(tokens.size())), kVocab, stream);
    out.push_back(t);
    tokens.push_back(t);
  }
  return out;
}

inline SchedulerOptions RetainingOptions(const runtime::KvCacheGroups* groups, int32_t max_seqs, int32_t budget,
                                  bool caching = true) {
  SchedulerOptions o = Options(max_seqs, budget, caching);
  o.kv_groups = groups;
  return o;
}

// Group 0: a 4-token sink and a 10-token band; group 1: the same sink and a
// 30-token band (band_min[n] = n - 30): layers that read further back.
inline runtime::KvCacheGroups NarrowAndWide(int32_t max_context = 4096) {
  std::vector<int32_t> wide(size_t(max_context) + 1, 0);
  for (int32_t n = 1; n <= max_context; ++n) wide[size_t(n)] = std::max(0, n - 30);
  runtime::KvCacheGroups groups;
  groups.layer_group = {0, 1};
  groups.retention.emplace_back(SinkAndBand(max_context));
  groups.retention.emplace_back(runtime::KvRetention::Create(4, wide));
  return groups;
}

// The union rule: what one table for both groups keeps (the wider band).
inline runtime::KvCacheGroups UnionOf(const runtime::KvCacheGroups& groups) {
  return runtime::KvCacheGroups::Single(2, *groups.retention[1]);
}

}  // namespace tern::scheduler::scheduler_test
