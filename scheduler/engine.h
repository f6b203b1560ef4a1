// Engine: one per served LLM. Its thread owns all scheduling state (the
// Scheduler, the BlockManager, every Sequence) and drives the ModelRunner
// step by step: drain the inbox, plan, execute, apply, push events to sinks.
//
// Thread-safe entry points: Submit, Cancel, Stats, Drain (and the
// destructor). Everything else runs on the engine thread. Sinks are called
// in order on the engine's delivery thread (delivery_thread.h), never on the
// engine thread: a slow sink delays other requests' output, not the steps.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/runner/model_runner.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/stop_checker.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/device_turns.h"
#include "scheduler/request_key.h"
#include "scheduler/tenant.h"

namespace tern::scheduler {

class RequestProgram;

// A generation request in native form (the server converts from tern.v1).
struct EngineRequest {
  EngineRequest();
  ~EngineRequest();
  EngineRequest(EngineRequest&&) noexcept;
  EngineRequest& operator=(EngineRequest&&) noexcept;

  std::string request_id;            // unique among the tenant's in-flight requests
  const Tenant* tenant = nullptr;    // borrowed; outlives the engine
  int32_t priority = 0;              // higher first within a tenant (tenant priority already added)
  std::vector<int32_t> prompt_token_ids;
  runtime::SamplingParams sampling;  // validated; n choices share the prompt (copy-on-write)
  absl::Time arrival_time = absl::InfinitePast();
  absl::Time deadline = absl::InfiniteFuture();
  // Null: one phase, the prompt's n choices. Else the program decides the
  // phases (request_program.h); prompt and sampling are its input and are
  // validated as for a plain request.
  std::unique_ptr<RequestProgram> program;
};

// Which part of the answer a delta belongs to.
enum class DeltaPart {
  kAnswer,    // a choice of plain decoding (index = choice)
  kSkeleton,  // Skeleton-of-Thought's outline (index 0)
  kPoint,     // Skeleton-of-Thought's point expansion (index = point, from 0)
};

// New output of one choice since the last event.
struct ChoiceDelta {
  int32_t index = 0;
  DeltaPart part = DeltaPart::kAnswer;
  std::string text;                   // UTF-8 safe, stop strings held back and removed
  std::vector<int32_t> token_ids;
  std::vector<runtime::SampledToken> logprobs;  // one per token id when logprobs were asked for
  runtime::FinishReason finish_reason = runtime::FinishReason::kNone;
  runtime::StopReason stop_reason;
  bool aborted = false;               // cancelled or past its deadline
};

struct RequestUsage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;   // prompt tokens whose KV came from the prefix cache
  // Every phase's: a program's phases add up (Skeleton-of-Thought: skeleton
  // and point prompts and outputs).
  // From arrival until first scheduled; zero when never scheduled.
  absl::Duration queue_time = absl::ZeroDuration();
};

class RequestSink {
 public:
  virtual ~RequestSink() = default;
  // Called on the delivery thread after each step that produced output.
  virtual void OnDeltas(const std::vector<ChoiceDelta>& deltas) = 0;
  // Called once, last: OK with usage when every choice finished (or was
  // aborted by Cancel), else the error (DEADLINE_EXCEEDED, INTERNAL, ...).
  virtual void OnDone(const absl::Status& status, const RequestUsage& usage) = 0;
};

