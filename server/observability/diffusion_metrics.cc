#include "server/observability/diffusion_metrics.h"

#include "server/observability/per_model_families.h"
#include "server/observability/server_metrics.h"

namespace tern::server {
namespace {

const char* OutcomeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return "ok";
    case absl::StatusCode::kCancelled: return "cancelled";
    case absl::StatusCode::kDeadlineExceeded: return "deadline";
    default: return "error";
  }
}

}  // namespace

DiffusionMetrics::DiffusionMetrics(prometheus::Registry& registry, TenantLabels* tenants)
    : tenants_(tenants),
      queue_time_(&prometheus::BuildHistogram()
                       .Name("tern_diffusion_queue_time_seconds")
                       .Help("Image requests: time from arrival until the request joined the running batch.")
                       .Register(registry)),
      e2e_(&prometheus::BuildHistogram()
                .Name("tern_diffusion_e2e_seconds")
                .Help("Image requests: time from arrival until the images were ready (successful requests).")
                .Register(registry)),
      images_(&prometheus::BuildCounter()
                   .Name("tern_diffusion_images_total")
                   .Help("Images generated and delivered.")
                   .Register(registry)),
      requests_(&prometheus::BuildCounter()
                     .Name("tern_diffusion_requests_total")
                     .Help("Image requests finished, by outcome (ok, cancelled, deadline, rejected, error).")
                     .Register(registry)) {}

void DiffusionMetrics::ObserveRequest(const std::string& model, const std::string& tenant, const absl::Status& status,
                                      int images, absl::Duration queue_time, absl::Duration e2e) {
  const std::string tenant_label = tenants_->Of(tenant);
  const prometheus::Labels labels{{"model", model}, {"tenant", tenant_label}};
  requests_->Add({{"model", model}, {"tenant", tenant_label}, {"outcome", OutcomeOf(status)}}).Increment();
  if (queue_time > absl::ZeroDuration()) {
    queue_time_->Add(labels, LatencyBuckets()).Observe(absl::ToDoubleSeconds(queue_time));
  }
  if (status.ok()) {
    e2e_->Add(labels, LatencyBuckets()).Observe(absl::ToDoubleSeconds(e2e));
    images_->Add(labels).Increment(images);
  }
}

void DiffusionMetrics::ObserveRejected(const std::string& model, const std::string& tenant) {
  const std::string tenant_label = tenants_->Of(tenant);
  requests_->Add({{"model", model}, {"tenant", tenant_label}, {"outcome", "rejected"}}).Increment();
}

std::vector<prometheus::MetricFamily> DiffusionCollector::Collect() const {
  const PerModelMetric<scheduler::DiffusionEngineStats> metrics[] = {
      {"tern_diffusion_running_images", "Images in the running denoising batch.", prometheus::MetricType::Gauge,
       [](const auto& s) { return double(s.running_images); }},
      {"tern_diffusion_running_requests", "Image requests in the running batch.", prometheus::MetricType::Gauge,
       [](const auto& s) { return double(s.running_requests); }},
      {"tern_diffusion_waiting_requests", "Image requests waiting to join the batch.", prometheus::MetricType::Gauge,
       [](const auto& s) { return double(s.waiting); }},
      {"tern_diffusion_steps_total", "Denoising steps run (one forward pass each).", prometheus::MetricType::Counter,
       [](const auto& s) { return double(s.steps); }},
      {"tern_diffusion_step_seconds_total", "Time spent in denoising steps.", prometheus::MetricType::Counter,
       [](const auto& s) { return absl::ToDoubleSeconds(s.step_time); }},
      {"tern_diffusion_step_images_total", "Images advanced by denoising steps, summed over steps.",
       prometheus::MetricType::Counter, [](const auto& s) { return double(s.step_images); }},
      {"tern_diffusion_engine_stalled",
       "1 while the diffusion engine has been busy without finishing a step for longer than the stall timeout.",
       prometheus::MetricType::Gauge, [](const auto& s) { return s.stalled ? 1.0 : 0.0; }},
  };
  std::vector<std::pair<std::string, scheduler::DiffusionEngineStats>> stats;
  for (const ServedModel* model : models_->All()) {
    if (model->diffusion != nullptr) stats.emplace_back(model->info.name(), model->diffusion->engine->Stats());
  }
  if (stats.empty()) return {};  // a server without diffusion models exposes none of these families
  return PerModelFamilies<scheduler::DiffusionEngineStats>(metrics, stats);
}

}  // namespace tern::server
