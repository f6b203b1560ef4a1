#include "loadtest/request_metrics.h"

namespace tern::loadtest {
namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

RequestMetrics ComputeRequestMetrics(const RequestTrace& trace) {
  RequestMetrics m;
  m.ok = trace.status_code == 0;
  m.e2e_ms = Ms(trace.done - trace.sent);
  m.client_queue_ms = Ms(trace.sent - trace.scheduled);
  // The server's own count wins: a chunk may carry text whose ids were merged
  // or, with stop strings, ids that were not all counted as output.
  m.output_tokens = trace.usage_completion_tokens.value_or(trace.counted_tokens);
  if (trace.token_chunk_times.empty()) return m;
  m.ttft_ms = Ms(trace.token_chunk_times.front() - trace.sent);
  for (size_t i = 1; i < trace.token_chunk_times.size(); ++i) {
    m.itl_ms.push_back(Ms(trace.token_chunk_times[i] - trace.token_chunk_times[i - 1]));
  }
  if (m.output_tokens >= 2) {
    m.tpot_ms = (m.e2e_ms - *m.ttft_ms) / static_cast<double>(m.output_tokens - 1);
  }
  return m;
}

}  // namespace tern::loadtest
