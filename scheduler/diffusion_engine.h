// DiffusionEngine: one per served diffusion model. Its engine thread runs
// denoising steps with step-level continuous batching: requests join the
// running batch and leave it at step boundaries, every sample carrying its
// own timestep, sampler state, class, guidance scale and seed, so one forward
// pass advances samples of different requests at different steps. A sample's
// result does not depend on its batch mates (runtime/dit/README.md: batch
// invariance), so a request gives the same images alone or batched.
//
// The request lifecycle (admission and queue bounds, tenants' queue limits,
// cancel, deadlines, drain, liveness) is the EngineCore's, shared with the
// LLM engine (engine_core.h).
//
// Thread-safe entry points: Submit, Cancel, Stats, Drain (and the
// destructor). Sinks are called on the engine's delivery thread, never on
// the engine thread: they may build protobufs and encode images there, but
// whatever they spend delays the events of other requests (not the steps).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/diffusion_runner.h"
#include "runtime/dit/dit_pipeline.h"
#include "scheduler/device_turns.h"
#include "scheduler/request_key.h"
#include "scheduler/tenant.h"

namespace tern::scheduler {

struct DiffusionRequest {
  std::string request_id;          // unique among the tenant's in-flight requests
  const Tenant* tenant = nullptr;  // borrowed; outlives the engine. Null: kDefaultTenantName
  int32_t priority = 0;            // higher first within a tenant (tenant priority already added)
  // Image i is generated with `params` and seed params.seed + i.
  runtime::DenoisingParams params;
  int32_t num_images = 1;  // [1, DiffusionEngineOptions::max_images_per_request]
  absl::Time arrival_time = absl::InfinitePast();  // InfinitePast: now
  absl::Time deadline = absl::InfiniteFuture();
};

// After each step of a request (its images step together).
struct DiffusionProgress {
  int32_t step = 0;  // steps finished, in [1, total_steps]
  int32_t total_steps = 0;
  absl::Duration since_started = absl::ZeroDuration();  // since the request joined the batch
};

struct DiffusionUsage {
  int32_t images = 0;  // images delivered
  int32_t steps = 0;   // steps the request ran
  // From arrival until it joined the running batch; zero when it never did.
  absl::Duration queue_time = absl::ZeroDuration();
};

class DiffusionSink {
 public:
  virtual ~DiffusionSink() = default;
  // Called on the delivery thread after each step of the request.
  virtual void OnProgress(const DiffusionProgress& progress) = 0;
  // Called once, on the delivery thread, with every image (in index order)
  // when the request's last step is done, before OnDone(OK).
  virtual void OnImages(std::vector<runtime::DitImage> images) = 0;
  // Called once, last: OK after OnImages, else the error (CANCELLED,
  // DEADLINE_EXCEEDED, UNAVAILABLE when drained, the step's error).
  virtual void OnDone(const absl::Status& status, const DiffusionUsage& usage) = 0;
};

struct DiffusionEngineOptions {
  std::string model_name;  // for logs and errors
  // Forward rows per step: the running batch's size (a guided image costs two
  // rows). A request whose images need more is INVALID_ARGUMENT. > 0.
  int32_t max_batch_rows = 16;
  int32_t max_images_per_request = 16;  // > 0
  int32_t max_queued_requests = 1024;   // not yet running; beyond: RESOURCE_EXHAUSTED. > 0
  int32_t max_queued_requests_per_tenant = 0;  // 0: no limit
  absl::Duration stall_timeout = absl::Seconds(30);  // > 0; as EngineOptions::stall_timeout
  // As EngineOptions::on_fatal (engine thread, once). May be empty.
  std::function<void(const absl::Status&)> on_fatal;
  // As EngineOptions::device.
  DeviceShareOptions device;
};

struct DiffusionEngineStats {
  int32_t running_requests = 0;
  int32_t running_images = 0;  // samples in the running batch
  int32_t running_rows = 0;    // their forward rows
  int32_t waiting = 0;         // requests not yet running
  // Cumulative, for rates: mean step time = step_time / steps, mean batch =
  // step_images / steps.
  int64_t steps = 0;
  int64_t step_images = 0;     // images advanced, summed over steps
  int64_t images = 0;          // images finished
  absl::Duration step_time = absl::ZeroDuration();  // all steps' forward + update time
  absl::Time last_step_time = absl::InfinitePast();
  absl::Duration busy_for = absl::ZeroDuration();   // as EngineStats
  bool stalled = false;
};

class DiffusionEngine {
 public:
  // Starts the engine thread and its delivery thread.
  static absl::StatusOr<std::unique_ptr<DiffusionEngine>> Create(const DiffusionEngineOptions& options,
                                                                 std::unique_ptr<runtime::DiffusionRunner> runner);
  virtual ~DiffusionEngine() = default;

  // The model's config (immutable; any thread).
  virtual const runtime::DitConfig& config() const = 0;
  // Enqueues a request; returns at once. INVALID_ARGUMENT naming the field
  // (class_label, steps, guidance_scale, num_images: see
  // runtime::ValidateDenoisingParams), RESOURCE_EXHAUSTED when the queue or
  // the tenant's limit is full, ALREADY_EXISTS for an id in flight for the
  // same tenant (another tenant's is no conflict: request_key.h),
  // UNAVAILABLE when draining or failed. On OK the sink gets OnDone once.
  virtual absl::Status Submit(DiffusionRequest request, std::shared_ptr<DiffusionSink> sink) = 0;
  // Aborts a request: its samples leave the batch before the next step, and
  // its sink gets OnDone(CANCELLED). `key`: the tenant's name (a null
  // tenant's is kDefaultTenantName) and the request id. Unknown keys are
  // ignored: another tenant's request of the same id is never touched.
  virtual void Cancel(const RequestKey& key) = 0;
  virtual DiffusionEngineStats Stats() const = 0;
  // Stops admitting, lets in-flight requests finish until `timeout`, fails
  // the rest with UNAVAILABLE, delivers every pending event, and stops.
  virtual void Drain(absl::Duration timeout) = 0;
};

}  // namespace tern::scheduler
