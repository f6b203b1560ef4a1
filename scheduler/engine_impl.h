// EngineImpl: the Engine of engine.h. One engine thread owns the Scheduler
// (and through it the BlockManager and every Sequence), the ModelRunner and
// the sinks; other threads only touch the EngineCore (inbox, cancels,
// admission, drain, liveness: engine_core.h) and the stats snapshot.
//
// Each step of the engine thread: take the inbox and cancels; add and abort
// requests; abort requests past their deadline; plan; launch the step; (with
// EngineOptions::async_scheduling, plan the next step while this one runs:
// Scheduler::ScheduleAhead); collect it; launch the step planned ahead;
// apply; hand out deltas and finishes; publish stats. New requests start
// in steps planned ahead as in plain ones; cancels wait for the next step
// boundary without one in flight (planning ahead pauses for them, for a
// deadline that passed, a drain, and while another engine on the device
// has work). With nothing to do, or with
// requests that cannot start, it sleeps on the condition variable until
// Submit, Cancel or Drain signals it or the earliest deadline passes; it
// never polls. (Submit refuses what could not fit an empty cache, so a
// request that cannot start waits for one that holds blocks to leave.)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/engine.h"
#include "scheduler/delivery_thread.h"
#include "scheduler/engine_core.h"
#include "scheduler/programs/request_program.h"
#include "scheduler/token_quota.h"
#include "scheduler/scheduler.h"

namespace tern::scheduler {

// KV blocks a request holds at its longest: `n` choices of a prompt of
// `prompt_tokens` (>= 1), each generating `max_tokens` (>= 1) tokens, the
// last of which is never written. The prompt but its last token is shared
// (its full blocks once); each choice holds the rest, its copy of a partial
// shared block included. Submit refuses a request above the cache's block
// count: it could never run, not even alone in an empty cache.
int64_t KvBlocksAtLongest(int64_t prompt_tokens, int64_t max_tokens, int64_t n, int64_t block_size);

class EngineImpl final : public Engine {
 public:
  // Use Engine::Create, which validates the options and calls Start.
  EngineImpl(const EngineOptions& options, std::unique_ptr<runtime::ModelRunner> runner);
  ~EngineImpl() override;

  void Start();

  absl::Status Submit(EngineRequest request, std::shared_ptr<RequestSink> sink) override;
  void Cancel(const RequestKey& key) override;
  EngineStats Stats() const override;
  void Drain(absl::Duration timeout) override;

 private:
  struct Submission {
    EngineRequest request;
    std::shared_ptr<RequestSink> sink;
    uint64_t seed = 0;
  };
  using Core = EngineCore<Submission>;
  struct InFlight {
    std::shared_ptr<RequestSink> sink;
    Core::DeadlineHandle deadline;            // core_.NoDeadline() when none
    std::unique_ptr<RequestProgram> program;  // null for a plain request
    RequestUsage usage;                       // of the phases already finished
    bool queue_time_set = false;
  };

  absl::Status Validate(EngineRequest& request) const;
  // KvBlocksAtLongest in every KV-cache group, or less in a group whose KV
  // retention frees the blocks no query reads again (KvRetention::PeakBlocks
  // per choice): blocks of the whole pool.
  int64_t BlocksAtLongest(int64_t prompt_tokens, int64_t max_tokens, int64_t n) const;
  // Whether some KV-cache group frees tokens.
  bool HasRetention() const;
  // Blocks one group's table may have when the pool is split evenly.
  int64_t TableBlocks() const;
  void Loop();
  // Engine thread only.
  enum class Started { kStep, kNothing, kStopped };
  // Handles cancels, deadlines and the drain, then plans and launches a
  // step; kNothing when there was none to run (or it failed to launch).
  Started StartStep(const Core::Intake& intake);
  // Plans ahead (async scheduling), collects the launched step, launches the
  // step planned ahead, applies the collected one and hands out its output.
  void FinishStep(const Core::Intake& intake);
  // The step planned ahead, or null (async scheduling off, or not now).
  const ScheduleOutput* PlanAhead(const Core::Intake& intake);
  // runner_->Launch / Collect inside a device turn.
  absl::Status Launch(const ScheduleOutput& out);
  absl::StatusOr<runtime::StepResult> Collect();
  // The pending step failed (`num_sequences` of them): on a device that can
  // go on its requests fail; otherwise every request does and the engine
  // stops for good (on_fatal).
  void FailStep(const absl::Status& status, size_t num_sequences);
  void Admit(Submission submission);
  // Abort into done_; FinishDone tells their sinks (after PublishStats, so a
  // woken client sees the freed blocks).
  void AbortExpired(absl::Time now);
  void FailAll(const absl::Status& status);
  void FinishDone();
  // Checks a program's phase as Submit checks a request.
  absl::Status ValidatePhase(const ProgramPhase& phase) const;
  // Queues a program's phase under the request's key (base's tenant and `request_id`).
  absl::Status AddPhase(const std::string& request_id, const SequenceGroup::Options& base, ProgramPhase phase,
                        uint64_t seed, bool continuation);
  // Hands the group's pending output to the sink (through the program's
  // Present when there is one). `request_final`: nothing follows.
  void EmitDeltas(SequenceGroup& group, bool request_final);
  // Adds a finished or aborted group's tokens to its request's usage.
  void AddUsage(InFlight& flight, const SequenceGroup& group);
  // Every sequence of `group` finished: the request ends, or its program
  // starts the next phase.
  void Complete(std::unique_ptr<SequenceGroup> group);
  // Ends the request of an aborted, failed or completed group.
  void Finish(std::unique_ptr<SequenceGroup> group, const absl::Status& status);
  // Tells the sink the request ended (OnDone) and forgets it.
  void FinishRequest(const RequestKey& key, const absl::Status& status);
  void PublishStats(bool stepped);

  const EngineOptions options_;
  // Copies of the runner's constants, readable from any thread.
  const runtime::KvCacheLayout layout_;
  const int64_t vocab_size_;
  const int64_t max_context_;

  int32_t last_batched_tokens_ = 0;  // engine thread only
  // Engine thread only: a step launched and not collected, its device turn,
  // and cancels that wait for a step boundary without one in flight.
  bool step_launched_ = false;
  size_t launched_sequences_ = 0;
  int64_t steps_planned_ahead_ = 0;
  std::optional<DeviceTurn> turn_;
  std::vector<RequestKey> deferred_cancels_;

  Core core_;
  mutable absl::Mutex stats_mu_;
  EngineStats stats_ ABSL_GUARDED_BY(stats_mu_);

  // Engine thread only.
  std::unique_ptr<runtime::ModelRunner> runner_;
  Scheduler scheduler_;
  absl::flat_hash_map<RequestKey, InFlight> in_flight_;
  std::vector<std::pair<std::unique_ptr<SequenceGroup>, absl::Status>> done_;
  // Runs the sinks (OnDeltas, OnDone) in order, off the engine thread.
  DeliveryThread delivery_;
};

}  // namespace tern::scheduler
