// Field-by-field checks of incoming tern.v1 requests against the server's
// limits. Each returns OK or INVALID_ARGUMENT whose message names the field
// and the allowed range, so a client can fix its request without reading the
// server's source. Values are never clamped. Model-dependent checks (token
// ids below the vocabulary size, prompt plus max_tokens within the context)
// happen once the model is resolved.
#pragma once

#include "absl/status/status.h"
#include "tern/v1/config.pb.h"
#include "tern/v1/diffusion.pb.h"
#include "tern/v1/llm.pb.h"

namespace tern::server {

// Limits with defaults filled in from tern.v1.LimitsConfig.
struct RequestLimits {
  int max_prompt_bytes = 1 << 20;
  int max_tokens = 0;  // 0: bounded only by the model's context
  int max_n = 16;
  int max_stop_strings = 16;
  int max_stop_string_bytes = 256;
  int max_stop_token_ids = 256;  // each is checked against every generated token
  int max_request_id_bytes = 128;
  int max_chat_messages = 1024;
  int max_image_side = 4096;
  int max_image_steps = 1000;
  int max_image_batch = 16;
  int max_outline_points = 64;
  int max_outline_point_bytes = 1024;

  static RequestLimits FromConfig(const tern::v1::LimitsConfig& config);
};

absl::Status ValidateSamplingParams(const tern::v1::SamplingParams& sampling,
                                    const RequestLimits& limits);
absl::Status ValidateGenerateRequest(const tern::v1::GenerateRequest& request,
                                     const RequestLimits& limits);
absl::Status ValidateChatRequest(const tern::v1::ChatRequest& request, const RequestLimits& limits);
absl::Status ValidateTokenizeRequest(const tern::v1::TokenizeRequest& request,
                                     const RequestLimits& limits);
absl::Status ValidateDetokenizeRequest(const tern::v1::DetokenizeRequest& request,
                                       const RequestLimits& limits);
absl::Status ValidateGenerateImageRequest(const tern::v1::GenerateImageRequest& request,
                                          const RequestLimits& limits);

}  // namespace tern::server
