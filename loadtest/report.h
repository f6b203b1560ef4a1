// The load-test report: built from the traces of one run, printed as a table
// and serialized as JSON. Latency distributions cover requests that ended
// OK; throughput and goodput divide by the run's wall time (start of the
// run to the end of the last request).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loadtest/options.h"
#include "loadtest/request_metrics.h"
#include "loadtest/stats.h"
#include "nlohmann/json.hpp"

namespace tern::loadtest {

// "OK", "CANCELLED", ..., "UNAUTHENTICATED"; "UNFINISHED" for -1; else "CODE_<n>".
std::string StatusCodeName(int code);

struct TenantReport {
  std::string key_hint;   // "..." + the API key's last 4 characters; stars for keys of 8 or fewer
  int64_t sent = 0;
  int64_t ok = 0;
  Distribution ttft_ms;
};

// The requests of one decoding class: those sent as Skeleton-of-Thought
// (--sot-share, --decoding-mode sot), or the rest, sent as --decoding-mode.
// Latencies cover its requests that ended OK.
struct DecodingClassReport {
  std::string label;             // "SoT", "normal" or "auto": the table's row names
  std::string decoding_mode;     // asked for: "skeleton_of_thought", "normal" or "auto"
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t used_sot = 0;          // OK requests the server reports decoded with Skeleton-of-Thought
  int64_t fell_back = 0;         // OK requests whose skeleton had fewer than 2 points
  int64_t routed_sot = 0;        // OK AUTO requests the server's router sent to SoT ...
  int64_t routed_normal = 0;     // ... and to normal decoding
  int64_t output_tokens = 0;     // over OK requests, all parts
  Distribution ttft_ms;          // to the first token of any part
  Distribution tpot_ms;
  Distribution e2e_ms;
  Distribution output_tokens_per_request;
  Distribution points;           // points expanded, per OK request that used SoT
};

struct Report {
  double elapsed_s = 0;
  bool hit_max_time = false;
  bool interrupted = false;
  int64_t sent = 0;
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t abandoned = 0;                 // never reported done after --max-time cancelled them
  int64_t output_tokens = 0;             // over OK requests
  int64_t prompt_tokens = 0;             // over OK requests that reported usage
  double request_throughput = 0;         // OK requests / s
  double output_token_throughput = 0;    // output tokens of OK requests / s
  Slo slo;
  Goodput goodput;
  Distribution ttft_ms;
  Distribution tpot_ms;
  Distribution itl_ms;
  Distribution e2e_ms;
  Distribution client_queue_ms;          // scheduled -> sent; > 0 when the in-flight cap held requests back
  Distribution output_tokens_per_request;
  std::map<std::string, int64_t> errors;             // status code name -> count
  std::map<std::string, std::string> first_error;    // status code name -> first message seen
  std::map<std::string, int64_t> finish_reasons;     // "stop", "length", "abort", "none"
  std::vector<TenantReport> tenants;
  // Requests sent as SoT and the rest; the table shows them when the run
  // asked for SoT or AUTO decoding (by_decoding).
  bool by_decoding = false;
  DecodingClassReport sot;
  DecodingClassReport non_sot;
  // Image requests (--image-share): counted in sent/ok/failed/errors above
  // but not in the token latencies or the tenants' TTFT; here "TTFT" is the
  // time to the first sampler step, "TPOT" the time per step and "output
  // tokens" the steps.
  DecodingClassReport images;
  int64_t images_made = 0;               // images received by OK requests
  double image_throughput = 0;           // images_made / s
};

// How the run ended, as the runner saw it.
struct RunEnd {
  double elapsed_s = 0;     // run time: start to end of the last request (or of the window)
  bool hit_max_time = false;
  bool interrupted = false;
  int64_t abandoned = 0;
};

Report BuildReport(const LoadOptions& options, const std::vector<RequestTrace>& traces, const RunEnd& end);

// A human-readable summary: the run, throughput, goodput, the latency table
// (mean, p50, p90, p99, max), the decoding classes and errors by status code.
std::string FormatReportTable(const LoadOptions& options, const Report& report);

// The report as JSON: {"config", "summary", "latency_ms", "errors", ...};
// with `traces` non-null also "requests", one object per request, times in
// ms from `start`.
nlohmann::json ReportToJson(const LoadOptions& options, const Report& report,
                            const std::vector<RequestTrace>* traces, Clock::time_point start);

}  // namespace tern::loadtest
