#include "server/openai/openai_response.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/front/status_mapping.h"

namespace tern::server::openai {
namespace {

using json = nlohmann::ordered_json;

const char* FinishName(tern::v1::FinishReason reason) {
  switch (reason) {
    case tern::v1::FINISH_REASON_STOP: return "stop";
    case tern::v1::FINISH_REASON_LENGTH: return "length";
    case tern::v1::FINISH_REASON_ABORT: return "abort";
    default: break;
  }
  return nullptr;
}

const char* RouterDecisionName(tern::v1::RouterDecision decision) {
  switch (decision) {
    case tern::v1::ROUTER_DECISION_SKELETON_OF_THOUGHT: return "skeleton_of_thought";
    case tern::v1::ROUTER_DECISION_NORMAL: return "normal";
    default: break;
  }
  return "not_routed";
}

json BytesArray(const std::string& bytes) {
  json out = json::array();
  for (unsigned char ch : bytes) out.push_back(static_cast<int>(ch));
  return out;
}

}  // namespace

json ImagesBody(int64_t created, const std::vector<tern::v1::GeneratedImage>& images) {
  json data = json::array();
  json seeds = json::array();
  for (const tern::v1::GeneratedImage& image : images) {
    data.push_back({{"b64_json", absl::Base64Escape(image.png())}});
    seeds.push_back(image.seed());
  }
  json body = {{"created", created}, {"data", std::move(data)}, {"output_format", "png"}};
  if (!images.empty()) body["size"] = absl::StrCat(images[0].width(), "x", images[0].height());
  body["tern"] = {{"seeds", std::move(seeds)}};
  return body;
}

std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

json ErrorObject(int http_status, const std::string& message, const std::string& param, const std::string& code) {
  json error = {{"message", message}, {"type", OpenAiErrorType(http_status)}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) error["param"] = param;
  if (!code.empty()) error["code"] = code;
  return json{{"error", std::move(error)}};
}

HttpResponse ErrorResponse(const absl::Status& status) {
  const int http = HttpStatusOf(status.code());
  std::string param = ParamOf(status);
  std::string code = StatusCodeSlug(status.code());
  if (status.code() == absl::StatusCode::kNotFound) {
    if (param.empty()) param = "model";
    code = "model_not_found";
  } else if (status.code() == absl::StatusCode::kUnauthenticated) {
    code = "invalid_api_key";
  }
  HttpResponse response;
  response.status = http;
  response.content_type = "application/json";
  response.body = Dump(ErrorObject(http, std::string(status.message()), param, code));
  if (http == 401) response.headers.emplace_back("WWW-Authenticate", "Bearer");
  return response;
}

HttpResponse TransportErrorResponse(int http_status, const std::string& message) {
  const char* code = "error";
  switch (http_status) {
    case 400: code = "bad_request"; break;
    case 404: code = "not_found"; break;
    case 405: code = "method_not_allowed"; break;
    case 413: code = "request_too_large"; break;
    case 431: code = "request_header_fields_too_large"; break;
    case 500: code = "internal"; break;
    default: break;
  }
  HttpResponse response;
  response.status = http_status;
  response.content_type = "application/json";
  response.body = Dump(ErrorObject(http_status, message, "", code));
  return response;
}

ResponseAssembler::ResponseAssembler(Endpoint endpoint, std::string id, std::string model, int64_t created,
                                     ResponseOptions options, const runtime::Tokenizer* tokenizer)
    : endpoint_(endpoint),
      id_(std::move(id)),
      model_(std::move(model)),
      created_(created),
      options_(options),
      tokenizer_(tokenizer) {}

std::string ResponseAssembler::TokenText(const tern::v1::TokenLogprob& token) const {
  if (tokenizer_ == nullptr || token.token_id() < 0 || token.token_id() >= tokenizer_->vocab_size()) {
    return token.token();
  }
  std::string bytes;
  bool at_start = false;  // keep a leading space: the token follows others
  tokenizer_->AppendTokenBytes(token.token_id(), /*skip_special_tokens=*/false, &at_start, &bytes);
  return bytes;
}

json ResponseAssembler::LogprobsDelta(const tern::v1::Choice& choice, Choice& state) const {
  if (!options_.logprobs || choice.logprobs_size() == 0) return nullptr;
  if (endpoint_ == Endpoint::kChatCompletions) {
    json content = json::array();
    for (const tern::v1::Logprobs& lp : choice.logprobs()) {
      if (!lp.has_sampled()) continue;
      const std::string token = TokenText(lp.sampled());
      json top = json::array();
      for (const tern::v1::TokenLogprob& alt : lp.top()) {
        const std::string text = TokenText(alt);
        top.push_back({{"token", text}, {"logprob", alt.logprob()}, {"bytes", BytesArray(text)}});
      }
      content.push_back({{"token", token},
                         {"logprob", lp.sampled().logprob()},
                         {"bytes", BytesArray(token)},
                         {"top_logprobs", std::move(top)}});
    }
    return content;
  }
  json out = {{"tokens", json::array()},
              {"token_logprobs", json::array()},
              {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const tern::v1::Logprobs& lp : choice.logprobs()) {
    if (!lp.has_sampled()) continue;
    const std::string token = TokenText(lp.sampled());
    json top = json::object();
    for (const tern::v1::TokenLogprob& alt : lp.top()) top[TokenText(alt)] = alt.logprob();
    out["tokens"].push_back(token);
    out["token_logprobs"].push_back(lp.sampled().logprob());
    out["top_logprobs"].push_back(std::move(top));
    out["text_offset"].push_back(state.text_offset);
    state.text_offset += static_cast<int64_t>(token.size());
  }
  return out;
}

std::map<int, ResponseAssembler::Delta> ResponseAssembler::Deltas(const tern::v1::GenerateResponse& message) {
  std::map<int, Delta> out;
  const auto add_logprobs = [](Delta& d, json more) {
    if (more.is_null()) return;
    if (d.logprobs.is_null()) {
      d.logprobs = std::move(more);
    } else if (d.logprobs.is_array()) {
      for (auto& entry : more) d.logprobs.push_back(std::move(entry));
    } else {
      for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
        for (auto& entry : more[key]) d.logprobs[key].push_back(std::move(entry));
      }
    }
  };
  for (const tern::v1::Choice& choice : message.choices()) {
    switch (choice.part()) {
      case tern::v1::CHOICE_PART_SKELETON: {
        sot_parts_ = true;
        if (choice.finish_reason() == tern::v1::FINISH_REASON_LENGTH) sot_length_ = true;
        if (endpoint_ == Endpoint::kChatCompletions) out[0].reasoning += choice.text();
        break;
      }
      case tern::v1::CHOICE_PART_POINT: {
        sot_parts_ = true;
        if (choice.finish_reason() == tern::v1::FINISH_REASON_LENGTH) sot_length_ = true;
        Delta& d = out[0];
        if (!choice.text().empty() && choice.index() != last_point_) {
          // Points stream in outline order; each is a line of the answer.
          if (last_point_ >= 0) d.text += "\n";
          last_point_ = choice.index();
        }
        d.text += choice.text();
        add_logprobs(d, LogprobsDelta(choice, choices_[0]));
        break;
      }
      default: {
        Delta& d = out[choice.index()];
        d.text += choice.text();
        add_logprobs(d, LogprobsDelta(choice, choices_[choice.index()]));
        if (const char* finish = FinishName(choice.finish_reason())) d.finish = finish;
        break;
      }
    }
  }
  if (message.has_usage()) {
    TakeLast(message);
    // A Skeleton-of-Thought answer ends once, when the request does.
    if (sot_parts_ && !choices_[0].finish.has_value() && !out[0].finish.has_value()) {
      out[0].finish = sot_length_ ? "length" : "stop";
    }
  }
  return out;
}

void ResponseAssembler::TakeLast(const tern::v1::GenerateResponse& message) {
  usage_ = message.usage();
  last_ = message;
}

json ResponseAssembler::ChunkHeader() const {
  json chunk = {{"id", id_},
                {"object", endpoint_ == Endpoint::kChatCompletions ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", model_}};
  return chunk;
}

std::string ResponseAssembler::Event(const json& chunk) const { return absl::StrCat("data: ", Dump(chunk), "\n\n"); }

json ResponseAssembler::UsageJson() const {
  const tern::v1::Usage usage = usage_.value_or(tern::v1::Usage());
  return {{"prompt_tokens", usage.prompt_tokens()},
          {"completion_tokens", usage.completion_tokens()},
          {"total_tokens", usage.prompt_tokens() + usage.completion_tokens()},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens()}}}};
}

