// Diffusion metrics. Per request (observed by the image stream on the
// diffusion engine's delivery thread, never on the engine thread):
//   tern_diffusion_queue_time_seconds{model,tenant}   arrival -> joined the batch
//   tern_diffusion_e2e_seconds{model,tenant}          arrival -> last image
//   tern_diffusion_images_total{model,tenant}         images delivered (rate: images/s)
//   tern_diffusion_requests_total{model,tenant,outcome}  ok, cancelled, deadline, rejected, error
// Per engine, read from DiffusionEngine::Stats at scrape (DiffusionCollector):
//   tern_diffusion_running_images{model}, tern_diffusion_running_requests{model},
//   tern_diffusion_waiting_requests{model}, tern_diffusion_steps_total{model},
//   tern_diffusion_step_seconds_total{model} (mean step time: rate of this / rate of steps),
//   tern_diffusion_step_images_total{model} (mean running batch: rate of this / rate of steps),
//   tern_diffusion_engine_stalled{model}.
//
// Thread-safe (prometheus-cpp metrics are atomic).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/models/model_registry.h"
#include "server/observability/tenant_labels.h"

namespace tern::server {

class DiffusionMetrics {
 public:
  // `tenants` (borrowed, outlives this) maps a tenant to its label value
  // (tenant_labels.h: the number of values is capped).
  DiffusionMetrics(prometheus::Registry& registry, TenantLabels* tenants);

  // One request's end. `queue_time` is zero for a request that never ran.
  void ObserveRequest(const std::string& model, const std::string& tenant, const absl::Status& status,
                      int images, absl::Duration queue_time, absl::Duration e2e);
  // A request refused at Submit (queue full, draining, ...).
  void ObserveRejected(const std::string& model, const std::string& tenant);

 private:
  TenantLabels* const tenants_;
  prometheus::Family<prometheus::Histogram>* queue_time_;
  prometheus::Family<prometheus::Histogram>* e2e_;
  prometheus::Family<prometheus::Counter>* images_;
  prometheus::Family<prometheus::Counter>* requests_;
};

class DiffusionCollector final : public prometheus::Collectable {
 public:
  explicit DiffusionCollector(const ModelRegistry* models) : models_(models) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const ModelRegistry* models_;  // borrowed; outlives the collector's use
};

}  // namespace tern::server
