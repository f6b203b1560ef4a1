// Fuzzes the tern.v1 request path that runs before any model work: bytes as
// they arrive on the wire are parsed as the message a method takes (as gRPC
// does) and checked by the server's validation (server/validation/).
//
// Input: byte 0 picks the message (Generate, Chat, Tokenize, Detokenize,
// GenerateImage) and whether the server's default limits or a tight set
// apply; the rest is the serialized message. Validation must answer OK or
// INVALID_ARGUMENT, and an accepted request must be inside every documented
// limit (a property check of the validation itself).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_support.h"
#include "server/validation/request_validation.h"

namespace {

using tern::server::RequestLimits;

void CheckAcceptedSampling(const tern::v1::SamplingParams& s, const RequestLimits& limits) {
  FUZZ_ASSERT(s.stop_size() <= limits.max_stop_strings);
  for (const auto& stop : s.stop()) FUZZ_ASSERT(!stop.empty() && static_cast<int>(stop.size()) <= limits.max_stop_string_bytes);
  if (s.has_n()) FUZZ_ASSERT(s.n() >= 1 && s.n() <= limits.max_n);
  if (s.has_max_tokens()) FUZZ_ASSERT(s.max_tokens() >= 1 && (limits.max_tokens == 0 || s.max_tokens() <= limits.max_tokens));
  if (s.has_logprobs()) FUZZ_ASSERT(s.logprobs() >= 0 && s.logprobs() <= 20);
  if (s.has_temperature()) FUZZ_ASSERT(std::isfinite(s.temperature()) && s.temperature() >= 0);
  if (s.has_top_p()) FUZZ_ASSERT(s.top_p() > 0 && s.top_p() <= 1);
  if (s.has_top_k()) FUZZ_ASSERT(s.top_k() >= 0);
  FUZZ_ASSERT(s.stop_token_ids_size() <= limits.max_stop_token_ids);
  for (int32_t id : s.stop_token_ids()) FUZZ_ASSERT(id >= 0);
}

void CheckAcceptedSot(const tern::v1::SkeletonOfThought& sot, const RequestLimits& limits) {
  FUZZ_ASSERT(sot.outline_size() != 1 && sot.outline_size() <= limits.max_outline_points);
  for (const auto& point : sot.outline()) {
    FUZZ_ASSERT(static_cast<int>(point.size()) <= limits.max_outline_point_bytes);
    FUZZ_ASSERT(point.find('\n') == std::string::npos);
  }
}

void CheckOutcome(const absl::Status& status) {
  FUZZ_ASSERT(status.ok() || status.code() == absl::StatusCode::kInvalidArgument);
  FUZZ_ASSERT(status.ok() || !status.message().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  RequestLimits limits;
  if (control & 0x80) {
    tern::v1::LimitsConfig config;
    config.set_max_prompt_bytes(64);
    config.set_max_tokens(32);
    config.set_max_n(2);
    config.set_max_stop_strings(2);
    limits = RequestLimits::FromConfig(config);
  }
  const uint8_t* body = data + 1;
  const int body_size = static_cast<int>(size - 1);
  switch (control % 5) {
    case 0: {
      tern::v1::GenerateRequest request;
      if (!request.ParseFromArray(body, body_size)) return 0;
      const absl::Status status = tern::server::ValidateGenerateRequest(request, limits);
      CheckOutcome(status);
      if (!status.ok()) return 0;
      FUZZ_ASSERT(!request.model().empty());
      FUZZ_ASSERT(request.prompt_case() != tern::v1::GenerateRequest::PROMPT_NOT_SET);
      if (request.has_text()) FUZZ_ASSERT(static_cast<int>(request.text().size()) <= limits.max_prompt_bytes);
      FUZZ_ASSERT(request.priority() >= -100 && request.priority() <= 100);
      FUZZ_ASSERT(static_cast<int>(request.request_id().size()) <= limits.max_request_id_bytes);
      CheckAcceptedSampling(request.sampling(), limits);
      CheckAcceptedSot(request.sot(), limits);
      return 0;
    }
    case 1: {
      tern::v1::ChatRequest request;
      if (!request.ParseFromArray(body, body_size)) return 0;
      const absl::Status status = tern::server::ValidateChatRequest(request, limits);
      CheckOutcome(status);
      if (!status.ok()) return 0;
      FUZZ_ASSERT(request.messages_size() >= 1 && request.messages_size() <= limits.max_chat_messages);
      size_t bytes = 0;
      for (const auto& message : request.messages()) bytes += message.content().size();
      FUZZ_ASSERT(bytes <= static_cast<size_t>(limits.max_prompt_bytes));
      CheckAcceptedSampling(request.sampling(), limits);
      CheckAcceptedSot(request.sot(), limits);
      return 0;
    }
    case 2: {
      tern::v1::TokenizeRequest request;
      if (!request.ParseFromArray(body, body_size)) return 0;
      const absl::Status status = tern::server::ValidateTokenizeRequest(request, limits);
      CheckOutcome(status);
      if (status.ok()) FUZZ_ASSERT(static_cast<int>(request.text().size()) <= limits.max_prompt_bytes);
      return 0;
    }
    case 3: {
      tern::v1::DetokenizeRequest request;
      if (!request.ParseFromArray(body, body_size)) return 0;
      const absl::Status status = tern::server::ValidateDetokenizeRequest(request, limits);
      CheckOutcome(status);
      if (status.ok()) {
        for (int32_t id : request.ids()) FUZZ_ASSERT(id >= 0);
      }
      return 0;
    }
    default: {
      tern::v1::GenerateImageRequest request;
      if (!request.ParseFromArray(body, body_size)) return 0;
      const absl::Status status = tern::server::ValidateGenerateImageRequest(request, limits);
      CheckOutcome(status);
      if (!status.ok()) return 0;
      FUZZ_ASSERT(request.width() >= 0 && request.width() <= limits.max_image_side);
      FUZZ_ASSERT(request.height() >= 0 && request.height() <= limits.max_image_side);
      FUZZ_ASSERT(request.steps() >= 0 && request.steps() <= limits.max_image_steps);
      FUZZ_ASSERT(request.batch() >= 0 && request.batch() <= limits.max_image_batch);
      return 0;
    }
  }
}
