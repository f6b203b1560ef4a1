// Summary statistics for load-test samples: percentiles, means, and goodput
// under latency SLOs. Pure functions, no I/O; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace tern::loadtest {

// The p-th percentile (p in [0, 100]) of `sorted` (ascending, non-empty),
// by linear interpolation between closest ranks: rank = p / 100 * (n - 1).
// This is numpy.percentile's default ("linear") method.
double PercentileOfSorted(const std::vector<double>& sorted, double p);

// Count, mean, min, max and the p50/p90/p99 of a sample. With count == 0
// every other field is 0 and meaningless; callers print "-" for it.
struct Distribution {
  int64_t count = 0;
  double mean = 0;
  double min = 0;
  double max = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

// Summarizes `values` (any order; taken by value and sorted).
Distribution Summarize(std::vector<double> values);

// Service-level objectives a request must meet to count toward goodput.
// An unset objective is not checked.
struct Slo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
};

// What goodput needs to know about one finished request.
struct SloSample {
  bool ok = false;                    // finished with gRPC status OK
  double ttft_ms = 0;                 // meaningful only when ok
  std::optional<double> tpot_ms;      // unset when fewer than 2 output tokens
};

// True when the request succeeded and meets every set objective. A request
// without a TPOT (fewer than 2 tokens) meets any TPOT objective: it had no
// decode phase to be slow in.
bool MeetsSlo(const SloSample& sample, const Slo& slo);

struct Goodput {
  int64_t good_requests = 0;    // requests meeting the SLO
  double requests_per_s = 0;    // good_requests / elapsed_s (0 when elapsed_s <= 0)
};

// Goodput over a run that lasted `elapsed_s` seconds.
Goodput ComputeGoodput(const std::vector<SloSample>& samples, const Slo& slo, double elapsed_s);

}  // namespace tern::loadtest
