// Prometheus families that describe each served model, read from the
// ModelRegistry at scrape time (fixed after start-up):
//   tern_model_info{model, kind, architecture, dtype, weight_scheme,
//                   kv_cache_dtype, attention_scheme, backend} 1
//     (the labels are ModelInfo's fields, as ListModels reports them);
//   tern_model_weight_bytes{model}: bytes the weights hold on the model's
//     backend (device memory on CUDA), LLMs only;
//   tern_kv_cache_capacity_tokens{model}: tokens of every layer the KV cache
//     holds (blocks / KV-cache groups x block size), LLMs only.
#pragma once

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/models/model_registry.h"

namespace tern::server {

class ModelInfoCollector : public prometheus::Collectable {
 public:
  // `models` is borrowed and outlives the collector.
  explicit ModelInfoCollector(const ModelRegistry* models) : models_(models) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const ModelRegistry* models_;
};

}  // namespace tern::server