std::string ResponseAssembler::Events(const tern::v1::GenerateResponse& message) {
  std::string events;
  for (auto& [index, d] : Deltas(message)) {
    Choice& state = choices_[index];
    if (d.text.empty() && d.reasoning.empty() && d.logprobs.is_null() && !d.finish.has_value()) continue;
    json choice = {{"index", index}};
    if (endpoint_ == Endpoint::kChatCompletions) {
      json delta = json::object();
      if (!state.started) delta["role"] = "assistant";
      if (!d.text.empty() || !state.started) delta["content"] = d.text;
      if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
      choice["delta"] = std::move(delta);
      choice["logprobs"] = d.logprobs.is_null() ? json(nullptr) : json{{"content", d.logprobs}};
    } else {
      choice["text"] = d.text;
      choice["logprobs"] = d.logprobs;
    }
    choice["finish_reason"] = d.finish.has_value() ? json(*d.finish) : json(nullptr);
    state.started = true;
    state.text += d.text;
    state.reasoning += d.reasoning;
    if (d.finish.has_value()) state.finish = d.finish;
    json chunk = ChunkHeader();
    chunk["choices"] = json::array({std::move(choice)});
    if (options_.include_usage) chunk["usage"] = nullptr;
    events += Event(chunk);
  }
  return events;
}

