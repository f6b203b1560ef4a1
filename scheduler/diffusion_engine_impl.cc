#include "scheduler/diffusion_engine_impl.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace tern::scheduler {
namespace {

EngineCoreOptions MakeCoreOptions(const DiffusionEngineOptions& options) {
  EngineCoreOptions core;
  core.model_name = options.model_name;
  core.max_queued_requests = options.max_queued_requests;
  core.max_queued_requests_per_tenant = options.max_queued_requests_per_tenant;
  core.stall_timeout = options.stall_timeout;
  core.device = options.device;
  return core;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DiffusionEngine>> DiffusionEngine::Create(
    const DiffusionEngineOptions& options, std::unique_ptr<runtime::DiffusionRunner> runner) {
  if (runner == nullptr) return absl::InvalidArgumentError("no diffusion runner");
  if (options.max_batch_rows <= 0) return absl::InvalidArgumentError("max_batch_rows must be positive");
  if (options.max_images_per_request <= 0) return absl::InvalidArgumentError("max_images_per_request must be positive");
  if (options.max_queued_requests <= 0) return absl::InvalidArgumentError("max_queued_requests must be positive");
  if (options.max_queued_requests_per_tenant < 0) {
    return absl::InvalidArgumentError("max_queued_requests_per_tenant must not be negative");
  }
  if (options.stall_timeout <= absl::ZeroDuration()) return absl::InvalidArgumentError("stall_timeout must be positive");
  auto engine = std::make_unique<DiffusionEngineImpl>(options, std::move(runner));
  engine->Start();
  return engine;
}

DiffusionEngineImpl::DiffusionEngineImpl(const DiffusionEngineOptions& options,
                                         std::unique_ptr<runtime::DiffusionRunner> runner)
    : options_(options), core_(MakeCoreOptions(options)), runner_(std::move(runner)) {}

DiffusionEngineImpl::~DiffusionEngineImpl() { Drain(absl::ZeroDuration()); }

void DiffusionEngineImpl::Start() {
  core_.Start([this] { Loop(); });
}

void DiffusionEngineImpl::Drain(absl::Duration timeout) {
  core_.Drain(timeout);
  delivery_.Stop();  // every event of the finished requests reaches its sink
}

absl::Status DiffusionEngineImpl::Submit(DiffusionRequest request, std::shared_ptr<DiffusionSink> sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("no sink");
  if (request.request_id.empty()) return absl::InvalidArgumentError("request_id is empty");
  if (request.num_images < 1 || request.num_images > options_.max_images_per_request) {
    return absl::InvalidArgumentError(absl::StrCat("num_images: ", request.num_images, " is not in [1, ",
                                                   options_.max_images_per_request, "]"));
  }
  RETURN_IF_ERROR(runtime::ValidateDenoisingParams(runner_->config(), request.params));
  if (RowsOf(request) > options_.max_batch_rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_images: ", request.num_images, " images", request.params.guidance_scale != 1.0 ? " with guidance" : "",
        " need ", RowsOf(request), " rows a step; the batch holds ", options_.max_batch_rows));
  }
  if (request.arrival_time == absl::InfinitePast()) request.arrival_time = absl::Now();
  std::string id = request.request_id;
  const Tenant* tenant = request.tenant;
  // Token quotas count LLM tokens; an image request reserves none.
  return core_.Submit(std::move(id), tenant, /*quota_tokens=*/0, Submission{std::move(request), std::move(sink)});
}

DiffusionEngineStats DiffusionEngineImpl::Stats() const {
  DiffusionEngineStats stats;
  {
    absl::MutexLock lock(&stats_mu_);
    stats = stats_;
  }
  stats.busy_for = core_.BusyFor();
  stats.stalled = stats.busy_for > options_.stall_timeout;
  return stats;
}

void DiffusionEngineImpl::Queue(Core::Submission submission) {
  DiffusionRequest& r = submission.payload.request;
  r.tenant = submission.tenant;
  QueuedDiffusion queued{r.request_id, r.tenant, r.priority, r.arrival_time, next_order_++, RowsOf(r)};
  InFlight flight;
  flight.request = std::move(r);
  flight.sink = std::move(submission.payload.sink);
  const RequestKey key{flight.request.tenant->name, flight.request.request_id};
  flight.deadline = core_.TrackDeadline(key, flight.request.deadline);
  CHECK(in_flight_.emplace(key, std::move(flight)).second);
  queue_.Push(std::move(queued));
}

