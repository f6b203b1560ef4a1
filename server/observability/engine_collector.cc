#include "server/observability/engine_collector.h"

#include "server/observability/per_model_families.h"

namespace tern::server {

std::vector<prometheus::MetricFamily> EngineCollector::Collect() const {
  const PerModelMetric<scheduler::EngineStats> metrics[] = {
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
      {"tern_engine_steps_planned_ahead_total",
       "Engine steps planned while the step before ran on the device (async_scheduling).",
       prometheus::MetricType::Counter, [](const auto& s) { return double(s.steps_planned_ahead); }},
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
  return PerModelFamilies<scheduler::EngineStats>(metrics, stats);
}

}  // namespace tern::server
