// Prometheus families read from each model's Engine::Stats() at scrape time:
// running and waiting requests, KV cache usage, steps, whether the engine is
// stalled, preemptions, prefix-cache queries and hits, prompt and generation
// tokens (label model).
#pragma once

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/models/model_registry.h"

namespace tern::server {

class EngineCollector : public prometheus::Collectable {
 public:
  // `models` is borrowed and outlives the collector.
  explicit EngineCollector(const ModelRegistry* models) : models_(models) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const ModelRegistry* models_;
};

}  // namespace tern::server
