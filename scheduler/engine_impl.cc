#include "scheduler/engine_impl.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace tern::scheduler {
namespace {

SchedulerOptions MakeSchedulerOptions(const EngineOptions& options, const runtime::ModelRunner& runner) {
  SchedulerOptions s;
  s.max_num_seqs = options.max_num_seqs;
  s.max_num_batched_tokens = options.max_num_batched_tokens;
  s.enable_prefix_caching = options.enable_prefix_caching;
  s.max_context_length = runner.max_context_length();
  s.kv_groups = runner.kv_cache_groups();
  s.tokenizer = options.tokenizer;
  s.eos_token_ids = options.eos_token_ids;
  if (options.tokenizer != nullptr) {
    for (int32_t id : options.tokenizer->eos_ids()) {
      if (std::find(s.eos_token_ids.begin(), s.eos_token_ids.end(), id) == s.eos_token_ids.end()) {
        s.eos_token_ids.push_back(id);
      }
    }
  }
  return s;
}

EngineCoreOptions MakeCoreOptions(const EngineOptions& options) {
  EngineCoreOptions core;
  core.model_name = options.model_name;
  core.max_queued_requests = options.max_queued_requests;
  core.max_queued_requests_per_tenant = options.max_queued_requests_per_tenant;
  core.stall_timeout = options.stall_timeout;
  core.device = options.device;
  return core;
}

}  // namespace

int64_t KvBlocksAtLongest(int64_t prompt_tokens, int64_t max_tokens, int64_t n, int64_t block_size) {
  const int64_t shared = (prompt_tokens - 1) / block_size;
  const int64_t per_choice = (prompt_tokens + max_tokens - 1 + block_size - 1) / block_size - shared;
  return shared + n * per_choice;
}

int64_t EngineImpl::BlocksAtLongest(int64_t prompt_tokens, int64_t max_tokens, int64_t n) const {
  const int64_t dense = KvBlocksAtLongest(prompt_tokens, max_tokens, n, layout_.block_size);
  const runtime::KvCacheGroups* groups = runner_->kv_cache_groups();
  if (groups == nullptr) return dense;
  int64_t total = 0;
  for (int32_t g = 0; g < groups->num_groups(); ++g) {
    const runtime::KvRetention* retention = groups->group_retention(g);
    if (retention == nullptr) {
      total += dense;
      continue;
    }
    // Each choice holds at most its own peak (its sinks and band, and the
    // step's new blocks); shared blocks counted once per choice bound it.
    const int64_t peak =
        retention->PeakBlocks(prompt_tokens + max_tokens - 1, layout_.block_size, options_.max_num_batched_tokens);
    total += std::min(dense, n * peak);
  }
  return total;
}

bool EngineImpl::HasRetention() const {
  const runtime::KvCacheGroups* groups = runner_->kv_cache_groups();
  return groups != nullptr && groups->any_retention();
}

int64_t EngineImpl::TableBlocks() const { return layout_.num_blocks / std::max(1, layout_.num_groups); }

EngineImpl::EngineImpl(const EngineOptions& options, std::unique_ptr<runtime::ModelRunner> runner)
    : options_(options),
      layout_(runner->kv_cache_layout()),
      vocab_size_(runner->vocab_size()),
      max_context_(runner->max_context_length()),
      core_(MakeCoreOptions(options)),
      runner_(std::move(runner)),
      scheduler_(MakeSchedulerOptions(options, *runner_), layout_) {
  stats_.kv_blocks_total = layout_.num_blocks;
}

EngineImpl::~EngineImpl() { Drain(absl::ZeroDuration()); }

void EngineImpl::Start() {
  core_.Start([this] { Loop(); });
}

