#include "loadtest/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tern::loadtest {

double PercentileOfSorted(const std::vector<double>& sorted, double p) {
  const double clamped = std::clamp(p, 0.0, 100.0);
  const double rank = clamped / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lower = static_cast<size_t>(std::floor(rank));
  const size_t upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

Distribution Summarize(std::vector<double> values) {
  Distribution d;
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  d.count = static_cast<int64_t>(values.size());
  // Sum in sorted order: small values first keeps the rounding error small.
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  d.min = values.front();
  d.max = values.back();
  d.p50 = PercentileOfSorted(values, 50);
  d.p90 = PercentileOfSorted(values, 90);
  d.p99 = PercentileOfSorted(values, 99);
  return d;
}

bool MeetsSlo(const SloSample& sample, const Slo& slo) {
  if (!sample.ok) return false;
  if (slo.ttft_ms.has_value() && sample.ttft_ms > *slo.ttft_ms) return false;
  if (slo.tpot_ms.has_value() && sample.tpot_ms.has_value() && *sample.tpot_ms > *slo.tpot_ms) return false;
  return true;
}

Goodput ComputeGoodput(const std::vector<SloSample>& samples, const Slo& slo, double elapsed_s) {
  Goodput g;
  g.good_requests = std::count_if(samples.begin(), samples.end(),
                                  [&](const SloSample& s) { return MeetsSlo(s, slo); });
  if (elapsed_s > 0) g.requests_per_s = static_cast<double>(g.good_requests) / elapsed_s;
  return g;
}

}  // namespace tern::loadtest
