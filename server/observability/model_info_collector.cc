#include "server/observability/model_info_collector.h"

#include <string>

namespace tern::server {
namespace {

std::string KindLabel(tern::v1::ModelKind kind) {
  switch (kind) {
    case tern::v1::MODEL_KIND_LLM:
      return "llm";
    case tern::v1::MODEL_KIND_DIFFUSION:
      return "diffusion";
    default:
      return "unspecified";
  }
}

prometheus::ClientMetric Gauge(std::vector<prometheus::ClientMetric::Label> labels, double value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  return metric;
}

}  // namespace

std::vector<prometheus::MetricFamily> ModelInfoCollector::Collect() const {
  prometheus::MetricFamily info{"tern_model_info",
                                "1 per served model; its labels say what it is and how it runs (ListModels' ModelInfo).",
                                prometheus::MetricType::Gauge, {}};
  prometheus::MetricFamily weight_bytes{
      "tern_model_weight_bytes",
      "Bytes the model's weights hold on its backend (device memory on CUDA), in the weight scheme they run as.",
      prometheus::MetricType::Gauge, {}};
  prometheus::MetricFamily activation_bytes{
      "tern_model_activation_bytes",
      "Bytes a diffusion model's ops reserved at start-up for the activations of its largest batch.",
      prometheus::MetricType::Gauge, {}};
  prometheus::MetricFamily kv_capacity{"tern_kv_cache_capacity_tokens",
                                       "Tokens the model's KV cache holds (blocks x block size).",
                                       prometheus::MetricType::Gauge, {}};
  for (const ServedModel* model : models_->All()) {
    const tern::v1::ModelInfo& m = model->info;
    // Labels in name order, as the registry's own families write them.
    info.metric.push_back(Gauge({{"architecture", m.architecture()},
                                 {"attention_scheme", m.attention_scheme()},
                                 {"backend", m.backend()},
                                 {"dtype", m.dtype()},
                                 {"kind", KindLabel(m.kind())},
                                 {"kv_cache_dtype", m.kv_cache_dtype()},
                                 {"model", m.name()},
                                 {"weight_scheme", m.weight_scheme()}},
                                1.0));
    weight_bytes.metric.push_back(Gauge({{"model", m.name()}}, double(model->weight_bytes)));
    if (model->diffusion != nullptr) {
      activation_bytes.metric.push_back(Gauge({{"model", m.name()}}, double(model->diffusion->activation_bytes)));
    }
    if (model->engine == nullptr) continue;  // a diffusion model: no KV cache
    kv_capacity.metric.push_back(Gauge({{"model", m.name()}}, double(model->kv_cache_capacity_tokens)));
  }
  return {std::move(info), std::move(weight_bytes), std::move(activation_bytes), std::move(kv_capacity)};
}

}  // namespace tern::server