absl::Status EngineImpl::Validate(EngineRequest& request) const {
  if (request.request_id.empty()) return absl::InvalidArgumentError("request_id is empty");
  if (request.prompt_token_ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  RETURN_IF_ERROR(request.sampling.Validate());
  if (request.sampling.n > options_.max_num_seqs) {
    return absl::InvalidArgumentError(absl::StrCat("n = ", request.sampling.n, " choices exceed the ",
                                                   options_.max_num_seqs, " sequences a step may run"));
  }
  for (size_t i = 0; i < request.prompt_token_ids.size(); ++i) {
    const int32_t id = request.prompt_token_ids[i];
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", i, " is ", id, ", outside the vocabulary [0, ",
                                                     vocab_size_, ")"));
    }
  }
  const int64_t prompt = static_cast<int64_t>(request.prompt_token_ids.size());
  // The last sampled token is never fed back, so a request occupies
  // prompt + max_tokens - 1 KV positions (in every KV-cache group).
  const int64_t kv_tokens = TableBlocks() * layout_.block_size;
  if (prompt >= max_context_) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", prompt, " tokens; the context holds ", max_context_, " (room for output needed)"));
  }
  // With KV retention (MoA, sliding windows) a sequence holds only the
  // blocks some query still reads, so only the block count below limits it.
  const bool retention = HasRetention();
  if (!retention && prompt > kv_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", prompt, " tokens; the KV cache holds ", kv_tokens));
  }
  const int64_t n = request.sampling.n;
  const int64_t num_blocks = layout_.num_blocks;
  const int64_t bs = layout_.block_size;
  if (request.sampling.max_tokens.has_value()) {
    const int64_t max_tokens = *request.sampling.max_tokens;
    if (prompt + max_tokens > max_context_) {
      return absl::InvalidArgumentError(absl::StrCat("prompt (", prompt, " tokens) + max_tokens (", max_tokens,
                                                     ") exceeds the context of ", max_context_));
    }
    if (!retention && prompt + max_tokens - 1 > kv_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("prompt (", prompt, " tokens) + max_tokens (", max_tokens,
                                                     ") exceeds the KV cache of ", kv_tokens, " tokens"));
    }
    const int64_t blocks = BlocksAtLongest(prompt, max_tokens, n);
    if (blocks > num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "n = ", n, " choices of prompt (", prompt, " tokens) + max_tokens (", max_tokens, ") need up to ", blocks,
          " KV blocks at once; the KV cache holds ", num_blocks, " blocks of ", bs, " tokens even when empty"));
    }
  } else if (retention) {
    // The most output that fits: BlocksAtLongest grows with max_tokens.
    if (BlocksAtLongest(prompt, 1, n) > num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "n = ", n, " choices of prompt (", prompt, " tokens) need ", BlocksAtLongest(prompt, 1, n),
          " KV blocks at once, even with the blocks no query reads again freed; the KV cache holds ", num_blocks,
          " blocks of ", bs, " tokens even when empty"));
    }
    int64_t lo = 1, hi = max_context_ - prompt;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo + 1) / 2;
      if (BlocksAtLongest(prompt, mid, n) <= num_blocks) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    request.sampling.max_tokens = static_cast<int32_t>(lo);
  } else {
    // The most output every choice can have at once: each choice's blocks
    // beyond the shared prefix fit in its share of the rest of the cache.
    const int64_t shared = (prompt - 1) / bs;
    const int64_t last_block = shared + (TableBlocks() - shared) / n;  // blocks a choice may span
    const int64_t fits = last_block * bs + 1 - prompt;
    if (fits < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "n = ", n, " choices of prompt (", prompt, " tokens) need ", BlocksAtLongest(prompt, 1, n),
          " KV blocks at once; the KV cache holds ", num_blocks, " blocks of ", bs, " tokens even when empty"));
    }
    request.sampling.max_tokens = static_cast<int32_t>(std::min(max_context_ - prompt, fits));
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::Submit(EngineRequest request, std::shared_ptr<RequestSink> sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("no sink");
  RETURN_IF_ERROR(Validate(request));
  if (request.tenant == nullptr) request.tenant = &core_.default_tenant();
  const uint64_t seed = request.sampling.seed.has_value() ? *request.sampling.seed : runtime::DrawRandomSeed();
  // What the token quota reserves: the most the request can cost.
  const int64_t cost = int64_t(request.prompt_token_ids.size()) +
                       int64_t(request.sampling.n) * int64_t(request.sampling.max_tokens.value_or(0));
  std::string id = request.request_id;
  const Tenant* tenant = request.tenant;
  return core_.Submit(std::move(id), tenant, cost, Submission{std::move(request), std::move(sink), seed});
}

