// Sequence and SequenceGroup: the scheduler's state of one token stream and
// of one group of streams that share a prompt prefix (a request's n choices,
// or one phase of a request program such as Skeleton-of-Thought's points).
//
// A Sequence holds all its tokens (prompt + output); num_computed_tokens of
// them are in the KV cache, in the blocks of its block tables (one per
// KV-cache group, runtime/backend/kv_cache_groups.h). It is always true that
// num_computed_tokens <= tokens.size() and that every block table covers at
// least num_computed_tokens positions. Preemption by recompute
// drops the KV (num_computed_tokens = 0, no blocks) but keeps every token,
// so resuming recomputes prompt + output as one prompt and samples the
// next output position with the same random draw.
//
// Thread: single-thread; owned by the Scheduler on the engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "runtime/sampling/sampler.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/sequence_sampling_state.h"
#include "runtime/sampling/stop_checker.h"
#include "runtime/tokenizer/incremental_detokenizer.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/backend/kv_cache_groups.h"
#include "runtime/backend/kv_retention.h"
#include "scheduler/block_manager.h"
#include "scheduler/request_key.h"
#include "scheduler/tenant.h"

namespace tern::scheduler {

// kForkPending: a sequence of a group whose shared prefix is not computed
// yet; it holds no blocks and is in no queue. When the group's carrier has
// computed the prefix, it attaches to the carrier's blocks and runs.
enum class SequenceStatus { kWaiting, kRunning, kPreempted, kForkPending, kFinished };

class SequenceGroup;

// Output of one sequence not yet handed to the request's sink.
struct PendingOutput {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<runtime::SampledToken> logprobs;
  bool finished_reported = false;  // the finish was already handed out
};

class Sequence {
 public:
  // `index`: choice or point index (also the sampling stream). `seed`: the
  // request's. `params`: this sequence's own (copied). `num_kv_groups`: the
  // block tables it holds (the runner's KV-cache groups).
  Sequence(int64_t seq_id, int32_t index, SequenceGroup* group, std::vector<int32_t> prompt, uint64_t seed,
           const runtime::SamplingParams& params, const std::vector<int32_t>& eos_token_ids,
           const runtime::Tokenizer* tokenizer, int32_t num_kv_groups = 1);

  // Shares the KV of `carrier`'s first `prefix_len` tokens (equal to this
  // sequence's: CHECK): takes a reference on each block covering them, in
  // every group, and counts them as computed. This sequence must hold no
  // blocks.
  void AttachSharedPrefix(const Sequence& carrier, int32_t prefix_len, BlockManager* blocks);

  int64_t seq_id() const { return seq_id_; }
  int32_t index() const { return index_; }
  SequenceGroup* group() const { return group_; }

  const std::vector<int32_t>& tokens() const { return tokens_; }
  int32_t num_tokens() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens_; }
  int32_t num_computed_tokens() const { return num_computed_tokens_; }
  // Tokens not yet in the KV cache.
  int32_t num_uncomputed_tokens() const { return num_tokens() - num_computed_tokens_; }

  // The block tables, one per KV-cache group.
  BlockTables& block_tables() { return block_tables_; }
  const BlockTables& block_tables() const { return block_tables_; }
  // One group's table (group 0: the only one without groups).
  const BlockTable& block_table(int32_t group = 0) const { return block_tables_[size_t(group)]; }
  bool holds_blocks() const;
  // Chained hashes of the full blocks of tokens(), extended on demand.
  const std::vector<uint64_t>& block_hashes() const { return block_hashes_; }

  SequenceStatus status() const { return status_; }
  void set_status(SequenceStatus status) { status_ = status; }
  bool finished() const { return status_ == SequenceStatus::kFinished; }

  const runtime::SamplingParams& sampling_params() const { return params_; }
  const runtime::SequenceSamplingState& sampling_state() const { return sampling_state_; }
  runtime::FinishReason finish_reason() const { return finish_reason_; }
  const runtime::StopReason& stop_reason() const { return stop_reason_; }
  bool aborted() const { return aborted_; }
  PendingOutput& pending() { return pending_; }
  // The scheduler's step counter when this sequence was last planned.
  int64_t planned_step() const { return planned_step_; }
  void set_planned_step(int64_t step) { planned_step_ = step; }

