// Prometheus families read from the models' device turns
// (scheduler/device_turns.h) at scrape time, labels device and model:
//   tern_device_busy_seconds_total  device time the model's steps took
//   tern_device_wait_seconds_total  time its engine waited for its turn
//   tern_device_share               its configured share (ModelConfig.device_share)
#pragma once

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/models/model_registry.h"

namespace tern::server {

class DeviceCollector : public prometheus::Collectable {
 public:
  // `models` is borrowed and outlives the collector.
  explicit DeviceCollector(const ModelRegistry* models) : models_(models) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const ModelRegistry* models_;
};

}  // namespace tern::server
