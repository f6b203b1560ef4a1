// Fuzzes the OpenAI-compatible API's request path before any model work: the
// bytes of an HTTP body are parsed as a chat completion or completion request
// (server/openai/openai_request.h), and an accepted one is checked by the
// server's validation as the front would check it, its errors restated in
// OpenAI's parameter names.
//
// Input: byte 0 picks the endpoint (bit 0) and the limits (bit 7: a tight
// set); the rest is the body. Properties: parsing never throws and answers
// OK or INVALID_ARGUMENT with a message; a parameter named by an error is
// the start of its message; a parsed request's fields keep their JSON values'
// ranges (n, max_tokens within 32 bits were checked by the parser); the
// front's answer is OK or INVALID_ARGUMENT.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_support.h"
#include "server/openai/openai_request.h"
#include "server/validation/request_validation.h"

namespace {

using tern::server::RequestLimits;
namespace openai = tern::server::openai;

void CheckError(const absl::Status& status, openai::Endpoint endpoint) {
  FUZZ_ASSERT(status.code() == absl::StatusCode::kInvalidArgument);
  FUZZ_ASSERT(!status.message().empty());
  const absl::Status restated = openai::InOpenAiTerms(status, endpoint);
  FUZZ_ASSERT(restated.code() == status.code());
  const std::string param = openai::ParamOf(restated);
  FUZZ_ASSERT(param.empty() || std::string(restated.message()).rfind(param + ": ", 0) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  RequestLimits limits;
  if (control & 0x80) {
    tern::v1::LimitsConfig config;
    config.set_max_prompt_bytes(64);
    config.set_max_tokens(32);
    config.set_max_n(2);
    config.set_max_stop_strings(2);
    limits = RequestLimits::FromConfig(config);
  }
  if (control & 1) {
    const auto parsed = openai::ParseCompletionRequest(body);
    if (!parsed.ok()) {
      CheckError(parsed.status(), openai::Endpoint::kCompletions);
      return 0;
    }
    FUZZ_ASSERT(parsed->request.sampling().has_max_tokens());  // OpenAI's default of 16 when absent
    FUZZ_ASSERT(parsed->options.include_usage ? parsed->options.stream : true);
    const absl::Status checked = tern::server::ValidateGenerateRequest(parsed->request, limits);
    if (!checked.ok()) CheckError(checked, openai::Endpoint::kCompletions);
    return 0;
  }
  const auto parsed = openai::ParseChatCompletionRequest(body);
  if (!parsed.ok()) {
    CheckError(parsed.status(), openai::Endpoint::kChatCompletions);
    return 0;
  }
  FUZZ_ASSERT(parsed->options.include_usage ? parsed->options.stream : true);
  FUZZ_ASSERT(parsed->options.logprobs || !parsed->request.sampling().has_logprobs());
  const absl::Status checked = tern::server::ValidateChatRequest(parsed->request, limits);
  if (!checked.ok()) CheckError(checked, openai::Endpoint::kChatCompletions);
  return 0;
}