  // Marks `n` more tokens as computed and publishes newly full blocks to the
  // prefix cache.
  void AdvanceComputed(int32_t n, BlockManager* blocks);
  // Sets the computed length after a prefix-cache match.
  void SetComputedFromCache(int32_t n) { num_computed_tokens_ = n; }
  // Drops the KV: releases blocks, num_computed_tokens = 0.
  void ResetComputed(BlockManager* blocks);
  // Gives back, in each group with a retention, the whole blocks of tokens
  // no query of the group's layers reads again now that num_computed_tokens
  // are cached (retention.FreeBefore), keeping the sinks: their table
  // entries become kFreedBlock. Returns how many.
  int32_t ReleaseUnread(const runtime::KvCacheGroups& groups, BlockManager* blocks);
  // Table entries that hold a block (not kFreedBlock), over every group.
  int32_t num_held_blocks() const;
  // Appends a sampled token: advances the random stream, detokenizes, runs
  // the stop checks and queues output. `max_context`: finish "length" when
  // the sequence reaches it. Must not be finished, nor hold a reserved output.
  void AppendOutput(const runtime::SampledToken& token, int64_t max_context);

  // Planning ahead (Scheduler::ScheduleAhead): the output a step in flight
  // will sample takes its place now, as kReservedToken at the end of
  // tokens(), and the random stream advances past it, so that the next step
  // can be planned (and sample its own position) before this one's token is
  // known. Not for a finished sequence, nor one holding a reservation.
  void ReserveOutput();
  bool has_reserved_output() const { return reserved_output_; }
  // The reserved output is known (its step was collected) before it is
  // applied: a sequence with penalties counts it now, so that the step
  // planned ahead samples with it counted. No-op without penalty counts.
  void CountReservedOutput(int32_t token_id);
  // The reserved output arrives: it replaces kReservedToken and is
  // detokenized, stop-checked and queued as AppendOutput does.
  void ResolveOutput(const runtime::SampledToken& token, int64_t max_context);
  // Takes the reservation back (the step that would sample it failed, or
  // the sequence ends without it): tokens() and the random stream are as
  // before ReserveOutput.
  void DropReservedOutput();
  // Ends the sequence for a reason the stop checker does not see (abort);
  // releases held-back text into pending() and drops a reserved output.
  void Abort();

  // Hashes full blocks of tokens() not hashed yet (no-op when hashed); a
  // block holding the reserved output waits until it is resolved.
  void UpdateHashes(const BlockManager& blocks);
  uint64_t salt() const { return salt_; }

  // tokens() less a reserved output: the known ones.
  absl::Span<const int32_t> known_tokens() const {
    return absl::MakeConstSpan(tokens_).first(tokens_.size() - (reserved_output_ ? 1 : 0));
  }

 private:
  void Finish(runtime::FinishReason reason, runtime::StopReason stop_reason);
  // What AppendOutput and ResolveOutput share once the token is in tokens_
  // and the random stream has advanced: output, text, stop checks.
  void AcceptOutput(const runtime::SampledToken& token, int64_t max_context);

  const int64_t seq_id_;
  const int32_t index_;
  SequenceGroup* const group_;
  std::vector<int32_t> tokens_;
  const int32_t num_prompt_tokens_;
  int32_t num_computed_tokens_ = 0;
  BlockTables block_tables_;
  // Per group: entries [first past the sinks, released_until_[g]) are kFreedBlock.
  std::vector<int32_t> released_until_;
  std::vector<uint64_t> block_hashes_;
  uint64_t salt_;
  SequenceStatus status_ = SequenceStatus::kWaiting;
  runtime::SequenceSamplingState sampling_state_;
  runtime::StopChecker stop_checker_;
  std::unique_ptr<runtime::IncrementalDetokenizer> detokenizer_;  // null without a tokenizer
  runtime::FinishReason finish_reason_ = runtime::FinishReason::kNone;
  runtime::StopReason stop_reason_;
  bool aborted_ = false;
  PendingOutput pending_;
  int64_t planned_step_ = -1;
  bool reserved_output_ = false;
  int32_t reserved_counted_ = -1;  // the reserved output's token once counted (CountReservedOutput), else -1
  const runtime::SamplingParams params_;
};

