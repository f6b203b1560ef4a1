#include "server/observability/request_metrics.h"

#include "server/observability/server_metrics.h"

namespace tern::server {
namespace {

const prometheus::Histogram::BucketBoundaries& TokenLatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5, 5};
  return *buckets;
}

const prometheus::Histogram::BucketBoundaries& LengthBuckets() {
  static const auto* buckets =
      new prometheus::Histogram::BucketBoundaries{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
  return *buckets;
}

}  // namespace

RequestMetrics::RequestMetrics(prometheus::Registry& registry, TenantLabels* tenants)
    : tenants_(tenants),
      ttft_(prometheus::BuildHistogram()
                .Name("tern_time_to_first_token_seconds")
                .Help("Time from arrival to the first streamed token.")
                .Register(registry)),
      itl_(prometheus::BuildHistogram()
               .Name("tern_inter_token_latency_seconds")
               .Help("Time between consecutive streamed chunks that carry tokens.")
               .Register(registry)),
      tpot_(prometheus::BuildHistogram()
                .Name("tern_time_per_output_token_seconds")
                .Help("(end-to-end - time to first token) / (output tokens - 1) per request.")
                .Register(registry)),
      e2e_(prometheus::BuildHistogram()
               .Name("tern_e2e_request_latency_seconds")
               .Help("Time from arrival to the last message of a generation request.")
               .Register(registry)),
      output_length_(prometheus::BuildHistogram()
                         .Name("tern_request_generation_tokens")
                         .Help("Output tokens per finished request.")
                         .Register(registry)),
      prompt_length_(prometheus::BuildHistogram()
                         .Name("tern_request_prompt_tokens")
                         .Help("Prompt tokens per admitted request.")
                         .Register(registry)),
      queue_(prometheus::BuildHistogram()
                 .Name("tern_request_queue_time_seconds")
                 .Help("Time from arrival until the request was first scheduled.")
                 .Register(registry)),
      prefill_(prometheus::BuildHistogram()
                   .Name("tern_request_prefill_time_seconds")
                   .Help("Time from first scheduled to the first token (prompt processing).")
                   .Register(registry)),
      decode_(prometheus::BuildHistogram()
                  .Name("tern_request_decode_time_seconds")
                  .Help("Time from the first token to the end of the request.")
                  .Register(registry)),
      requests_(prometheus::BuildCounter()
                    .Name("tern_request_finished_total")
                    .Help("Finished generation requests by outcome (stop, length, abort, or error code).")
                    .Register(registry)),
      sot_requests_(prometheus::BuildCounter()
                        .Name("tern_sot_requests_total")
                        .Help("Skeleton-of-Thought and AUTO requests by what ran: sot, normal (routed), fallback.")
                        .Register(registry)),
      sot_points_(prometheus::BuildHistogram()
                      .Name("tern_sot_points")
                      .Help("Points expanded per Skeleton-of-Thought request.")
                      .Register(registry)),
      sot_skeleton_(prometheus::BuildHistogram()
                        .Name("tern_sot_skeleton_seconds")
                        .Help("Duration of the skeleton phase.")
                        .Register(registry)),
      sot_expansion_(prometheus::BuildHistogram()
                         .Name("tern_sot_expansion_seconds")
                         .Help("Duration of the parallel point expansion phase.")
                         .Register(registry)),
      sot_router_(prometheus::BuildHistogram()
                      .Name("tern_sot_router_seconds")
                      .Help("Time the SoT-R router took to decide (trained: CPU classifier; prompt: a model decode).")
                      .Register(registry)) {}

void RequestMetrics::ObserveTimeToFirstToken(const std::string& model, const std::string& tenant, double seconds) {
  const std::string tenant_label = tenants_->Of(tenant);
  ttft_.Add({{"model", model}, {"tenant", tenant_label}}, LatencyBuckets()).Observe(seconds);
}

void RequestMetrics::ObserveInterTokenLatency(const std::string& model, const std::string& tenant, double seconds) {
  const std::string tenant_label = tenants_->Of(tenant);
  itl_.Add({{"model", model}, {"tenant", tenant_label}}, TokenLatencyBuckets()).Observe(seconds);
}

void RequestMetrics::ObserveAdmission(const std::string& model, const std::string& tenant, double queue_seconds,
                                      double prefill_seconds, double decode_seconds, int prompt_tokens) {
  const std::string tenant_label = tenants_->Of(tenant);
  const prometheus::Labels labels = {{"model", model}, {"tenant", tenant_label}};
  queue_.Add(labels, LatencyBuckets()).Observe(queue_seconds);
  if (prefill_seconds >= 0) prefill_.Add(labels, LatencyBuckets()).Observe(prefill_seconds);
  if (decode_seconds >= 0) decode_.Add(labels, LatencyBuckets()).Observe(decode_seconds);
  prompt_length_.Add(labels, LengthBuckets()).Observe(prompt_tokens);
}

void RequestMetrics::ObserveFinished(const std::string& model, const std::string& tenant, double e2e_seconds,
                                     double time_per_output_token_seconds, int completion_tokens,
                                     const std::string& outcome) {
  const std::string tenant_label = tenants_->Of(tenant);
  const prometheus::Labels labels = {{"model", model}, {"tenant", tenant_label}};
  e2e_.Add(labels, LatencyBuckets()).Observe(e2e_seconds);
  if (completion_tokens > 1) tpot_.Add(labels, TokenLatencyBuckets()).Observe(time_per_output_token_seconds);
  output_length_.Add(labels, LengthBuckets()).Observe(completion_tokens);
  requests_.Add({{"model", model}, {"tenant", tenant_label}, {"outcome", outcome}}).Increment();
}

void RequestMetrics::ObserveSot(const std::string& model, const std::string& tenant, const std::string& decision,
                                int points, double skeleton_seconds, double expansion_seconds,
                                const std::string& router, double router_seconds) {
  const std::string tenant_label = tenants_->Of(tenant);
  sot_requests_.Add({{"model", model}, {"tenant", tenant_label}, {"decision", decision}}).Increment();
  const prometheus::Labels labels = {{"model", model}};
  if (points > 0) {
    static const auto* point_buckets = new prometheus::Histogram::BucketBoundaries{2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 64};
    sot_points_.Add(labels, *point_buckets).Observe(points);
  }
  if (skeleton_seconds >= 0) sot_skeleton_.Add(labels, LatencyBuckets()).Observe(skeleton_seconds);
  if (expansion_seconds >= 0) sot_expansion_.Add(labels, LatencyBuckets()).Observe(expansion_seconds);
  if (!router.empty() && router != "none") {
    static const auto* router_buckets = new prometheus::Histogram::BucketBoundaries{
        1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1};
    sot_router_.Add({{"model", model}, {"router", router}}, *router_buckets).Observe(router_seconds);
  }
}

}  // namespace tern::server
