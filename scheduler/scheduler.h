// Scheduler: decides what runs each step (vLLM v1 style: no prefill or
// decode phase, only num_computed_tokens catching up to the token count under
// one token budget) and applies what the step produced.
//
// Schedule(), per step, under max_num_batched_tokens and max_num_seqs:
//   1. running sequences with one token to compute (decodes), in service
//      order (priority, then arrival);
//   2. the other running sequences (prefill chunks): each takes what the
//      budget leaves (chunked prefill);
//   3. waiting sequences (new requests and preempted ones), picked by tenant
//      fairness (TenantQueues), each skipping the prompt blocks found in the
//      prefix cache but always computing at least its last token.
// When a running sequence needs a block and none is free, the running
// sequence served last (lowest priority, then newest) that is not yet in
// this step is preempted by recompute: its blocks are freed and it waits
// again with all its tokens; if there is none, the sequence itself waits.
// Capacity (who holds KV blocks) is decided by the BlockManager; the
// micro-batch (what computes now) by the token budget.
//
// A group of several sequences sharing a prompt prefix (n > 1 choices; the
// points of a Skeleton-of-Thought phase) runs its carrier alone until the
// prefix is computed, then the others attach to its blocks; each computes
// its own suffix (copy-on-write of a shared partial block) and samples with
// its own stream. Such a group is a gang: it is admitted only when the
// blocks of all its prompts are free, all its sequences are planned at once
// in a step (the first time any of them is reached), a victim of preemption
// is always a whole group, and a gang that cannot get its blocks is itself
// preempted whole; it resumes by recomputing the prefix once.
//
// KV-cache groups (README.md): a sequence holds one block table per group;
// planning writes, preemption, forks and prefix-cache hits act on all of
// them at once (all or nothing), and admission counts the blocks of every
// group.
//
// Apply(result) advances num_computed_tokens, publishes newly full blocks to
// the prefix cache, frees the blocks no query reads again (per group, with a
// KV retention: MoA spans, sliding windows; see README.md), appends the sampled
// tokens (stop checks, text) and frees the blocks of finished sequences.
//
// Contract: Schedule and Apply alternate (CHECK); between them the plan's
// spans borrow from the sequences, so nothing else may change them (Add is
// allowed, Abort is not: CHECK).
//
// Planning ahead (async scheduling): while the planned step runs, and before
// its result is applied, ScheduleAhead may plan the next step on the
// assumption that every sequence of the running step goes on: each reserves
// the output the running step will sample (Sequence::ReserveOutput) and the
// next step computes that position (`input_from_last_sample`: the runner
// takes the token from the step before). Apply then applies the older step,
// resolving each reservation, and the plan ahead becomes the pending step. A
// sequence that the older step finished (or whose request failed) stays in
// the plan ahead as a dropped entry: its row is computed and its output
// discarded. A prompt in chunks goes on with its next chunk, and waiting
// requests start, in the plan ahead as in a plain step, with the budget and
// seats the decodes leave and never by preempting. Planning ahead needs
// every running sequence in the running step, no gang waiting to fork, and
// every decoding sequence's next position to get its blocks without
// preempting anyone; otherwise ScheduleAhead returns null and nothing
// changes. A sequence with penalties counts its reserved output once the
// step that samples it is collected (CountCollectedSamples), before the plan
// ahead is launched. The tokens every request gets are those of Schedule /
// Apply alternating. A discarded plan ahead takes its reservations back; a
// sequence it started keeps running and recomputes its prompt.
//
// Thread: single-thread, no locks; owned by the engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "runtime/runner/model_runner.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/block_manager.h"
#include "scheduler/sequence.h"
#include "scheduler/tenant_queues.h"

