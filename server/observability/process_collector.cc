#include "server/observability/process_collector.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tern::server {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

// Boot time in seconds since the epoch, from /proc/stat's btime line.
double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double btime = 0;
      in >> btime;
      return btime;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  std::ifstream stat_file("/proc/self/stat");
  std::string stat;
  std::getline(stat_file, stat);
  // Fields after the parenthesised command name; see proc(5).
  const auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    std::vector<std::string> values;
    while (fields >> field) values.push_back(field);
    // values[0] is field 3 (state); utime=14, stime=15, num_threads=20,
    // starttime=22, vsize=23, rss=24 (1-based field numbers in proc(5)).
    if (values.size() > 21) {
      const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
      const double cpu = (std::stod(values[11]) + std::stod(values[12])) / ticks;
      families.push_back(Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                                prometheus::MetricType::Counter, cpu));
      families.push_back(Family("process_threads", "Number of OS threads in the process.",
                                prometheus::MetricType::Gauge, std::stod(values[17])));
      families.push_back(Family("process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.",
                                prometheus::MetricType::Gauge,
                                BootTimeSeconds() + std::stod(values[19]) / ticks));
      families.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                prometheus::MetricType::Gauge, std::stod(values[20])));
      families.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                                prometheus::MetricType::Gauge, std::stod(values[21]) * page));
    }
  }
  std::error_code ec;
  double open_fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++open_fds;
  }
  families.push_back(Family("process_open_fds", "Number of open file descriptors.",
                            prometheus::MetricType::Gauge, open_fds));
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                              prometheus::MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return families;
}

}  // namespace tern::server
