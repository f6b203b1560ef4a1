#include "server/observability/engine_collector.h"

#include <functional>

namespace tern::server {

std::vector<prometheus::MetricFamily> EngineCollector::Collect() const {
  struct Spec {
    const char* name;
    const char* help;
    prometheus::MetricType type;
    std::function<double(const scheduler::EngineStats&)> value;
  };
  const Spec specs[] = {
      {"tern_num_requests_running", "Sequences in the running batch.", prometheus::MetricType::Gauge,
       [](const auto& s) { return double(s.running); }},
      {"tern_num_requests_waiting", "Requests waiting to be scheduled.", prometheus::MetricType::Gauge,
       [](const auto& s) { return double(s.waiting); }},
      {"tern_kv_cache_usage_ratio", "Fraction of KV cache blocks in use (0 to 1).", prometheus::MetricType::Gauge,
       [](const auto& s) { return s.kv_blocks_total > 0 ? double(s.kv_blocks_used) / s.kv_blocks_total : 0.0; }},
      {"tern_kv_cache_blocks", "KV cache blocks of the engine.", prometheus::MetricType::Gauge,
       [](const auto& s) { return double(s.kv_blocks_total); }},
      {"tern_batch_tokens", "Tokens computed by the most recent engine step (prefill chunks + decodes).",
       prometheus::MetricType::Gauge, [](const auto& s) { return double(s.last_step_batched_tokens); }},
      {"tern_engine_steps_total", "Engine steps executed.", prometheus::MetricType::Counter,
       [](const auto& s) { return double(s.steps); }},
      {"tern_engine_stalled",
       "1 while the engine has been busy without finishing a step for longer than the stall timeout, else 0.",
       prometheus::MetricType::Gauge, [](const auto& s) { return s.stalled ? 1.0 : 0.0; }},
      {"tern_num_preemptions_total", "Sequences preempted (recomputed later) for lack of KV blocks.",
       prometheus::MetricType::Counter, [](const auto& s) { return double(s.preemptions); }},
      {"tern_prefix_cache_queries_total", "Prompt blocks looked up in the prefix cache.",
       prometheus::MetricType::Counter, [](const auto& s) { return double(s.prefix_cache_queries); }},
      {"tern_prefix_cache_hits_total", "Prompt blocks found in the prefix cache.", prometheus::MetricType::Counter,
       [](const auto& s) { return double(s.prefix_cache_hits); }},
      {"tern_prompt_tokens_total", "Prompt tokens admitted.", prometheus::MetricType::Counter,
       [](const auto& s) { return double(s.prompt_tokens); }},
      {"tern_generation_tokens_total", "Tokens generated.", prometheus::MetricType::Counter,
       [](const auto& s) { return double(s.generation_tokens); }},
  };
  std::vector<std::pair<std::string, scheduler::EngineStats>> stats;
  for (const ServedModel* model : models_->All()) {
    if (model->engine != nullptr) stats.emplace_back(model->info.name(), model->engine->Stats());
  }
  std::vector<prometheus::MetricFamily> families;
  for (const Spec& spec : specs) {
    prometheus::MetricFamily family;
    family.name = spec.name;
    family.help = spec.help;
    family.type = spec.type;
    for (const auto& [name, s] : stats) {
      prometheus::ClientMetric metric;
      metric.label.push_back({"model", name});
      if (spec.type == prometheus::MetricType::Counter) {
        metric.counter.value = spec.value(s);
      } else {
        metric.gauge.value = spec.value(s);
      }
      family.metric.push_back(std::move(metric));
    }
    families.push_back(std::move(family));
  }
  return families;
}

}  // namespace tern::server
