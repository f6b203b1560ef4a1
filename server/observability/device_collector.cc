#include "server/observability/device_collector.h"

namespace tern::server {

std::vector<prometheus::MetricFamily> DeviceCollector::Collect() const {
  prometheus::MetricFamily busy{"tern_device_busy_seconds_total",
                                "Device time the model's engine steps took (its turns on a shared device).",
                                prometheus::MetricType::Counter, {}};
  prometheus::MetricFamily wait{"tern_device_wait_seconds_total",
                                "Time the model's engine waited for its turn on a device shared with other models.",
                                prometheus::MetricType::Counter, {}};
  prometheus::MetricFamily share{"tern_device_share",
                                 "The model's configured share of its device's step time (ModelConfig.device_share).",
                                 prometheus::MetricType::Gauge, {}};
  for (const auto& [device, turns] : models_->device_turns()) {
    for (const scheduler::DeviceTurns::SeatStats& seat : turns->Stats()) {
      const std::vector<prometheus::ClientMetric::Label> labels = {{"device", device}, {"model", seat.name}};
      prometheus::ClientMetric metric;
      metric.label = labels;
      metric.counter.value = absl::ToDoubleSeconds(seat.device_time);
      busy.metric.push_back(metric);
      metric.counter.value = absl::ToDoubleSeconds(seat.wait_time);
      wait.metric.push_back(metric);
      prometheus::ClientMetric gauge;
      gauge.label = labels;
      gauge.gauge.value = seat.share;
      share.metric.push_back(std::move(gauge));
    }
  }
  return {std::move(busy), std::move(wait), std::move(share)};
}

}  // namespace tern::server