void EngineImpl::Cancel(const RequestKey& key) { core_.Cancel(key); }

EngineStats EngineImpl::Stats() const {
  EngineStats stats;
  {
    absl::MutexLock lock(&stats_mu_);
    stats = stats_;
  }
  stats.busy_for = core_.BusyFor();
  stats.stalled = stats.busy_for > options_.stall_timeout;
  return stats;
}

void EngineImpl::Drain(absl::Duration timeout) {
  core_.Drain(timeout);
  delivery_.Stop();  // every delta and end of the finished requests reaches its sink
}

void EngineImpl::Admit(Submission submission) {
  EngineRequest& r = submission.request;
  SequenceGroup::Options options;
  options.request_id = r.request_id;
  options.tenant = r.tenant;
  options.priority = r.priority;
  options.sampling = r.sampling;
  options.arrival_time = r.arrival_time == absl::InfinitePast() ? absl::Now() : r.arrival_time;
  options.deadline = r.deadline;
  const RequestKey key{r.tenant->name, r.request_id};
  InFlight flight{std::move(submission.sink), core_.TrackDeadline(key, r.deadline), std::move(r.program), {}};
  auto [it, inserted] = in_flight_.emplace(key, std::move(flight));
  CHECK(inserted);
  if (it->second.program == nullptr) {
    scheduler_.Add(std::move(options), std::move(r.prompt_token_ids), submission.seed);
    return;
  }
  const ProgramLimits limits{max_context_, TableBlocks() * layout_.block_size};
  absl::StatusOr<ProgramPhase> phase = it->second.program->Start(r, limits);
  absl::Status status = phase.status();
  if (status.ok()) status = AddPhase(r.request_id, options, *std::move(phase), submission.seed, false);
  if (!status.ok()) FinishRequest(key, status);
}

