#include "server/validation/request_validation.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status CheckFloat(const std::string& field, float value, double lo, double hi,
                        bool lo_open, const char* range) {
  if (!std::isfinite(value)) return Invalid(field, "must be a finite number");
  const bool above = lo_open ? value > lo : value >= lo;
  if (!above || value > hi) return Invalid(field, absl::StrCat(value, " is not in ", range));
  return absl::OkStatus();
}

absl::Status CheckRequestId(const std::string& id, const RequestLimits& limits) {
  if (static_cast<int>(id.size()) > limits.max_request_id_bytes) {
    return Invalid("request_id", absl::StrCat("is ", id.size(), " bytes; the limit is ",
                                              limits.max_request_id_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckModel(const std::string& model) {
  if (model.empty()) return Invalid("model", "is required (ListModels names the served models)");
  return absl::OkStatus();
}

absl::Status CheckPriority(int priority) {
  if (priority < -100 || priority > 100) {
    return Invalid("priority", absl::StrCat(priority, " is not in [-100, 100]"));
  }
  return absl::OkStatus();
}

absl::Status CheckDecodingMode(tern::v1::DecodingMode mode) {
  if (!tern::v1::DecodingMode_IsValid(mode)) {
    return Invalid("decoding_mode", absl::StrCat(static_cast<int>(mode), " is not a DecodingMode"));
  }
  return absl::OkStatus();
}

// The Skeleton-of-Thought options against the decoding mode and the limits.
absl::Status CheckSot(const tern::v1::SkeletonOfThought& sot, tern::v1::DecodingMode mode,
                      const tern::v1::SamplingParams& sampling, const RequestLimits& limits) {
  const bool wants_sot = mode == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT || sot.outline_size() > 0;
  if (mode == tern::v1::DECODING_MODE_NORMAL && (sot.outline_size() > 0 || sot.ordered() || sot.has_max_point_tokens())) {
    return Invalid("sot", "is set but decoding_mode is NORMAL");
  }
  if (wants_sot && sampling.has_n() && sampling.n() > 1) {
    return Invalid("sampling.n", absl::StrCat(sampling.n(), " choices; Skeleton-of-Thought decodes one answer (n = 1)"));
  }
  if (sot.outline_size() > limits.max_outline_points) {
    return Invalid("sot.outline", absl::StrCat(sot.outline_size(), " points; the limit is ", limits.max_outline_points));
  }
  if (sot.outline_size() == 1) {
    return Invalid("sot.outline", "has 1 point; Skeleton-of-Thought expands at least 2");
  }
  for (int i = 0; i < sot.outline_size(); ++i) {
    const std::string& point = sot.outline(i);
    const std::string field = absl::StrCat("sot.outline[", i, "]");
    if (static_cast<int>(point.size()) > limits.max_outline_point_bytes) {
      return Invalid(field, absl::StrCat("is ", point.size(), " bytes; the limit is ", limits.max_outline_point_bytes));
    }
    if (point.find_first_not_of(" \t\r") == std::string::npos) return Invalid(field, "is empty");
    if (point.find('\n') != std::string::npos) return Invalid(field, "holds a line break; a point is one line");
  }
  if (sot.has_max_point_tokens() && (sot.max_point_tokens() < 1 || sot.max_point_tokens() > 4096)) {
    return Invalid("sot.max_point_tokens", absl::StrCat(sot.max_point_tokens(), " is not in [1, 4096]"));
  }
  return absl::OkStatus();
}

}  // namespace

RequestLimits RequestLimits::FromConfig(const tern::v1::LimitsConfig& config) {
  RequestLimits limits;
  if (config.max_prompt_bytes() > 0) limits.max_prompt_bytes = config.max_prompt_bytes();
  if (config.max_tokens() > 0) limits.max_tokens = config.max_tokens();
  if (config.max_n() > 0) limits.max_n = config.max_n();
  if (config.max_stop_strings() > 0) limits.max_stop_strings = config.max_stop_strings();
  return limits;
}

absl::Status ValidateSamplingParams(const tern::v1::SamplingParams& s, const RequestLimits& limits) {
  if (s.has_temperature()) {
    RETURN_IF_ERROR(CheckFloat("sampling.temperature", s.temperature(), 0.0, 100.0, false, "[0, 100]"));
  }
  if (s.has_top_p()) RETURN_IF_ERROR(CheckFloat("sampling.top_p", s.top_p(), 0.0, 1.0, true, "(0, 1]"));
  if (s.has_top_k() && s.top_k() < 0) {
    return Invalid("sampling.top_k", absl::StrCat(s.top_k(), " is negative (0 means no limit)"));
  }
  if (s.has_min_p()) RETURN_IF_ERROR(CheckFloat("sampling.min_p", s.min_p(), 0.0, 1.0, false, "[0, 1]"));
  if (s.has_repetition_penalty()) {
    RETURN_IF_ERROR(CheckFloat("sampling.repetition_penalty", s.repetition_penalty(), 0.0, 100.0,
                               true, "(0, 100]"));
  }
  if (s.has_presence_penalty()) {
    RETURN_IF_ERROR(
        CheckFloat("sampling.presence_penalty", s.presence_penalty(), -2.0, 2.0, false, "[-2, 2]"));
  }
  if (s.has_frequency_penalty()) {
    RETURN_IF_ERROR(
        CheckFloat("sampling.frequency_penalty", s.frequency_penalty(), -2.0, 2.0, false, "[-2, 2]"));
  }
  if (s.stop_size() > limits.max_stop_strings) {
    return Invalid("sampling.stop", absl::StrCat(s.stop_size(), " stop strings; the limit is ",
                                                 limits.max_stop_strings));
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    const std::string field = absl::StrCat("sampling.stop[", i, "]");
    if (s.stop(i).empty()) return Invalid(field, "is empty");
    if (static_cast<int>(s.stop(i).size()) > limits.max_stop_string_bytes) {
      return Invalid(field, absl::StrCat("is ", s.stop(i).size(), " bytes; the limit is ",
                                         limits.max_stop_string_bytes));
    }
  }
  if (s.stop_token_ids_size() > limits.max_stop_token_ids) {
    return Invalid("sampling.stop_token_ids", absl::StrCat(s.stop_token_ids_size(), " ids; the limit is ",
                                                          limits.max_stop_token_ids));
  }
  for (int i = 0; i < s.stop_token_ids_size(); ++i) {
    if (s.stop_token_ids(i) < 0) {
      return Invalid(absl::StrCat("sampling.stop_token_ids[", i, "]"), "is negative");
    }
  }
  if (s.has_max_tokens()) {
    if (s.max_tokens() < 1) return Invalid("sampling.max_tokens", absl::StrCat(s.max_tokens(), " is < 1"));
    if (limits.max_tokens > 0 && s.max_tokens() > limits.max_tokens) {
      return Invalid("sampling.max_tokens", absl::StrCat(s.max_tokens(), " exceeds the server limit ",
                                                         limits.max_tokens));
    }
  }
  if (s.has_n() && (s.n() < 1 || s.n() > limits.max_n)) {
    return Invalid("sampling.n", absl::StrCat(s.n(), " is not in [1, ", limits.max_n, "]"));
  }
  if (s.has_logprobs() && (s.logprobs() < 0 || s.logprobs() > 20)) {
    return Invalid("sampling.logprobs", absl::StrCat(s.logprobs(), " is not in [0, 20]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateGenerateRequest(const tern::v1::GenerateRequest& r, const RequestLimits& limits) {
  RETURN_IF_ERROR(CheckModel(r.model()));
  switch (r.prompt_case()) {
    case tern::v1::GenerateRequest::kText:
      if (r.text().empty()) return Invalid("text", "is empty");
      if (static_cast<int>(r.text().size()) > limits.max_prompt_bytes) {
        return Invalid("text", absl::StrCat("is ", r.text().size(), " bytes; the limit is ",
                                            limits.max_prompt_bytes));
      }
      break;
    case tern::v1::GenerateRequest::kTokenIds:
      if (r.token_ids().ids_size() == 0) return Invalid("token_ids", "is empty");
      for (int i = 0; i < r.token_ids().ids_size(); ++i) {
        if (r.token_ids().ids(i) < 0) return Invalid(absl::StrCat("token_ids[", i, "]"), "is negative");
      }
      break;
    case tern::v1::GenerateRequest::PROMPT_NOT_SET:
      return Invalid("prompt", "set exactly one of text or token_ids");
  }
  RETURN_IF_ERROR(ValidateSamplingParams(r.sampling(), limits));
  RETURN_IF_ERROR(CheckPriority(r.priority()));
  RETURN_IF_ERROR(CheckDecodingMode(r.decoding_mode()));
  RETURN_IF_ERROR(CheckSot(r.sot(), r.decoding_mode(), r.sampling(), limits));
  if (r.prompt_case() == tern::v1::GenerateRequest::kTokenIds &&
      (r.decoding_mode() == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT || r.sot().outline_size() > 0)) {
    return Invalid("token_ids", "Skeleton-of-Thought needs the question as text");
  }
  return CheckRequestId(r.request_id(), limits);
}

absl::Status ValidateChatRequest(const tern::v1::ChatRequest& r, const RequestLimits& limits) {
  RETURN_IF_ERROR(CheckModel(r.model()));
  if (r.messages_size() == 0) return Invalid("messages", "is empty");
  if (r.messages_size() > limits.max_chat_messages) {
    return Invalid("messages", absl::StrCat(r.messages_size(), " messages; the limit is ",
                                            limits.max_chat_messages));
  }
  size_t total_bytes = 0;
  for (int i = 0; i < r.messages_size(); ++i) {
    const auto& role = r.messages(i).role();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      return Invalid(absl::StrCat("messages[", i, "].role"),
                     absl::StrCat("\"", role, "\" is not one of: system, user, assistant, tool"));
    }
    total_bytes += r.messages(i).content().size();
  }
  if (total_bytes > static_cast<size_t>(limits.max_prompt_bytes)) {
    return Invalid("messages", absl::StrCat("hold ", total_bytes, " bytes of content; the limit is ",
                                            limits.max_prompt_bytes));
  }
  RETURN_IF_ERROR(ValidateSamplingParams(r.sampling(), limits));
  RETURN_IF_ERROR(CheckPriority(r.priority()));
  RETURN_IF_ERROR(CheckDecodingMode(r.decoding_mode()));
  RETURN_IF_ERROR(CheckSot(r.sot(), r.decoding_mode(), r.sampling(), limits));
  if ((r.decoding_mode() == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT || r.sot().outline_size() > 0) &&
      r.messages(r.messages_size() - 1).role() != "user") {
    return Invalid(absl::StrCat("messages[", r.messages_size() - 1, "].role"),
                   "Skeleton-of-Thought answers the last message, which must be a user message");
  }
  return CheckRequestId(r.request_id(), limits);
}

absl::Status ValidateTokenizeRequest(const tern::v1::TokenizeRequest& r, const RequestLimits& limits) {
  RETURN_IF_ERROR(CheckModel(r.model()));
  if (static_cast<int>(r.text().size()) > limits.max_prompt_bytes) {
    return Invalid("text", absl::StrCat("is ", r.text().size(), " bytes; the limit is ",
                                        limits.max_prompt_bytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateDetokenizeRequest(const tern::v1::DetokenizeRequest& r,
                                       const RequestLimits& limits) {
  RETURN_IF_ERROR(CheckModel(r.model()));
  for (int i = 0; i < r.ids_size(); ++i) {
    if (r.ids(i) < 0) return Invalid(absl::StrCat("ids[", i, "]"), "is negative");
  }
  return absl::OkStatus();
}

absl::Status ValidateGenerateImageRequest(const tern::v1::GenerateImageRequest& r,
                                          const RequestLimits& limits) {
  RETURN_IF_ERROR(CheckModel(r.model()));
  if (r.condition_case() == tern::v1::GenerateImageRequest::CONDITION_NOT_SET) {
    return Invalid("condition", "set exactly one of prompt, class_label or class_name");
  }
  if (r.condition_case() == tern::v1::GenerateImageRequest::kClassLabel && r.class_label() < 0) {
    return Invalid("class_label", "is negative");
  }
  if (r.condition_case() == tern::v1::GenerateImageRequest::kClassName &&
      static_cast<int>(r.class_name().size()) > limits.max_prompt_bytes) {
    return Invalid("class_name", absl::StrCat("is ", r.class_name().size(), " bytes; the limit is ",
                                              limits.max_prompt_bytes));
  }
  if (r.condition_case() == tern::v1::GenerateImageRequest::kPrompt &&
      static_cast<int>(r.prompt().size()) > limits.max_prompt_bytes) {
    return Invalid("prompt", absl::StrCat("is ", r.prompt().size(), " bytes; the limit is ",
                                          limits.max_prompt_bytes));
  }
  for (const auto& [field, value] : {std::pair{"width", r.width()}, std::pair{"height", r.height()}}) {
    if (value < 0 || value > limits.max_image_side) {
      return Invalid(field, absl::StrCat(value, " is not in [0, ", limits.max_image_side, "]"));
    }
  }
  if (r.steps() < 0 || r.steps() > limits.max_image_steps) {
    return Invalid("steps", absl::StrCat(r.steps(), " is not in [0, ", limits.max_image_steps, "]"));
  }
  if (r.has_guidance_scale()) {
    RETURN_IF_ERROR(CheckFloat("guidance_scale", r.guidance_scale(), 0.0, 100.0, false, "[0, 100]"));
  }
  if (!tern::v1::Sampler_IsValid(r.sampler())) {
    return Invalid("sampler", absl::StrCat(static_cast<int>(r.sampler()), " is not a Sampler"));
  }
  // Worded so that it reads right through both transports: gRPC's batch (0 means one image) and
  // OpenAI's n (1 or more), which the HTTP front renames back to n.
  if (r.batch() < 0) return Invalid("batch", absl::StrCat(r.batch(), " is not a number of images"));
  if (r.batch() > limits.max_image_batch) {
    return Invalid("batch", absl::StrCat(r.batch(), " images is over the limit of ", limits.max_image_batch,
                                         " a request"));
  }
  RETURN_IF_ERROR(CheckPriority(r.priority()));
  return CheckRequestId(r.request_id(), limits);
}

}  // namespace tern::server
