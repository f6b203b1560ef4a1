// Per-request latency and outcome metrics of generation calls, labelled by
// model and tenant, with vLLM's semantics: time to first token, inter-token
// latency (between streamed chunks that carry tokens), time per output token,
// end-to-end latency, queue time, prompt and output lengths, requests by
// outcome (finish reason, or the status code of a rejected or failed
// request: rejections by reason). Tenant label values are capped
// (tenant_labels.h). Thread-safe.
#pragma once

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/observability/tenant_labels.h"

namespace tern::server {

class RequestMetrics {
 public:
  // `tenants` (borrowed, outlives this) maps a tenant to its label value.
  RequestMetrics(prometheus::Registry& registry, TenantLabels* tenants);

  void ObserveTimeToFirstToken(const std::string& model, const std::string& tenant, double seconds);
  void ObserveInterTokenLatency(const std::string& model, const std::string& tenant, double seconds);
  // At the end of a request: end-to-end latency, time per output token
  // (after the first), and the outcome ("stop", "length", "abort", or the
  // error code name).
  void ObserveFinished(const std::string& model, const std::string& tenant, double e2e_seconds,
                       double time_per_output_token_seconds, int completion_tokens, const std::string& outcome);
  // Of an admitted request: queue time (arrival to first scheduled), prefill
  // time (first scheduled to first token), decode time (first token to the
  // end) and prompt length. Negative times are not observed.
  void ObserveAdmission(const std::string& model, const std::string& tenant, double queue_seconds,
                        double prefill_seconds, double decode_seconds, int prompt_tokens);
  // Of a Skeleton-of-Thought (or AUTO) request: `decision` is "sot" (points
  // expanded), "normal" (routed to normal decoding) or "fallback" (the
  // skeleton had fewer than two points); points and phase durations when
  // SoT ran (negative: not observed); the router's latency when it was asked.
  void ObserveSot(const std::string& model, const std::string& tenant, const std::string& decision, int points,
                  double skeleton_seconds, double expansion_seconds, const std::string& router,
                  double router_seconds);

 private:
  TenantLabels* const tenants_;
  prometheus::Family<prometheus::Histogram>& ttft_;
  prometheus::Family<prometheus::Histogram>& itl_;
  prometheus::Family<prometheus::Histogram>& tpot_;
  prometheus::Family<prometheus::Histogram>& e2e_;
  prometheus::Family<prometheus::Histogram>& output_length_;
  prometheus::Family<prometheus::Histogram>& prompt_length_;
  prometheus::Family<prometheus::Histogram>& queue_;
  prometheus::Family<prometheus::Histogram>& prefill_;
  prometheus::Family<prometheus::Histogram>& decode_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& sot_requests_;
  prometheus::Family<prometheus::Histogram>& sot_points_;
  prometheus::Family<prometheus::Histogram>& sot_skeleton_;
  prometheus::Family<prometheus::Histogram>& sot_expansion_;
  prometheus::Family<prometheus::Histogram>& sot_router_;
};

}  // namespace tern::server