std::string ResponseAssembler::EndEvents() {
  std::string events;
  if (options_.include_usage) {
    json chunk = ChunkHeader();
    chunk["choices"] = json::array();
    chunk["usage"] = UsageJson();
    events += Event(chunk);
  }
  return events + "data: [DONE]\n\n";
}

std::string ResponseAssembler::ErrorEvents(const absl::Status& status) {
  const HttpResponse response = ErrorResponse(status);
  return absl::StrCat("data: ", response.body, "\n\n", "data: [DONE]\n\n");
}

void ResponseAssembler::Add(const tern::v1::GenerateResponse& message) {
  for (auto& [index, d] : Deltas(message)) {
    Choice& state = choices_[index];
    state.text += d.text;
    state.reasoning += d.reasoning;
    if (d.finish.has_value()) state.finish = d.finish;
    if (d.logprobs.is_null()) continue;
    if (state.logprobs.is_null()) {
      state.logprobs = std::move(d.logprobs);
    } else if (state.logprobs.is_array()) {
      for (auto& entry : d.logprobs) state.logprobs.push_back(std::move(entry));
    } else {
      for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
        for (auto& entry : d.logprobs[key]) state.logprobs[key].push_back(std::move(entry));
      }
    }
  }
}

json ResponseAssembler::Body() const {
  const bool chat = endpoint_ == Endpoint::kChatCompletions;
  const tern::v1::SotReport* sot = last_.has_value() && last_->has_sot() ? &last_->sot() : nullptr;
  const bool used_sot = sot != nullptr && last_->decoding_mode() == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT;
  json choices = json::array();
  for (const auto& [index, state] : choices_) {
    json choice = {{"index", index}};
    const std::string& text = used_sot && index == 0 ? sot->answer() : state.text;
    if (chat) {
      json message = {{"role", "assistant"}, {"content", text}};
      if (!state.reasoning.empty()) message["reasoning_content"] = state.reasoning;
      choice["message"] = std::move(message);
      choice["logprobs"] = options_.logprobs
                               ? json{{"content", state.logprobs.is_null() ? json::array() : state.logprobs}}
                               : json(nullptr);
    } else {
      choice["text"] = text;
      choice["logprobs"] = options_.logprobs && !state.logprobs.is_null() ? state.logprobs : json(nullptr);
    }
    choice["finish_reason"] = state.finish.has_value() ? json(*state.finish) : json(nullptr);
    choices.push_back(std::move(choice));
  }
  json body = {{"id", id_},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created_},
               {"model", model_},
               {"choices", std::move(choices)},
               {"usage", UsageJson()}};
  if (sot != nullptr) {
    body["tern"] = {{"decoding_mode", used_sot ? "skeleton_of_thought" : "normal"},
                    {"sot",
                     {{"router_decision", RouterDecisionName(sot->router_decision())},
                      {"router", sot->router()},
                      {"fell_back", sot->fell_back()},
                      {"points", sot->points_size()}}}};
  }
  return body;
}

}  // namespace tern::server::openai