void DiffusionEngineImpl::FillBatch() {
  while (const QueuedDiffusion* next = queue_.PickNext()) {
    if (running_rows_ + next->rows > options_.max_batch_rows) return;  // waits for room; nothing jumps it
    const RequestKey id{next->tenant->name, next->request_id};
    queue_.Remove(id);
    InFlight& flight = in_flight_.at(id);
    absl::Status created;
    for (int32_t i = 0; i < flight.request.num_images && created.ok(); ++i) {
      runtime::DenoisingParams params = flight.request.params;
      params.seed += uint64_t(i);
      auto sample = runtime::DenoisingSample::Create(runner_->config(), &runner_->schedule(), params);
      if (sample.ok()) {
        flight.samples.push_back(std::move(*sample));
      } else {
        created = sample.status();
      }
    }
    if (!created.ok()) {
      Finish(id, created);
      continue;
    }
    flight.started = absl::Now();
    flight.running = true;
    queue_.Started(*flight.request.tenant);
    running_.push_back(id);
    running_rows_ += RowsOf(flight.request);
  }
}

void DiffusionEngineImpl::Finish(const RequestKey& key, const absl::Status& status,
                                 std::vector<runtime::DitImage> images) {
  auto it = in_flight_.find(key);
  CHECK(it != in_flight_.end());
  InFlight& flight = it->second;
  queue_.Remove(key);  // false unless it was still waiting
  if (flight.running) LeaveBatch(flight);
  DiffusionUsage usage;
  usage.images = static_cast<int32_t>(images.size());
  usage.steps = flight.steps;
  if (flight.started != absl::InfinitePast()) {
    usage.queue_time = std::max(absl::ZeroDuration(), flight.started - flight.request.arrival_time);
  }
  core_.UntrackDeadline(flight.deadline);
  std::shared_ptr<DiffusionSink> sink = std::move(flight.sink);
  in_flight_.erase(it);
  core_.Finished(key, 0);
  delivery_.Post([sink, status, usage, images = std::move(images)]() mutable {
    if (status.ok()) sink->OnImages(std::move(images));
    sink->OnDone(status, usage);
  });
}

void DiffusionEngineImpl::LeaveBatch(InFlight& flight) {
  CHECK(flight.running);
  flight.running = false;
  flight.samples.clear();
  queue_.Stopped(*flight.request.tenant);
  running_.erase(std::find(running_.begin(), running_.end(),
                           RequestKey{flight.request.tenant->name, flight.request.request_id}));
  running_rows_ -= RowsOf(flight.request);
}

void DiffusionEngineImpl::FailAll(const absl::Status& status) {
  std::vector<RequestKey> keys;
  for (const auto& [key, flight] : in_flight_) keys.push_back(key);
  std::sort(keys.begin(), keys.end(),
            [](const RequestKey& a, const RequestKey& b) { return std::tie(a.tenant, a.id) < std::tie(b.tenant, b.id); });
  for (const RequestKey& key : keys) Finish(key, status);
}