absl::Status EngineImpl::ValidatePhase(const ProgramPhase& phase) const {
  if (phase.branches.empty()) return absl::InternalError("a program phase has no sequences");
  const int64_t kv_tokens = TableBlocks() * layout_.block_size;
  const int64_t bs = layout_.block_size;
  const int64_t prefix = static_cast<int64_t>(phase.shared_prefix.size());
  const runtime::KvCacheGroups* groups = runner_->kv_cache_groups();
  const int32_t num_groups = groups != nullptr ? groups->num_groups() : 1;
  // Blocks the whole phase may need at its longest, over every KV-cache
  // group: the prefix once, each branch's suffix and output on its own (a
  // partial prefix block copied).
  int64_t blocks = num_groups * (prefix / bs);
  for (const BranchSpec& b : phase.branches) {
    RETURN_IF_ERROR(b.sampling.Validate());
    if (b.suffix.empty()) return absl::InternalError("a program phase has a sequence with no tokens of its own");
    if (!b.sampling.max_tokens.has_value()) return absl::InternalError("a program phase left max_tokens unset");
    for (int32_t id : b.suffix) {
      if (id < 0 || id >= vocab_size_) {
        return absl::InvalidArgumentError(absl::StrCat("a prompt token is ", id, ", outside the vocabulary"));
      }
    }
    const int64_t length = prefix + static_cast<int64_t>(b.suffix.size()) + *b.sampling.max_tokens;
    if (length > max_context_) {
      return absl::InvalidArgumentError(absl::StrCat("a phase's prompt (", length - *b.sampling.max_tokens,
                                                     " tokens) + max_tokens (", *b.sampling.max_tokens,
                                                     ") exceeds the context of ", max_context_));
    }
    const int64_t own = (length - 1 + bs - 1) / bs - prefix / bs;
    for (int32_t g = 0; g < num_groups; ++g) {
      const runtime::KvRetention* retention = groups != nullptr ? groups->group_retention(g) : nullptr;
      blocks += retention == nullptr ? own
                                     : std::min(own, retention->PeakBlocks(length - 1, layout_.block_size,
                                                                           options_.max_num_batched_tokens));
    }
  }
  for (int32_t id : phase.shared_prefix) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat("a prompt token is ", id, ", outside the vocabulary"));
    }
  }
  if (blocks > layout_.num_blocks) {
    return absl::InvalidArgumentError(absl::StrCat("the phase's ", phase.branches.size(), " sequences need up to ",
                                                   blocks / num_groups * bs, " KV positions; the cache holds ",
                                                   kv_tokens));
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::AddPhase(const std::string& request_id, const SequenceGroup::Options& base, ProgramPhase phase,
                                  uint64_t seed, bool continuation) {
  RETURN_IF_ERROR(ValidatePhase(phase));
  SequenceGroup::Options options = base;
  options.request_id = request_id;
  options.continuation = continuation;
  scheduler_.AddGroup(std::move(options), std::move(phase.shared_prefix), std::move(phase.branches), seed);
  return absl::OkStatus();
}

void EngineImpl::AbortExpired(absl::Time now) {
  for (const RequestKey& key : core_.Expired(now)) {
    std::unique_ptr<SequenceGroup> group = scheduler_.Abort(key);
    if (group == nullptr) {
      // A cancel in this same iteration aborted it first (gRPC cancels a call
      // whose deadline passed, so both come together); it waits in done_,
      // and Finish erases this entry.
      CHECK(in_flight_.contains(key)) << "deadline of unknown request " << key.id << " of tenant " << key.tenant;
      continue;
    }
    done_.emplace_back(std::move(group),
                       absl::DeadlineExceededError(absl::StrCat("request ", key.id, " passed its deadline")));
  }
}

void EngineImpl::FailAll(const absl::Status& status) {
  for (auto& group : scheduler_.AbortAll()) done_.emplace_back(std::move(group), status);
}

void EngineImpl::FinishDone() {
  for (auto& [group, status] : done_) Finish(std::move(group), status);
  done_.clear();
}

void EngineImpl::EmitDeltas(SequenceGroup& group, bool request_final) {
  auto it = in_flight_.find(group.key());
  CHECK(it != in_flight_.end());
  std::vector<ChoiceDelta> deltas;
  for (const auto& seq : group.sequences()) {
    PendingOutput& p = seq->pending();
    const bool report_finish = seq->finished() && !p.finished_reported;
    if (p.token_ids.empty() && p.text.empty() && !report_finish) continue;
    ChoiceDelta d;
    d.index = seq->index();
    d.text = std::move(p.text);
    d.token_ids = std::move(p.token_ids);
    d.logprobs = std::move(p.logprobs);
    p.text.clear();
    p.token_ids.clear();
    p.logprobs.clear();
    if (report_finish) {
      d.finish_reason = seq->finish_reason();
      d.stop_reason = seq->stop_reason();
      d.aborted = seq->aborted();
      p.finished_reported = true;
    }
    deltas.push_back(std::move(d));
  }
  if (it->second.program != nullptr) deltas = it->second.program->Present(std::move(deltas), request_final);
  if (!deltas.empty()) {
    delivery_.Post([sink = it->second.sink, deltas = std::move(deltas)] { sink->OnDeltas(deltas); });
  }
}

void EngineImpl::AddUsage(InFlight& flight, const SequenceGroup& group) {
  flight.usage.prompt_tokens += group.num_prompt_tokens();
  for (const auto& seq : group.sequences()) flight.usage.completion_tokens += seq->num_output_tokens();
  flight.usage.cached_prompt_tokens += group.cached_prompt_tokens();
  if (!flight.queue_time_set && group.admitted() && group.arrival_time() != absl::InfinitePast()) {
    flight.usage.queue_time = std::max(absl::ZeroDuration(), group.admitted_time() - group.arrival_time());
    flight.queue_time_set = true;
  }
}

void EngineImpl::Complete(std::unique_ptr<SequenceGroup> group) {
  auto it = in_flight_.find(group->key());
  CHECK(it != in_flight_.end());
  InFlight& flight = it->second;
  if (flight.program == nullptr) {
    Finish(std::move(group), absl::OkStatus());
    return;
  }
  EmitDeltas(*group, /*request_final=*/false);
  AddUsage(flight, *group);
  std::vector<BranchResult> results;
  for (const auto& seq : group->sequences()) {
    BranchResult r;
    r.index = seq->index();
    r.num_prompt_tokens = seq->num_prompt_tokens();
    r.output_token_ids.assign(seq->tokens().begin() + seq->num_prompt_tokens(), seq->tokens().end());
    r.finish_reason = seq->finish_reason();
    results.push_back(std::move(r));
  }
  const RequestKey key = group->key();
  SequenceGroup::Options base;
  base.tenant = &group->tenant();
  base.priority = group->priority();
  base.sampling = group->sampling();
  base.arrival_time = group->arrival_time();
  base.deadline = group->deadline();
  const uint64_t seed = group->seed();
  group.reset();
  absl::StatusOr<std::optional<ProgramPhase>> next = flight.program->Next(results);
  absl::Status status = next.status();
  if (status.ok() && next->has_value()) {
    status = AddPhase(key.id, base, **std::move(next), seed, /*continuation=*/true);
    if (status.ok()) return;
  }
  FinishRequest(key, status);
}

void EngineImpl::Finish(std::unique_ptr<SequenceGroup> group, const absl::Status& status) {
  EmitDeltas(*group, /*request_final=*/false);
  auto it = in_flight_.find(group->key());
  CHECK(it != in_flight_.end());
  AddUsage(it->second, *group);
  const RequestKey key = group->key();
  group.reset();
  FinishRequest(key, status);
}

void EngineImpl::FinishRequest(const RequestKey& key, const absl::Status& status) {
  auto it = in_flight_.find(key);
  CHECK(it != in_flight_.end());
  InFlight& flight = it->second;
  if (flight.program != nullptr) {
    // What the program still holds back (ordered points) goes out now.
    std::vector<ChoiceDelta> rest = flight.program->Present({}, /*request_final=*/true);
    if (!rest.empty()) delivery_.Post([sink = flight.sink, rest = std::move(rest)] { sink->OnDeltas(rest); });
  }
  const RequestUsage usage = flight.usage;
  std::shared_ptr<RequestSink> sink = std::move(flight.sink);
  core_.UntrackDeadline(flight.deadline);
  in_flight_.erase(it);
  // Prompt and completion are what the request cost; the rest of its quota
  // reservation is refunded.
  core_.Finished(key, int64_t(usage.prompt_tokens) + usage.completion_tokens);
  delivery_.Post([sink = std::move(sink), status, usage] { sink->OnDone(status, usage); });
}

void EngineImpl::PublishStats(bool stepped) {
  const SchedulerStats s = scheduler_.stats();
  // What Submit's queue bounds count: requests not yet running.
  absl::flat_hash_map<std::string, int64_t> waiting_by_tenant;
  if (options_.max_queued_requests_per_tenant > 0) {
    for (const auto& [key, flight] : in_flight_) {
      const SequenceGroup* group = scheduler_.Find(key);
      if (group != nullptr && !group->admitted()) ++waiting_by_tenant[group->tenant().name];
    }
  }
  const int64_t inbox = core_.PublishWaiting(scheduler_.num_waiting_groups(), waiting_by_tenant);
  absl::MutexLock lock(&stats_mu_);
  stats_.running = s.running;
  stats_.waiting = s.waiting + static_cast<int32_t>(inbox);
  stats_.kv_blocks_total = s.blocks.num_blocks;
  stats_.kv_blocks_used = s.blocks.num_used;
  stats_.steps = s.steps;
  stats_.preemptions = s.preemptions;
  stats_.prefix_cache_queries = s.blocks.prefix_queries;
  stats_.prefix_cache_hits = s.blocks.prefix_hits;
  stats_.prompt_tokens = s.prompt_tokens;
  stats_.generation_tokens = s.generation_tokens;
  stats_.steps_planned_ahead = steps_planned_ahead_;
  if (stepped) {
    stats_.last_step_time = absl::Now();
    stats_.last_step_batched_tokens = last_batched_tokens_;
  }
}

void EngineImpl::Loop() {
  while (true) {
    Core::Intake intake = core_.Take(scheduler_.HasWork() || step_launched_);
    for (Core::Submission& sub : intake.submissions) Admit(std::move(sub.payload));
    if (step_launched_) {
      // A step planned ahead runs: requests leave between steps, when none is in flight.
      deferred_cancels_.insert(deferred_cancels_.end(), intake.cancels.begin(), intake.cancels.end());
    } else {
      switch (StartStep(intake)) {
        case Started::kStep:
          break;
        case Started::kNothing:
          continue;
        case Started::kStopped:
          return;
      }
    }
    FinishStep(intake);
  }
}

EngineImpl::Started EngineImpl::StartStep(const Core::Intake& intake) {
  const bool draining = intake.draining;
  std::vector<RequestKey> cancels = std::move(deferred_cancels_);
  deferred_cancels_.clear();
  cancels.insert(cancels.end(), intake.cancels.begin(), intake.cancels.end());
  for (const RequestKey& key : cancels) {
    if (std::unique_ptr<SequenceGroup> group = scheduler_.Abort(key)) done_.emplace_back(std::move(group), absl::OkStatus());
  }
  const absl::Time now = absl::Now();
  AbortExpired(now);
  if (draining && now >= intake.drain_deadline) {
    FailAll(absl::UnavailableError("the engine drained before the request finished"));
  }
  if (!scheduler_.HasWork()) {
    PublishStats(false);
    FinishDone();
    if (draining) {
      core_.Stop();  // for good: a stopped engine is not stalled
      return Started::kStopped;
    }
    return Started::kNothing;
  }

  const ScheduleOutput& out = scheduler_.Schedule();
  last_batched_tokens_ = out.num_batched_tokens;
  // The queue shrank and aborted blocks are free: publish before waking
  // clients (OnDone) and before the step, so Submit sees the room.
  PublishStats(false);
  FinishDone();
  if (out.empty()) {
    // Nothing to compute. When planning moved something (a preemption, a
    // sequence that started without tokens to compute) plan again at once;
    // otherwise nothing changes until a request arrives or leaves.
    const bool stuck = out.stuck();
    scheduler_.DiscardStep();
    if (stuck) core_.SleepUntilChange(intake, absl::InfiniteFuture());
    return Started::kNothing;
  }
  if (absl::Status launched = Launch(out); !launched.ok()) {
    FailStep(launched, out.plan.sequences.size());
    return Started::kNothing;
  }
  return Started::kStep;
}

absl::Status EngineImpl::Launch(const ScheduleOutput& out) {
  core_.TakeDeviceTurn(&turn_);
  launched_sequences_ = out.plan.sequences.size();
  absl::Status launched = runner_->Launch(out.plan);
  if (!launched.ok()) {
    (void)runner_->Collect();  // the runner holds the failed launch until collected
    turn_.reset();
    return launched;
  }
  step_launched_ = true;
  return absl::OkStatus();
}

absl::StatusOr<runtime::StepResult> EngineImpl::Collect() {
  absl::StatusOr<runtime::StepResult> result = runner_->Collect();
  turn_.reset();
  step_launched_ = false;
  return result;
}

const ScheduleOutput* EngineImpl::PlanAhead(const Core::Intake& intake) {
  // Not while requests wait to leave, nor while another engine
  // waits for the device: its turn comes between two steps, and this
  // step's output should not wait for it.
  if (!options_.async_scheduling || core_.DeviceContended() || intake.draining || !deferred_cancels_.empty() ||
      core_.EarliestDeadline() <= absl::Now()) {
    return nullptr;
  }
  return scheduler_.ScheduleAhead();
}

void EngineImpl::FinishStep(const Core::Intake& intake) {
  // Plan the next step while this one runs.
  const ScheduleOutput* ahead = PlanAhead(intake);
  const size_t planned = ahead != nullptr ? ahead->plan.sequences.size() : 0;
  absl::StatusOr<runtime::StepResult> result = Collect();
  if (!result.ok()) {
    FailStep(result.status(), launched_sequences_);
    return;
  }
  absl::Status next = absl::OkStatus();
  if (ahead != nullptr) {
    last_batched_tokens_ = ahead->num_batched_tokens;
    ++steps_planned_ahead_;
    scheduler_.CountCollectedSamples(*result);  // penalties see the collected tokens
    next = Launch(*ahead);
  }
  absl::StatusOr<StepOutcome> outcome = scheduler_.Apply(*result);
  if (!outcome.ok()) {
    spdlog::error("model {}: {}", options_.model_name, outcome.status().ToString());
    if (step_launched_) (void)Collect();  // the step ahead computed for a plan that is gone
    FailAll(outcome.status());
    PublishStats(true);
    FinishDone();
    return;
  }
  // Stats first, so that a client woken by OnDone sees the freed blocks.
  PublishStats(true);
  for (SequenceGroup* group : outcome->updated) EmitDeltas(*group, /*request_final=*/false);
  for (auto& group : outcome->finished) Complete(std::move(group));
  // A row that could not be sampled fails its own request, not the step.
  for (FailedGroup& failed : outcome->failed) {
    spdlog::warn("model {}: request {} failed: {}", options_.model_name, failed.group->request_id(),
                 failed.status.ToString());
    Finish(std::move(failed.group),
           absl::InternalError(absl::StrCat("the model's output could not be sampled: ", failed.status.message())));
  }
  // The step planned ahead could not start: it fails as a step that ran would.
  if (!next.ok()) FailStep(next, planned);
}

void EngineImpl::FailStep(const absl::Status& status, size_t num_sequences) {
  spdlog::error("model {}: step {} of {} sequences failed: {}", options_.model_name, scheduler_.stats().steps,
                num_sequences, status.ToString());
  const absl::Status health = runner_->Health();
  bool first_fatal = false;
  if (!health.ok()) {
    // The device is gone: every request fails, and so does every later step.
    spdlog::critical("model {}: the device cannot run more steps: {}", options_.model_name, health.ToString());
    first_fatal = core_.SetFatal(health);
    scheduler_.DiscardStep();
    FailAll(absl::Status(absl::StatusCode::kUnavailable, absl::StrCat("model step failed: ", status.message())));
  } else {
    // The device can go on (out of device memory, say): the requests of
    // this step fail with its error; the others run on as if it never was.
    const absl::Status failed(status.code(), absl::StrCat("model step failed: ", status.message()));
    for (auto& group : scheduler_.AbortStep()) done_.emplace_back(std::move(group), failed);
  }
  PublishStats(true);
  FinishDone();
  if (first_fatal && options_.on_fatal) options_.on_fatal(health);
}

}  // namespace tern::scheduler
