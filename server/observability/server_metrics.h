// The daemon's Prometheus registry and the metrics the server layer owns.
// Lower layers never touch prometheus-cpp: they return stats structs that
// collectors registered here translate at scrape time.
//
// Thread-safe: prometheus-cpp metrics are atomic; family lookups that create
// label sets take prometheus-cpp's internal lock.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/observability/request_metrics.h"
#include "server/observability/tenant_labels.h"

namespace tern::server {

class DiffusionMetrics;

class ServerMetrics {
 public:
  // `max_tenant_label_values`: distinct tenants the per-request metrics
  // name; the rest share kOverflowTenantLabel (tenant_labels.h).
  explicit ServerMetrics(int max_tenant_label_values = kDefaultMaxTenantLabelValues);
  ~ServerMetrics();

  // One finished gRPC call: `method` is the full name ("/tern.v1.Llm/Generate"),
  // `code` the gRPC status code name ("OK", "INVALID_ARGUMENT", ...).
  void RecordRpc(const std::string& method, const std::string& code, double seconds);
  // One HTTP request: the route ("/metrics", or "other") and status code.
  void RecordHttp(const std::string& route, int status_code);
  // One request to the OpenAI-compatible API: also its wall time
  // (tern_http_request_duration_seconds{route}).
  void RecordHttp(const std::string& route, int status_code, double seconds);
  void SetModelsLoaded(int count);
  // tern_ready: 1 while ternd should get traffic (what /readyz and gRPC
  // health say), else 0.
  void SetReady(bool ready);
  // tern_engine_stalls_total{model}: one more stall of the model's engine.
  // InitEngineStalls makes the model's series exist (at 0) before any stall.
  void InitEngineStalls(const std::string& model);
  void RecordEngineStall(const std::string& model);

  // The text exposition format (0.0.4) of every registered collectable.
  std::string Scrape() const;

  // Adds a collectable scraped with the rest. Call during setup only, before
  // the HTTP server starts scraping.
  void AddCollectable(std::shared_ptr<prometheus::Collectable> collectable);

  prometheus::Registry& registry() { return *registry_; }
  RequestMetrics& requests() { return *requests_; }
  // Image requests, whichever transport they came by (diffusion_metrics.h).
  DiffusionMetrics& diffusion() { return *diffusion_; }
  TenantLabels& tenant_labels() { return tenant_labels_; }

 private:
  // shared_ptr: prometheus-cpp's Collectable API is built on shared ownership.
  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  prometheus::Family<prometheus::Counter>* rpc_total_;
  prometheus::Family<prometheus::Histogram>* rpc_seconds_;
  prometheus::Family<prometheus::Counter>* http_total_;
  prometheus::Family<prometheus::Histogram>* http_seconds_;
  prometheus::Gauge* models_loaded_;
  prometheus::Gauge* ready_;
  prometheus::Family<prometheus::Counter>* engine_stalls_;
  TenantLabels tenant_labels_;
  std::unique_ptr<RequestMetrics> requests_;
  std::unique_ptr<DiffusionMetrics> diffusion_;
};

// Buckets for request latencies in seconds: 1 ms .. 5 min.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

}  // namespace tern::server