namespace tern::scheduler {

// One sequence of a group: its tokens after the shared prefix, its sampling.
struct BranchSpec {
  int32_t index = 0;                 // choice or point index; also its random stream
  std::vector<int32_t> suffix;       // non-empty
  runtime::SamplingParams sampling;  // validated
};

struct SchedulerOptions {
  int32_t max_num_seqs = 256;             // > 0
  int32_t max_num_batched_tokens = 2048;  // > 0
  bool enable_prefix_caching = true;
  int64_t max_context_length = 0;         // > 0; a sequence finishes "length" here
  // The runner's KV-cache groups: one block table per group per sequence
  // and, per group, which tokens no query of its layers reads again (MoA
  // spans, a sliding window), whose blocks are freed after each step. Null:
  // one group that keeps every token. Its group count must be the layout's.
  // Borrowed; outlives the scheduler.
  const runtime::KvCacheGroups* kv_groups = nullptr;
  std::vector<int32_t> eos_token_ids;
  const runtime::Tokenizer* tokenizer = nullptr;  // borrowed; null: no text
};

// One sequence's part in the current step (parallel to plan.sequences).
struct ScheduledSequence {
  Sequence* seq = nullptr;  // null when dropped
  int64_t seq_id = 0;
  int32_t num_tokens = 0;
  bool sample = false;
  // The sequence ended (finished or aborted) after this step was planned
  // ahead and before it was applied: its output is discarded.
  bool dropped = false;
};

struct ScheduleOutput {
  int64_t step = 0;  // the scheduler's step counter when planned
  runtime::StepPlan plan;
  std::vector<ScheduledSequence> scheduled;
  std::vector<int64_t> preempted;  // seq ids preempted while planning this step
  // Sequences that started running while planning this step (admitted or
  // attached to a carrier's prefix), whether or not they compute in it: a
  // carrier whose shared prefix came from the cache starts with nothing to
  // compute, and its group runs from the next step.
  int32_t num_started = 0;
  int32_t num_batched_tokens = 0;
  bool empty() const { return plan.sequences.empty() && plan.block_copies.empty(); }
  // An empty plan that changed nothing: planning again finds the same until
  // a request arrives, leaves or passes its deadline.
  bool stuck() const { return empty() && preempted.empty() && num_started == 0; }
};

// A request that cannot go on: one of its sequences' rows could not be
// sampled (a non-finite logit, say). Already aborted and detached.
struct FailedGroup {
  std::unique_ptr<SequenceGroup> group;
  absl::Status status;  // the runner's row error
};

struct StepOutcome {
  // Groups that got output this step and still run.
  std::vector<SequenceGroup*> updated;
  // Groups whose every sequence finished this step; no longer scheduled.
  std::vector<std::unique_ptr<SequenceGroup>> finished;
  // Groups with a sequence whose row failed this step; no longer scheduled.
  // The other groups of the step are unaffected.
  std::vector<FailedGroup> failed;
};

struct SchedulerStats {
  int32_t running = 0;   // sequences
  int32_t waiting = 0;   // sequences (new and preempted)
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prompt_tokens = 0;      // prompt positions computed (recomputes included)
  int64_t generation_tokens = 0;  // tokens sampled
  BlockManagerStats blocks;
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, const runtime::KvCacheLayout& layout);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request of options.sampling.n choices of one prompt. The request
  // id must be new (CHECK); the prompt is non-empty and sampling validated
  // (the Engine checks both).
  SequenceGroup* Add(SequenceGroup::Options options, std::vector<int32_t> prompt, uint64_t seed);
  // Queues a group of sequences whose prompts are `shared_prefix` followed by
  // each branch's suffix. At least one branch (CHECK).
  SequenceGroup* AddGroup(SequenceGroup::Options options, std::vector<int32_t> shared_prefix,
                          std::vector<BranchSpec> branches, uint64_t seed);

  // Plans the next step. Valid until Apply or DiscardStep.
  const ScheduleOutput& Schedule();
  // Plans the step after the pending one (see the header): null when it
  // cannot be planned ahead, else valid until the Apply after next or
  // DiscardStep. Only with a step pending and none planned ahead (CHECK).
  const ScheduleOutput* ScheduleAhead();
  bool has_plan_ahead() const { return ahead_pending_; }
  // Between collecting the pending step and launching the plan ahead: the
  // sequences of the plan ahead whose penalties count outputs count the
  // outputs they reserved (now known), so that the plan ahead samples with
  // them (Sequence::CountReservedOutput). Required when a plan ahead holds
  // such a sequence (Apply CHECKs); a no-op otherwise.
  void CountCollectedSamples(const runtime::StepResult& collected);
  // Applies the runner's result of the pending step (the oldest planned).
  // INTERNAL when the result does not match the plan (then the step, and a
  // plan ahead, are discarded). A sequence whose output carries an error
  // fails its whole request (StepOutcome::failed) and no other. A plan
  // ahead becomes the pending step.
  absl::StatusOr<StepOutcome> Apply(const runtime::StepResult& result);
  // Forgets the pending plan, and a plan ahead, without applying them;
  // nothing counts as computed and reserved outputs are taken back.
  void DiscardStep();
  // The step failed on the device without harming it (out of device memory,
  // say): forgets the pending plan (and a plan ahead, whose sequences are
  // all among the pending step's) and aborts every request with a sequence
  // in it (freeing their blocks, which the step may have half written).
  // Other requests keep their state: what planning did to them (a
  // preemption, a start with nothing to compute) stands, and none of their
  // blocks was written by the step.
  std::vector<std::unique_ptr<SequenceGroup>> AbortStep();