struct EngineOptions {
  std::string model_name;               // for logs and metric labels
  int32_t max_num_seqs = 256;           // sequences per step
  int32_t max_num_batched_tokens = 2048;  // token budget per step (chunked prefill)
  int32_t max_queued_requests = 4096;   // beyond: RESOURCE_EXHAUSTED at Submit
  bool enable_prefix_caching = true;
  const runtime::Tokenizer* tokenizer = nullptr;  // borrowed; for text and stop strings (null: ids only)
  // Ids that end generation besides the tokenizer's EOS ids (generation_config.json).
  std::vector<int32_t> eos_token_ids;
  // Requests of one tenant not yet running; beyond: RESOURCE_EXHAUSTED at Submit. 0: no limit.
  int32_t max_queued_requests_per_tenant = 0;
  // Called once, on the engine thread, when a step fails and the runner
  // reports its device unusable (ModelRunner::Health): the engine has failed
  // every request and refuses new ones with UNAVAILABLE from then on. The
  // server stops serving and exits so that it is restarted. May be empty.
  using FatalCallback = std::function<void(const absl::Status&)>;
  FatalCallback on_fatal;
  // A busy engine thread (not asleep waiting for work) that has not finished
  // a pass of its loop for this long is stalled (EngineStats::stalled): a
  // device step that hangs, say. > 0.
  absl::Duration stall_timeout = absl::Seconds(30);
  // Turns on a device shared with other engines (device_turns.h); none by default.
  DeviceShareOptions device;
  // Async scheduling: plan step k+1 while step k runs (Scheduler::
  // ScheduleAhead, ModelRunner::Launch / Collect), so the host's planning
  // and the output of step k overlap the device's work. Every request gets
  // the tokens it gets without. Steady decoding only; paused while another
  // engine on the device has work.
  bool async_scheduling = false;
};

struct EngineStats {
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t kv_blocks_total = 0;
  int32_t kv_blocks_used = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prefix_cache_queries = 0;   // prompt blocks looked up
  int64_t prefix_cache_hits = 0;      // of which found
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  int32_t last_step_batched_tokens = 0;  // tokens computed by the most recent step
  int64_t steps_planned_ahead = 0;        // steps planned while the one before ran (async scheduling)
  absl::Time last_step_time = absl::InfinitePast();
  // The engine thread is either asleep (no requests, or none that can start
  // until one arrives, leaves or passes its deadline) or busy: planning,
  // stepping, handing out output. `busy_for` is how long it has been busy
  // since it last finished a pass of its loop (one step) or woke up; zero
  // while asleep. Busy for longer than EngineOptions::stall_timeout is
  // stalled: an idle engine never is, however long since its last step.
  absl::Duration busy_for = absl::ZeroDuration();
  bool stalled = false;
};

class Engine {
 public:
  // Starts the engine thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                        std::unique_ptr<runtime::ModelRunner> runner);
  virtual ~Engine() = default;

  // Enqueues a request; returns at once. RESOURCE_EXHAUSTED when the queue or
  // the tenant's limit is full, INVALID_ARGUMENT when the prompt plus
  // max_tokens exceed the context or a token id is outside the vocabulary,
  // UNAVAILABLE when draining. On OK the sink gets OnDone exactly once.
  // Details: max_tokens unset becomes the rest of the context (or of the KV
  // cache, when smaller); a request whose prompt + max_tokens cannot fit the
  // KV cache is INVALID_ARGUMENT; an id in flight for the same tenant is
  // ALREADY_EXISTS (another tenant's is no conflict: request_key.h);
  // a null tenant means kDefaultTenantName. Tenant::max_concurrent_requests
  // is enforced by waiting, not by rejection: the request queues until one
  // of the tenant's requests finishes.
  virtual absl::Status Submit(EngineRequest request, std::shared_ptr<RequestSink> sink) = 0;
  // Aborts the request of `key` (client went away): the tenant's name (a
  // null tenant's is kDefaultTenantName) and the request id. Its blocks are
  // freed within one step and its sink gets OnDone(OK) with aborted deltas.
  // Unknown keys are ignored: another tenant's request of the same id is
  // never touched.
  virtual void Cancel(const RequestKey& key) = 0;
  virtual EngineStats Stats() const = 0;
  // Stops admitting, lets in-flight requests finish until `timeout`, aborts
  // the rest, and stops the thread.
  virtual void Drain(absl::Duration timeout) = 0;
};

}  // namespace tern::scheduler
