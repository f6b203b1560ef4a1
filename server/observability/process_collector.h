// Standard process_* metrics (the names the Prometheus client libraries use),
// read from /proc/self at scrape time: CPU seconds, resident and virtual
// memory, open and maximum file descriptors, start time, thread count.
#pragma once

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace tern::server {

class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace tern::server
