// ModelRunner: what the scheduler sees of a model. One call runs one step:
// the plan says, per sequence, which tokens to compute into which KV blocks
// and whether to sample; the result carries the sampled tokens.
//
// Two-phase stepping (async scheduling): Launch starts a step and Collect
// returns its result, so the engine can plan the next step between them.
// A step launched after a Collect may take a sequence's input token from
// what the collected step sampled for it (SequenceStep::
// input_from_last_sample), so it can be planned before that token is known.
//
// The plan is all the runner needs: it holds no per-sequence state of its
// own (beyond the last collected step's samples), so the scheduler may
// preempt, resume, fork or drop any sequence between steps. Pointers in a
// plan borrow from the scheduler's sequences and are valid only during
// Execute (or Launch). Execute, Launch and Collect are called by one thread
// (the engine thread) at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/backend/kv_cache_groups.h"
#include "runtime/backend/kv_retention.h"
#include "runtime/sampling/sampler.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/sequence_sampling_state.h"

namespace tern::runtime {

// One sequence's share of a step.
struct SequenceStep {
  int64_t seq_id = 0;
  // Tokens to compute now: positions [num_computed_tokens, num_computed_tokens + size).
  absl::Span<const int32_t> token_ids;
  // Launch only: one token, the one the last collected step sampled for this
  // sequence (token_ids holds a placeholder).
  bool input_from_last_sample = false;
  int32_t num_computed_tokens = 0;  // tokens already in the KV cache
  // One block table per KV-cache group (the runner's kv_cache_groups(); one
  // without groups): physical KV blocks covering positions [0,
  // num_computed_tokens + size); -1 for a block freed by the group's KV
  // retention, never one written.
  absl::Span<const std::vector<int32_t>> block_tables;
  // Sample a next token after the last computed position (false for a
  // prefill chunk that does not reach the end of the prompt).
  bool sample = false;
  const SamplingParams* sampling = nullptr;           // required when sample
  const SequenceSamplingState* sampling_state = nullptr;  // required when sample
};

struct StepPlan {
  std::vector<SequenceStep> sequences;
  // Whole-block copies to make before the step (copy-on-write): src -> dst.
  std::vector<std::pair<int32_t, int32_t>> block_copies;
};

struct SequenceOutput {
  int64_t seq_id = 0;
  // The sampled token, or why this sequence's row could not be sampled (a
  // non-finite logit, say): that fails this sequence's request alone.
  absl::StatusOr<SampledToken> token;
};

struct StepResult {
  // One per sequence with sample = true, in plan order.
  std::vector<SequenceOutput> outputs;
};

// The block pool: num_blocks blocks of block_size tokens, each holding the
// KV of one KV-cache group's layers; a sequence holds a table in each of
// the num_groups groups, so the cache holds num_blocks / num_groups * block_size
// tokens of every layer.
struct KvCacheLayout {
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t num_groups = 1;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // INVALID_ARGUMENT for a plan inconsistent with the cache (block ids out of
  // range, too few blocks for the tokens); backend failures otherwise. No
  // step may take its input from the last sample.
  virtual absl::StatusOr<StepResult> Execute(const StepPlan& plan) = 0;
  // Starts a step; at most one is launched and not collected (CHECK). The
  // plan's spans are read before Launch returns. A step with
  // input_from_last_sample takes that sequence's token from the last
  // collected step's output (INVALID_ARGUMENT when it sampled none for it;
  // token 0 when its row failed: that request fails, and the engine
  // discards the row). This implementation runs the step at once with Execute;
  // a runner whose device works asynchronously returns before the step ends.
  virtual absl::Status Launch(const StepPlan& plan);
  // The launched step's result (its error, or Launch's).
  virtual absl::StatusOr<StepResult> Collect();
  virtual KvCacheLayout kv_cache_layout() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t max_context_length() const = 0;
  // The KV-cache groups (kv_cache_groups.h): how many block tables a
  // sequence holds and, per group, which cached tokens no query of its
  // layers reads again (MoA spans, a sliding window), so the scheduler frees
  // their blocks and plans with the holes (kFreedBlock) in place. Null: one
  // group that keeps every token. Valid as long as the runner; its group
  // count is kv_cache_layout().num_groups.
  virtual const KvCacheGroups* kv_cache_groups() const { return nullptr; }
  // OK while steps can run; otherwise the device's unrecoverable failure
  // (Backend::Health): the engine stops and reports it as fatal.
  virtual absl::Status Health() const { return absl::OkStatus(); }

 protected:
  // `plan` with every input_from_last_sample token replaced by the last
  // collected sample of its sequence, in storage this runner owns (valid
  // until the next call); `plan` itself when it takes none.
  absl::StatusOr<const StepPlan*> ResolveLastSamples(const StepPlan& plan);
  // Remembers what `result` sampled per sequence, for the next launch.
  void RememberSamples(const StepResult& result);

 private:
  std::optional<absl::StatusOr<StepResult>> launched_;  // Launch's, until Collect
  absl::flat_hash_map<int64_t, int32_t> last_samples_;   // seq id -> the last collected step's token (-1: row failed)
  StepPlan resolved_;
  std::vector<int32_t> resolved_tokens_;
};

}  // namespace tern::runtime