// What tokens() holds in place of an output a step in flight will sample.
inline constexpr int32_t kReservedToken = -1;

// The sequences of one request (or of one phase of a request program). They
// share the first shared_prefix_len() tokens of their prompts. The carrier
// (the first unfinished sequence) computes that prefix alone while the
// others wait in kForkPending; then they attach to its blocks (copy-on-write
// of a shared partial block) and each computes its own suffix and samples
// with its own stream. A group of several live sequences is a gang: admitted
// together, scheduled together within a step and preempted together, after
// which the carrier recomputes the prefix and the others attach again.
// n > 1 choices are the case "prefix = all but the last prompt token".
class SequenceGroup {
 public:
  struct Options {
    std::string request_id;
    const Tenant* tenant = nullptr;  // borrowed, required
    int32_t priority = 0;
    runtime::SamplingParams sampling;
    absl::Time arrival_time = absl::InfinitePast();
    absl::Time deadline = absl::InfiniteFuture();
    // A later phase of a request already admitted: it counts as admitted at
    // once (no queue time, no second tenant concurrency slot).
    bool continuation = false;
  };
  // `arrival_order`: tie-breaker of equal arrival times (smaller is older).
  // `shared_prefix_len`: tokens every sequence's prompt begins with.
  SequenceGroup(Options options, int64_t arrival_order, uint64_t seed, int32_t shared_prefix_len);

  const std::string& request_id() const { return options_.request_id; }
  const Tenant& tenant() const { return *options_.tenant; }
  // What names the request in its engine: tenant and id (request_key.h).
  RequestKey key() const { return {options_.tenant->name, options_.request_id}; }
  int32_t priority() const { return options_.priority; }
  const runtime::SamplingParams& sampling() const { return options_.sampling; }
  absl::Time arrival_time() const { return options_.arrival_time; }
  absl::Time deadline() const { return options_.deadline; }
  int64_t arrival_order() const { return arrival_order_; }
  uint64_t seed() const { return seed_; }

  std::vector<std::unique_ptr<Sequence>>& sequences() { return sequences_; }
  const std::vector<std::unique_ptr<Sequence>>& sequences() const { return sequences_; }
  int32_t shared_prefix_len() const { return shared_prefix_len_; }
  // True while sequences wait in kForkPending for the carrier's prefix.
  bool needs_fork() const { return needs_fork_; }
  void set_needs_fork(bool value) { needs_fork_ = value; }
  // The first unfinished sequence; null when all finished.
  Sequence* carrier() const;
  // Unfinished sequences (running, waiting or fork-pending).
  int32_t num_live() const;
  bool AllFinished() const;
  // The scheduler's step counter when the group was last planned as a gang.
  int64_t planned_step() const { return planned_step_; }
  void set_planned_step(int64_t step) { planned_step_ = step; }
  // Distinct prompt tokens: the shared prefix once plus each suffix (the
  // prompt once when every sequence has the same prompt).
  int32_t num_prompt_tokens() const;

  // Admitted: it has started running at least once (counts toward the
  // tenant's concurrency limit until it finishes).
  bool admitted() const { return admitted_; }
  // Marks the request admitted (first scheduled) now; its queue time ends here.
  void set_admitted() {
    admitted_ = true;
    admitted_time_ = absl::Now();
  }
  absl::Time admitted_time() const { return admitted_time_; }
  // The scheduler's step counter when this group last got output.
  int64_t output_step() const { return output_step_; }
  void set_output_step(int64_t step) { output_step_ = step; }
  int32_t cached_prompt_tokens() const { return cached_prompt_tokens_; }
  void set_cached_prompt_tokens(int32_t n) { cached_prompt_tokens_ = n; }

 private:
  Options options_;
  int64_t arrival_order_;
  uint64_t seed_;
  std::vector<std::unique_ptr<Sequence>> sequences_;
  bool admitted_ = false;
  absl::Time admitted_time_ = absl::InfinitePast();
  int64_t output_step_ = -1;
  int32_t cached_prompt_tokens_ = 0;
  int32_t shared_prefix_len_;
  bool needs_fork_ = false;
  int64_t planned_step_ = -1;
};

// Order of service within a tenant: higher priority first, then older.
bool ServedBefore(const Sequence& a, const Sequence& b);

}  // namespace tern::scheduler
