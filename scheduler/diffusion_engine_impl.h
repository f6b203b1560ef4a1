// DiffusionEngineImpl: the DiffusionEngine of diffusion_engine.h.
//
// The engine thread owns the runner, the waiting queue and the running
// batch; other threads only touch the EngineCore (inbox, cancels, admission,
// drain, liveness) and the stats snapshot. Each pass:
//
//   1. take the inbox and cancels; queue new requests; abort cancelled ones
//      and those past their deadline (their samples leave the batch now,
//      before the next step); past the drain deadline, fail the rest;
//   2. fill the batch: the fairest waiting request joins while its rows
//      fit max_batch_rows (when the fairest does not fit, nothing else
//      jumps it: it joins as rows free up, so big requests do not starve);
//   3. one forward pass over every running sample (DiffusionRunner::Step);
//   4. per request: a progress event; when its last step is done, its
//      images and OnDone; it leaves the batch.
//
// Events go to sinks through the DeliveryThread, after the stats snapshot
// shows the step: the engine thread builds no protobuf and encodes no image.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/delivery_thread.h"
#include "scheduler/diffusion_engine.h"
#include "scheduler/diffusion_queue.h"
#include "scheduler/engine_core.h"

namespace tern::scheduler {

class DiffusionEngineImpl final : public DiffusionEngine {
 public:
  // Use DiffusionEngine::Create, which validates the options and calls Start.
  DiffusionEngineImpl(const DiffusionEngineOptions& options, std::unique_ptr<runtime::DiffusionRunner> runner);
  ~DiffusionEngineImpl() override;

  void Start();

  const runtime::DitConfig& config() const override { return runner_->config(); }
  absl::Status Submit(DiffusionRequest request, std::shared_ptr<DiffusionSink> sink) override;
  void Cancel(const RequestKey& key) override { core_.Cancel(key); }
  DiffusionEngineStats Stats() const override;
  void Drain(absl::Duration timeout) override;

 private:
  struct Submission {
    DiffusionRequest request;
    std::shared_ptr<DiffusionSink> sink;
  };
  using Core = EngineCore<Submission>;
  // A request from admission to its end.
  struct InFlight {
    DiffusionRequest request;
    std::shared_ptr<DiffusionSink> sink;
    Core::DeadlineHandle deadline;
    std::vector<std::unique_ptr<runtime::DenoisingSample>> samples;  // empty until it runs
    absl::Time started = absl::InfinitePast();  // joined the batch
    bool running = false;                       // in running_ (its samples step)
    int32_t steps = 0;
  };

  void Loop();
  int32_t RowsOf(const DiffusionRequest& request) const {
    return request.num_images * (request.params.guidance_scale != 1.0 ? 2 : 1);
  }
  // Engine thread only.
  void Queue(Core::Submission submission);
  // Moves waiting requests into the running batch while they fit.
  void FillBatch();
  // Runs one step over the batch and hands out its events.
  void Step();
  // Ends a request (waiting or running): OnDone(status) through the
  // delivery thread, after `images` (only when OK).
  void Finish(const RequestKey& key, const absl::Status& status,
              std::vector<runtime::DitImage> images = {});
  void FailAll(const absl::Status& status);
  // Takes a running request's samples out of the batch.
  void LeaveBatch(InFlight& flight);
  void PublishStats();

  const DiffusionEngineOptions options_;
  Core core_;
  mutable absl::Mutex stats_mu_;
  DiffusionEngineStats stats_ ABSL_GUARDED_BY(stats_mu_);

  // Engine thread only.
  std::unique_ptr<runtime::DiffusionRunner> runner_;
  DiffusionQueue queue_;
  absl::flat_hash_map<RequestKey, InFlight> in_flight_;
  std::vector<RequestKey> running_;  // requests in the batch, in the order they joined
  int32_t running_rows_ = 0;
  uint64_t next_order_ = 0;
  int64_t steps_ = 0;
  int64_t step_images_ = 0;
  int64_t images_ = 0;
  absl::Duration step_time_ = absl::ZeroDuration();
  absl::Time last_step_time_ = absl::InfinitePast();

  // Declared last: destroyed (stopped) first, while the sinks it may still
  // run are alive; Drain stops it before then.
  DeliveryThread delivery_;
};

}  // namespace tern::scheduler
