#include "server/observability/server_metrics.h"

#include "prometheus/text_serializer.h"
#include "runtime/cuda/device_probe.h"
#include "server/build_info.h"
#include "server/observability/diffusion_metrics.h"
#include "server/observability/process_collector.h"

namespace tern::server {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
  return *buckets;
}

ServerMetrics::ServerMetrics(int max_tenant_label_values)
    : registry_(std::make_shared<prometheus::Registry>()), tenant_labels_(max_tenant_label_values) {
  prometheus::BuildGauge()
      .Name("tern_build_info")
      .Help("Build of the running ternd; the value is always 1.")
      .Register(*registry_)
      .Add({{"version", BuildVersion()},
            {"git_sha", BuildGitSha()},
            {"cuda", runtime::BuiltWithCuda() ? "true" : "false"}})
      .Set(1);
  rpc_total_ = &prometheus::BuildCounter()
                    .Name("tern_grpc_requests_total")
                    .Help("Finished gRPC calls by method and status code.")
                    .Register(*registry_);
  rpc_seconds_ = &prometheus::BuildHistogram()
                      .Name("tern_grpc_request_duration_seconds")
                      .Help("Wall time of gRPC calls from arrival to final status.")
                      .Register(*registry_);
  http_total_ = &prometheus::BuildCounter()
                     .Name("tern_http_requests_total")
                     .Help("HTTP requests by route and status code.")
                     .Register(*registry_);
  http_seconds_ = &prometheus::BuildHistogram()
                       .Name("tern_http_request_duration_seconds")
                       .Help("Wall time of OpenAI-compatible API requests from arrival to the end of the "
                             "response (the last byte of a stream).")
                       .Register(*registry_);
  models_loaded_ = &prometheus::BuildGauge()
                        .Name("tern_models_loaded")
                        .Help("Models loaded and ready to serve.")
                        .Register(*registry_)
                        .Add({});
  ready_ = &prometheus::BuildGauge()
                .Name("tern_ready")
                .Help("1 while ternd is ready for traffic (/readyz 200, gRPC health SERVING): loaded, not "
                      "draining, no model failed and no engine stalled; else 0.")
                .Register(*registry_)
                .Add({});
  engine_stalls_ = &prometheus::BuildCounter()
                        .Name("tern_engine_stalls_total")
                        .Help("Times a model's engine was busy without finishing a step for longer than the "
                              "stall timeout.")
                        .Register(*registry_);
  requests_ = std::make_unique<RequestMetrics>(*registry_, &tenant_labels_);
  collectables_.push_back(registry_);
  collectables_.push_back(std::make_shared<ProcessCollector>());
  diffusion_ = std::make_unique<DiffusionMetrics>(*registry_, &tenant_labels_);
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::RecordRpc(const std::string& method, const std::string& code, double seconds) {
  rpc_total_->Add({{"method", method}, {"code", code}}).Increment();
  rpc_seconds_->Add({{"method", method}}, LatencyBuckets()).Observe(seconds);
}

void ServerMetrics::RecordHttp(const std::string& route, int status_code) {
  http_total_->Add({{"route", route}, {"code", std::to_string(status_code)}}).Increment();
}

void ServerMetrics::RecordHttp(const std::string& route, int status_code, double seconds) {
  RecordHttp(route, status_code);
  http_seconds_->Add({{"route", route}}, LatencyBuckets()).Observe(seconds);
}

void ServerMetrics::SetModelsLoaded(int count) { models_loaded_->Set(count); }

void ServerMetrics::SetReady(bool ready) { ready_->Set(ready ? 1 : 0); }

void ServerMetrics::InitEngineStalls(const std::string& model) { engine_stalls_->Add({{"model", model}}); }

void ServerMetrics::RecordEngineStall(const std::string& model) {
  engine_stalls_->Add({{"model", model}}).Increment();
}

void ServerMetrics::AddCollectable(std::shared_ptr<prometheus::Collectable> collectable) {
  collectables_.push_back(std::move(collectable));
}

std::string ServerMetrics::Scrape() const {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& collectable : collectables_) {
    auto collected = collectable->Collect();
    families.insert(families.end(), std::make_move_iterator(collected.begin()),
                    std::make_move_iterator(collected.end()));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace tern::server
