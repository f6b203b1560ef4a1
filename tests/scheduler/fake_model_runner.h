// FakeModelRunner: a deterministic ModelRunner for scheduler tests and the
// scheduler benchmark. It keeps a fake KV cache (the token id written at each
// slot), checks every plan the way a real runner must (block tables cover the
// tokens, block ids in range), records each plan, and "samples" the next
// token as a hash of the token ids it READS BACK from its KV cache for
// positions [0, end). So a wrong block table, a missed copy-on-write or a
// bad prefix-cache hit changes the output, and an output equal to
// NextToken(true tokens) proves the KV the scheduler arranged was right.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/backend/kv_cache_groups.h"
#include "runtime/backend/kv_retention.h"

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "runtime/runner/model_runner.h"

namespace tern::scheduler::testing {

struct RecordedSequence {
  int64_t seq_id = 0;
  std::vector<int32_t> token_ids;
  int32_t num_computed_tokens = 0;
  std::vector<int32_t> block_table;                // group 0's
  std::vector<std::vector<int32_t>> block_tables;  // every KV-cache group's
  bool sample = false;
};

struct RecordedStep {
  std::vector<RecordedSequence> sequences;
  std::vector<std::pair<int32_t, int32_t>> block_copies;
};

// A plan of one sequence computing `tokens` from position `computed` and
// sampling after them with `params` and `state` (borrowed, as the spans).
inline runtime::StepPlan OneSampledStep(int64_t seq_id, absl::Span<const int32_t> tokens, int32_t computed,
                                        absl::Span<const std::vector<int32_t>> block_tables,
                                        const runtime::SamplingParams* params,
                                        const runtime::SequenceSamplingState* state) {
  runtime::SequenceStep step;
  step.seq_id = seq_id;
  step.token_ids = tokens;
  step.num_computed_tokens = computed;
  step.block_tables = block_tables;
  step.sample = true;
  step.sampling = params;
  step.sampling_state = state;
  runtime::StepPlan plan;
  plan.sequences = {step};
  return plan;
}

class FakeModelRunner final : public runtime::ModelRunner {
 public:
  FakeModelRunner(int32_t num_blocks, int32_t block_size, int64_t vocab_size = 1000, int64_t max_context = 4096);

  // The token that follows `context` for sampling stream `stream` (what
  // Execute samples when its KV holds exactly `context`). Choices of one
  // request (streams 0, 1, ...) diverge, so sharing mistakes show.
  static int32_t NextToken(absl::Span<const int32_t> context, int64_t vocab_size, uint32_t stream = 0);

  absl::StatusOr<runtime::StepResult> Execute(const runtime::StepPlan& plan) override;
  runtime::KvCacheLayout kv_cache_layout() const override {
    return {num_blocks_, block_size_, groups_ != nullptr ? groups_->num_groups() : 1};
  }
  int64_t vocab_size() const override { return vocab_size_; }
  int64_t max_context_length() const override { return max_context_; }

  // With KV-cache groups (borrowed), the runner offers them to the scheduler,
  // expects one block table per group, and reads back, for a sample at
  // `end`, the RetainedPositions of each group's retention through that
  // group's table: a freed (-1) block is an error if ever written or read.
  // What it samples is NextToken of the tokens read, group after group.
  // Set before a scheduler reads the layout.
  void set_groups(const runtime::KvCacheGroups* groups) { groups_ = groups; }
  const runtime::KvCacheGroups* kv_cache_groups() const override { return groups_; }
  // The positions of [0, end) a sample at `end` reads under `retention`: the
  // sinks and everything from FreeBefore(end - 1) on; every position when
  // `retention` is null. NextToken of the tokens there is what it samples.
  static std::vector<int32_t> RetainedPositions(const runtime::KvRetention* retention, int32_t end);
  // The tokens of `tokens[0, end)` a sample at `end` reads under `groups`
  // (null: one group keeping every token), group after group.
  static std::vector<int32_t> ReadContext(const runtime::KvCacheGroups* groups, absl::Span<const int32_t> tokens,
                                          int32_t end);

  void set_record(bool record) { record_ = record; }
  // A sequence whose context holds `token` cannot be sampled (as a row with
  // a NaN logit): its output carries INVALID_ARGUMENT. -1 (default): none.
  void set_poison_token(int32_t token) { poison_token_ = token; }
  const std::vector<RecordedStep>& steps() const { return steps_; }

 private:
  int32_t num_blocks_, block_size_;
  int64_t vocab_size_, max_context_;
  bool record_ = true;
  int32_t poison_token_ = -1;
  const runtime::KvCacheGroups* groups_ = nullptr;
  std::vector<int32_t> kv_;  // [num_blocks * block_size] token id at each slot, -1 unwritten
  std::vector<int32_t> context_;
  std::vector<RecordedStep> steps_;
};

// A FakeModelRunner(64, 4, 1000, 512) whose every step blocks until Open(),
// so requests pile up or an engine looks hung. WaitEntered returns once a
// step has begun.
class GatedRunner final : public runtime::ModelRunner {
 public:
  GatedRunner() : inner_(64, 4, 1000, 512) {}
  absl::StatusOr<runtime::StepResult> Execute(const runtime::StepPlan& plan) override {
    {
      absl::MutexLock lock(&mu_);
      entered_ = true;
      mu_.Await(absl::Condition(&open_));
    }
    return inner_.Execute(plan);
  }
  runtime::KvCacheLayout kv_cache_layout() const override { return inner_.kv_cache_layout(); }
  int64_t vocab_size() const override { return inner_.vocab_size(); }
  int64_t max_context_length() const override { return inner_.max_context_length(); }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  void WaitEntered() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&entered_));
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool entered_ ABSL_GUARDED_BY(mu_) = false;
  FakeModelRunner inner_;
};

}  // namespace tern::scheduler::testing
