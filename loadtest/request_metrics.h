// What happened to one request on the wire, and the latency metrics derived
// from it. No gRPC types here: the status is kept as its numeric code.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tern::loadtest {

using Clock = std::chrono::steady_clock;

// Filled by the client while the request streams; read after it is done.
struct RequestTrace {
  int64_t index = 0;                    // order of issue, from 0
  int tenant = 0;                       // index into the tenant list
  int64_t max_tokens = 0;               // the max_tokens it asked for
  Clock::time_point scheduled;          // when the arrival process wanted it sent (closed loop: when
                                        // a slot freed)
  Clock::time_point sent;               // when the call was started
  Clock::time_point done;               // when the final status arrived
  // Arrival time of every response chunk that carried at least one token
  // (non-empty token_ids or text), in order.
  std::vector<Clock::time_point> token_chunk_times;
  int64_t counted_tokens = 0;           // token ids seen across all chunks
  std::optional<int64_t> usage_completion_tokens;  // from the final usage
  std::optional<int64_t> usage_prompt_tokens;
  int finish_reason = 0;                // tern.v1.FinishReason of the last choice to finish
  // Skeleton-of-Thought. Chunks of every part (skeleton, points, answer)
  // count as tokens above: TTFT is the first token of any part.
  bool sot_requested = false;           // sent as DECODING_MODE_SKELETON_OF_THOUGHT
  int decoding_used = 0;                // tern.v1.DecodingMode the server reported; 0 (AUTO) = none
  bool sot_report = false;              // the last message carried a SotReport
  int router_decision = 0;              // tern.v1.RouterDecision from it
  bool sot_fell_back = false;           // the skeleton had fewer than 2 points
  int sot_points = 0;                   // points expanded
  // Images (GenerateImage): each progress event (one sampler step) counts as
  // a token chunk above and counted_tokens counts steps, so TTFT is the time
  // to the first step and TPOT the time per step.
  bool image_requested = false;
  int64_t images_received = 0;
  int status_code = -1;                 // grpc::StatusCode; -1 = never finished
  std::string status_message;
};

// Latencies of one request, in milliseconds.
struct RequestMetrics {
  bool ok = false;                      // status_code == 0 (OK)
  std::optional<double> ttft_ms;        // sent -> first token chunk; unset without one
  std::optional<double> tpot_ms;        // (e2e - ttft) / (output_tokens - 1); unset below 2 tokens
  std::vector<double> itl_ms;           // gaps between consecutive token chunks
  double e2e_ms = 0;                    // sent -> done
  double client_queue_ms = 0;           // scheduled -> sent (time waiting for the in-flight cap)
  int64_t output_tokens = 0;            // usage.completion_tokens, else counted token ids
};

RequestMetrics ComputeRequestMetrics(const RequestTrace& trace);

}  // namespace tern::loadtest
