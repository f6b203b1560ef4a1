#include "server/front/request_conversion.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tern::server {

runtime::SamplingParams ToSamplingParams(const tern::v1::SamplingParams& p) {
  runtime::SamplingParams s;
  if (p.has_temperature()) s.temperature = p.temperature();
  if (p.has_top_p()) s.top_p = p.top_p();
  if (p.has_top_k()) s.top_k = p.top_k();
  if (p.has_min_p()) s.min_p = p.min_p();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  if (p.has_presence_penalty()) s.presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) s.frequency_penalty = p.frequency_penalty();
  if (p.has_seed()) s.seed = p.seed();
  s.stop.assign(p.stop().begin(), p.stop().end());
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  if (p.has_max_tokens()) s.max_tokens = p.max_tokens();
  if (p.has_n()) s.n = p.n();
  if (p.has_logprobs()) s.logprobs = p.logprobs();
  s.ignore_eos = p.ignore_eos();
  s.skip_special_tokens = !p.include_special_tokens();
  return s;
}

absl::StatusOr<std::vector<int32_t>> PromptTokens(const tern::v1::GenerateRequest& request, const ServedModel& model) {
  if (request.prompt_case() == tern::v1::GenerateRequest::kTokenIds) {
    return std::vector<int32_t>(request.token_ids().ids().begin(), request.token_ids().ids().end());
  }
  if (model.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("model \"", model.info.name(),
                                                      "\" has no tokenizer; send token_ids instead of text"));
  }
  return model.tokenizer->Encode(request.text(), /*add_special_tokens=*/true);
}

absl::StatusOr<std::vector<int32_t>> ChatPromptTokens(const tern::v1::ChatRequest& request, const ServedModel& model) {
  if (model.tokenizer == nullptr || model.chat_template == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model \"", model.info.name(), "\" has no chat template (tokenizer_config.json chat_template); use Generate"));
  }
  runtime::ChatTemplateInputs inputs;
  for (const auto& message : request.messages()) inputs.messages.push_back({message.role(), message.content()});
  inputs.add_generation_prompt = !request.has_add_generation_prompt() || request.add_generation_prompt();
  inputs.bos_token = model.chat_template->bos_token;
  inputs.eos_token = model.chat_template->eos_token;
  auto prompt = model.chat_template->chat_template.Render(inputs);
  if (!prompt.ok()) return prompt.status();
  return model.tokenizer->Encode(*prompt, /*add_special_tokens=*/false);
}

scheduler::EngineRequest MakeEngineRequest(const std::string& request_id, const scheduler::Tenant& tenant,
                                           int32_t priority, std::vector<int32_t> prompt,
                                           runtime::SamplingParams sampling, absl::Time deadline) {
  scheduler::EngineRequest request;
  request.request_id = request_id;
  request.tenant = &tenant;
  request.priority = std::clamp(priority + tenant.priority, -200, 200);
  request.prompt_token_ids = std::move(prompt);
  request.sampling = std::move(sampling);
  request.arrival_time = absl::Now();
  request.deadline = deadline;
  return request;
}

}  // namespace tern::server