  // Removes a request, frees its blocks and marks its sequences aborted.
  // Null for an unknown key. Not between Schedule and Apply (CHECK).
  std::unique_ptr<SequenceGroup> Abort(const RequestKey& key);
  // Every request, for shutdown and failures.
  std::vector<std::unique_ptr<SequenceGroup>> AbortAll();

  SequenceGroup* Find(const RequestKey& key) const;
  bool HasWork() const { return !groups_.empty(); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int64_t num_waiting() const { return queues_.num_waiting(); }
  int32_t num_groups() const { return static_cast<int32_t>(groups_.size()); }
  // Groups that have not started running yet.
  int32_t num_waiting_groups() const { return num_groups() - num_admitted_; }
  const std::vector<Sequence*>& running() const { return running_; }
  const BlockManager& block_manager() const { return blocks_; }
  const TenantQueues& tenant_queues() const { return queues_; }
  const SchedulerOptions& options() const { return options_; }
  SchedulerStats stats() const;

 private:
  void ScheduleRunning(bool decodes_only, int32_t* budget);
  void ScheduleWaiting(int32_t* budget);
  // Tokens `seq` should compute now, at most `budget`.
  int32_t ChunkSize(const Sequence& seq, int32_t budget) const;
  void AddToPlan(Sequence* seq, int32_t n);
  // Appends `seq`'s step of `n` tokens from `begin` to `out`.
  void AddStep(ScheduleOutput* out, Sequence* seq, int32_t begin, int32_t n, bool input_from_last_sample);
  // Whether `s` (a sequence of the pending step that samples) may be planned
  // ahead, and whether it will surely finish in the pending step (then it is
  // left out).
  bool CanPlanAhead(const ScheduledSequence& s, bool* finishes) const;
  // Forgets a plan ahead: its reservations are taken back.
  void DiscardAhead();
  // Attaches the fork-pending sequences of `seq`'s group when `seq` is its
  // carrier and has computed the shared prefix.
  void MaybeFork(Sequence* seq);
  // Plans every running sequence of a gang (all or none get their blocks).
  void ScheduleGang(SequenceGroup* group, int32_t* budget);
  // Blocks a waiting group needs before it may start: its carrier's tokens
  // plus, for a gang, every other live sequence's tokens after the prefix.
  int32_t BlocksToAdmit(const SequenceGroup& group) const;
  // Preempts the last running group (service order) with no sequence in this
  // step, behind `except`'s group; false when there is none.
  bool PreemptOne(const Sequence* except);
  // Preempts every running sequence of `group`; the carrier waits, the
  // others become fork-pending.
  void PreemptGroup(SequenceGroup* group);
  void InsertRunning(Sequence* seq);
  void RemoveRunning(Sequence* seq);
  bool InStep(const Sequence* seq) const;
  // The blocks one sequence of `tokens` tokens holds at most in KV-cache
  // group `group`, never more than `dense` (what it would hold keeping all).
  int32_t GroupPeak(int32_t group, int32_t tokens, int32_t dense) const;
  int32_t num_kv_groups() const;
  // Finishes the removal of a group from every structure.
  std::unique_ptr<SequenceGroup> Detach(const RequestKey& key);

  SchedulerOptions options_;
  BlockManager blocks_;
  TenantQueues queues_;
  absl::flat_hash_map<RequestKey, std::unique_ptr<SequenceGroup>> groups_;  // by (tenant, request id)
  std::vector<Sequence*> running_;  // in service order (ServedBefore)
  ScheduleOutput out_;
  bool step_pending_ = false;
  ScheduleOutput ahead_;  // planned ahead of out_ (ahead_pending_)
  bool ahead_pending_ = false;
  bool ahead_needs_counts_ = false;  // a sequence of the plan ahead counts outputs for penalties
  bool ahead_counted_ = false;       // CountCollectedSamples ran for the plan ahead
  // The plan AddToPlan, ScheduleWaiting and MaybeFork add to: out_, or
  // ahead_ while ScheduleAhead starts waiting requests.
  ScheduleOutput* planning_ = &out_;
  int64_t step_ = 0;
  int64_t next_seq_id_ = 0;
  int64_t next_arrival_order_ = 0;
  int32_t num_admitted_ = 0;
  int64_t preemptions_ = 0;
  int64_t prompt_tokens_ = 0;
  int64_t generation_tokens_ = 0;
};

}  // namespace tern::scheduler
