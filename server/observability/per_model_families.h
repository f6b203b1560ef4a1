// Prometheus families with one sample per served model (label model), built
// at scrape time from a table of metrics and each model's engine statistics.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace tern::server {

// One family: its name, help text, type (Counter or Gauge: the sample is set
// as a counter for Counter and as a gauge otherwise) and the value it reads
// from one model's `Stats`.
template <typename Stats>
struct PerModelMetric {
  const char* name;
  const char* help;
  prometheus::MetricType type;
  std::function<double(const Stats&)> value;
};

// One family per entry of `metrics`, in order, each with one sample per
// (model name, stats) pair of `stats`, in order, labelled model="<name>".
// With no stats, every family comes back without samples.
template <typename Stats>
std::vector<prometheus::MetricFamily> PerModelFamilies(std::span<const PerModelMetric<Stats>> metrics,
                                                       const std::vector<std::pair<std::string, Stats>>& stats) {
  std::vector<prometheus::MetricFamily> families;
  for (const PerModelMetric<Stats>& metric : metrics) {
    prometheus::MetricFamily family;
    family.name = metric.name;
    family.help = metric.help;
    family.type = metric.type;
    for (const auto& [name, s] : stats) {
      prometheus::ClientMetric sample;
      sample.label.push_back({"model", name});
      if (metric.type == prometheus::MetricType::Counter) {
        sample.counter.value = metric.value(s);
      } else {
        sample.gauge.value = metric.value(s);
      }
      family.metric.push_back(std::move(sample));
    }
    families.push_back(std::move(family));
  }
  return families;
}

}  // namespace tern::server