void DiffusionEngineImpl::Step() {
  std::vector<runtime::DenoisingSample*> samples;
  for (const RequestKey& id : running_) {
    for (auto& sample : in_flight_.at(id).samples) samples.push_back(sample.get());
  }
  absl::Status status;
  absl::Duration took;
  {
    DeviceTurn turn = core_.StepOnDevice();
    const absl::Time begin = absl::Now();
    status = runner_->Step(samples);
    took = absl::Now() - begin;
  }
  ++steps_;
  step_time_ += took;
  last_step_time_ = absl::Now();
  if (!status.ok()) {
    spdlog::error("model {}: diffusion step {} failed, failing {} requests: {}", options_.model_name, steps_,
                  in_flight_.size(), status.ToString());
    const absl::Status health = runner_->Health();
    bool first_fatal = false;
    if (!health.ok()) {
      spdlog::critical("model {}: the device cannot run more steps: {}", options_.model_name, health.ToString());
      first_fatal = core_.SetFatal(health);
    }
    // Running requests fail with the step; waiting ones only when the device is gone.
    const absl::Status failure(health.ok() ? status.code() : absl::StatusCode::kUnavailable,
                               absl::StrCat("diffusion step failed: ", status.message()));
    if (health.ok()) {
      const std::vector<RequestKey> running = running_;
      for (const RequestKey& key : running) Finish(key, failure);
    } else {
      FailAll(failure);
    }
    PublishStats();
    if (first_fatal && options_.on_fatal) options_.on_fatal(health);
    return;
  }
  step_images_ += static_cast<int64_t>(samples.size());

  std::vector<RequestKey> done;
  for (const RequestKey& id : running_) {
    InFlight& flight = in_flight_.at(id);
    ++flight.steps;
    queue_.Charge(*flight.request.tenant, RowsOf(flight.request));
    const runtime::DenoisingSample& first = *flight.samples.front();
    const DiffusionProgress progress{first.step(), first.num_steps(), absl::Now() - flight.started};
    delivery_.Post([sink = flight.sink, progress] { sink->OnProgress(progress); });
    if (first.done()) done.push_back(id);
  }
  std::vector<std::pair<RequestKey, std::vector<runtime::DitImage>>> finished;
  // The finished requests' images, decoded together (a latent model's VAE
  // pass; an image is the same whatever it is decoded with).
  std::vector<const runtime::DenoisingSample*> done_samples;
  for (const auto& id : done) {
    for (const auto& sample : in_flight_.at(id).samples) done_samples.push_back(sample.get());
  }
  absl::StatusOr<std::vector<runtime::DitImage>> decoded = runner_->MakeImages(done_samples);
  if (!decoded.ok()) {
    const absl::Status health = runner_->Health();
    spdlog::error("model {}: making the images of {} requests failed: {}", options_.model_name, done.size(),
                  decoded.status().ToString());
    const absl::Status failure(health.ok() ? decoded.status().code() : absl::StatusCode::kUnavailable,
                               absl::StrCat("making the images failed: ", decoded.status().message()));
    for (const auto& id : done) Finish(id, failure);
    bool first_fatal = false;
    if (!health.ok()) {
      first_fatal = core_.SetFatal(health);
      FailAll(failure);
    }
    PublishStats();
    if (first_fatal && options_.on_fatal) options_.on_fatal(health);
    return;
  }
  size_t next_image = 0;
  for (const RequestKey& id : done) {
    std::vector<runtime::DitImage> images;
    for (size_t i = 0; i < in_flight_.at(id).samples.size(); ++i) {
      images.push_back(std::move((*decoded)[next_image++]));
    }
    images_ += static_cast<int64_t>(images.size());
    finished.emplace_back(id, std::move(images));
  }
  // The snapshot shows the step and the freed rows before any client hears of it.
  for (auto& [id, images] : finished) LeaveBatch(in_flight_.at(id));
  PublishStats();
  for (auto& [id, images] : finished) Finish(id, absl::OkStatus(), std::move(images));
}

void DiffusionEngineImpl::PublishStats() {
  const int64_t inbox = core_.PublishWaiting(queue_.size(), options_.max_queued_requests_per_tenant > 0
                                                                ? queue_.WaitingByTenant()
                                                                : absl::flat_hash_map<std::string, int64_t>());
  int32_t images = 0;
  for (const RequestKey& id : running_) images += static_cast<int32_t>(in_flight_.at(id).samples.size());
  absl::MutexLock lock(&stats_mu_);
  stats_.running_requests = static_cast<int32_t>(running_.size());
  stats_.running_images = images;
  stats_.running_rows = running_rows_;
  stats_.waiting = static_cast<int32_t>(queue_.size() + inbox);
  stats_.steps = steps_;
  stats_.step_images = step_images_;
  stats_.images = images_;
  stats_.step_time = step_time_;
  stats_.last_step_time = last_step_time_;
}

void DiffusionEngineImpl::Loop() {
  while (true) {
    Core::Intake intake = core_.Take(!in_flight_.empty());
    for (Core::Submission& sub : intake.submissions) Queue(std::move(sub));
    for (const RequestKey& key : intake.cancels) {
      if (in_flight_.contains(key)) {
        Finish(key, absl::CancelledError(absl::StrCat("request ", key.id, " was cancelled")));
      }
    }
    const absl::Time now = absl::Now();
    for (const RequestKey& key : core_.Expired(now)) {
      Finish(key, absl::DeadlineExceededError(absl::StrCat("request ", key.id, " passed its deadline")));
    }
    if (intake.draining && now >= intake.drain_deadline) {
      FailAll(absl::UnavailableError("the engine drained before the request finished"));
    }
    if (in_flight_.empty()) {
      PublishStats();
      if (intake.draining) {
        core_.Stop();  // for good: a stopped engine is not stalled
        return;
      }
      continue;
    }
    FillBatch();
    PublishStats();
    if (running_.empty()) {
      // Requests wait but none may start (their tenants are at their
      // concurrency limit): only an arrival, a cancel or a deadline changes that.
      core_.SleepUntilChange(intake, absl::InfiniteFuture());
      continue;
    }
    Step();
  }
}

}  // namespace tern::scheduler
