#include "server/openai/openai_request.h"

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/types/span.h"
#include "runtime/base/status_macros.h"

namespace tern::server::openai {
namespace {

using json = nlohmann::json;

absl::Status Invalid(const std::string& param, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(param, ": ", why));
}

// Thrown from the parser callback to stop a body nested too deep before it
// is built.
struct TooDeep {};

const char* TypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: break;
  }
  return "a value of another type";
}

absl::Status WrongType(const std::string& param, const char* expected, const json& value) {
  return Invalid(param, absl::StrCat("must be ", expected, ", not ", TypeName(value)));
}

absl::StatusOr<bool> Bool(const std::string& param, const json& value) {
  if (!value.is_boolean()) return WrongType(param, "a boolean", value);
  return value.get<bool>();
}

absl::StatusOr<std::string> String(const std::string& param, const json& value) {
  if (!value.is_string()) return WrongType(param, "a string", value);
  return value.get<std::string>();
}

absl::StatusOr<double> Number(const std::string& param, const json& value) {
  if (!value.is_number()) return WrongType(param, "a number", value);
  return value.get<double>();
}

// A float field: a JSON number that a float holds finitely.
absl::StatusOr<float> Float(const std::string& param, const json& value) {
  ASSIGN_OR_RETURN(double number, Number(param, value));
  if (std::fabs(number) > std::numeric_limits<float>::max()) {
    return Invalid(param, absl::StrCat(number, " is out of range"));
  }
  return static_cast<float>(number);
}

absl::StatusOr<int64_t> Integer(const std::string& param, const json& value, int64_t lo, int64_t hi) {
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(hi)) return Invalid(param, absl::StrCat(v, " is out of range"));
    return static_cast<int64_t>(v);
  }
  if (!value.is_number_integer()) return WrongType(param, "an integer", value);
  const int64_t v = value.get<int64_t>();
  if (v < lo || v > hi) return Invalid(param, absl::StrCat(v, " is out of range"));
  return v;
}

absl::StatusOr<int32_t> Int32(const std::string& param, const json& value) {
  ASSIGN_OR_RETURN(int64_t v, Integer(param, value, std::numeric_limits<int32_t>::min(),
                                      std::numeric_limits<int32_t>::max()));
  return static_cast<int32_t>(v);
}

std::string Indexed(const std::string& param, size_t i) { return absl::StrCat(param, "[", i, "]"); }

// Fields OpenAI defines that tern does not implement, and why.
const std::map<std::string, std::string>& Unsupported() {
  static const auto* fields = new std::map<std::string, std::string>{
      {"tools", "tern does not call tools"},
      {"tool_choice", "tern does not call tools"},
      {"parallel_tool_calls", "tern does not call tools"},
      {"functions", "tern does not call functions"},
      {"function_call", "tern does not call functions"},
      {"audio", "tern generates text only"},
      {"modalities", "tern generates text only"},
      {"prediction", "tern does not take predicted outputs"},
      {"reasoning_effort", "tern's models are not reasoning models"},
      {"service_tier", "tern has no service tiers (tern's priority field orders requests)"},
      {"store", "tern stores no completions"},
      {"metadata", "tern stores no completions"},
      {"web_search_options", "tern does not search the web"},
      {"prompt_cache_key", "tern's prefix cache needs no key"},
      {"safety_identifier", "tern has no safety system"},
      {"verbosity", "tern's models take no verbosity"},
      {"suffix", "tern does not insert text"},
  };
  return *fields;
}

// The parser of one object: a handler per field it takes. A field set to
// null is absent; a field without a handler is an error.
class ObjectReader {
 public:
  using Handler = std::function<absl::Status(const std::string& param, const json& value)>;

  ObjectReader(std::string prefix) : prefix_(std::move(prefix)) {}

  void On(const std::string& field, Handler handler) { handlers_[field] = std::move(handler); }

  absl::Status Read(const json& object) {
    // nlohmann's objects iterate in key order, so the first error is the
    // same whatever order the client wrote.
    for (const auto& [key, value] : object.items()) {
      const std::string param = prefix_ + key;
      if (value.is_null()) continue;
      const auto handler = handlers_.find(key);
      if (handler == handlers_.end()) {
        if (prefix_.empty()) {
          if (const auto it = Unsupported().find(key); it != Unsupported().end()) {
            return Invalid(param, absl::StrCat("is not supported (", it->second, ")"));
          }
        }
        return Invalid(param, "is not a field tern knows");
      }
      RETURN_IF_ERROR(handler->second(param, value));
      seen_.insert(key);
    }
    return absl::OkStatus();
  }

  bool Seen(const std::string& field) const { return seen_.count(field) > 0; }

 private:
  std::string prefix_;
  std::map<std::string, Handler> handlers_;
  std::set<std::string> seen_;
};

// Collects the fields both endpoints share.
struct Common {
  std::string model;
  tern::v1::SamplingParams sampling;
  int32_t priority = 0;
  tern::v1::DecodingMode decoding_mode = tern::v1::DECODING_MODE_NORMAL;
  tern::v1::SkeletonOfThought sot;
  ResponseOptions options;
  std::optional<int32_t> max_tokens;             // max_tokens
  std::optional<int32_t> max_completion_tokens;  // chat's newer name
  std::optional<int32_t> best_of;
  bool stream_options_given = false;
};

absl::Status ReadStop(const std::string& param, const json& value, tern::v1::SamplingParams* sampling) {
  if (value.is_string()) {
    sampling->add_stop(value.get<std::string>());
    return absl::OkStatus();
  }
  if (!value.is_array()) return WrongType(param, "a string or an array of strings", value);
  for (size_t i = 0; i < value.size(); ++i) {
    ASSIGN_OR_RETURN(std::string stop, String(Indexed(param, i), value[i]));
    sampling->add_stop(std::move(stop));
  }
  return absl::OkStatus();
}

absl::Status ReadSot(const std::string& param, const json& value, tern::v1::SkeletonOfThought* sot) {
  if (!value.is_object()) return WrongType(param, "an object", value);
  ObjectReader reader(param + ".");
  reader.On("outline", [&](const std::string& p, const json& v) -> absl::Status {
    if (!v.is_array()) return WrongType(p, "an array of strings", v);
    for (size_t i = 0; i < v.size(); ++i) {
      ASSIGN_OR_RETURN(std::string point, String(Indexed(p, i), v[i]));
      sot->add_outline(std::move(point));
    }
    return absl::OkStatus();
  });
  reader.On("ordered", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(bool ordered, Bool(p, v));
    sot->set_ordered(ordered);
    return absl::OkStatus();
  });
  reader.On("max_point_tokens", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t tokens, Int32(p, v));
    sot->set_max_point_tokens(tokens);
    return absl::OkStatus();
  });
  return reader.Read(value);
}

// Registers the fields both endpoints take.
void OnCommon(ObjectReader& reader, Common& c) {
  tern::v1::SamplingParams& s = c.sampling;
  reader.On("model", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(c.model, String(p, v));
    return absl::OkStatus();
  });
  const auto on_float = [&](const char* field, void (tern::v1::SamplingParams::*set)(float)) {
    reader.On(field, [&s, set](const std::string& p, const json& v) -> absl::Status {
      ASSIGN_OR_RETURN(float value, Float(p, v));
      (s.*set)(value);
      return absl::OkStatus();
    });
  };
  on_float("temperature", &tern::v1::SamplingParams::set_temperature);
  on_float("top_p", &tern::v1::SamplingParams::set_top_p);
  on_float("presence_penalty", &tern::v1::SamplingParams::set_presence_penalty);
  on_float("frequency_penalty", &tern::v1::SamplingParams::set_frequency_penalty);
  on_float("min_p", &tern::v1::SamplingParams::set_min_p);
  on_float("repetition_penalty", &tern::v1::SamplingParams::set_repetition_penalty);
  reader.On("top_k", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t k, Int32(p, v));
    s.set_top_k(k == -1 ? 0 : k);  // vLLM's -1 and tern's 0 both mean no limit
    return absl::OkStatus();
  });
  reader.On("n", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t n, Int32(p, v));
    s.set_n(n);
    return absl::OkStatus();
  });
  reader.On("best_of", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t best_of, Int32(p, v));
    c.best_of = best_of;
    return absl::OkStatus();
  });
  reader.On("seed", [&](const std::string& p, const json& v) -> absl::Status {
    // OpenAI's seed is any 64-bit integer; tern's is unsigned: the same bits.
    if (v.is_number_unsigned()) {
      s.set_seed(v.get<uint64_t>());
    } else {
      ASSIGN_OR_RETURN(int64_t seed, Integer(p, v, std::numeric_limits<int64_t>::min(),
                                             std::numeric_limits<int64_t>::max()));
      s.set_seed(static_cast<uint64_t>(seed));
    }
    return absl::OkStatus();
  });
  reader.On("stop", [&](const std::string& p, const json& v) { return ReadStop(p, v, &s); });
  reader.On("stop_token_ids", [&](const std::string& p, const json& v) -> absl::Status {
    if (!v.is_array()) return WrongType(p, "an array of integers", v);
    for (size_t i = 0; i < v.size(); ++i) {
      ASSIGN_OR_RETURN(int32_t id, Int32(Indexed(p, i), v[i]));
      s.add_stop_token_ids(id);
    }
    return absl::OkStatus();
  });
  reader.On("max_tokens", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(c.max_tokens, Int32(p, v));
    return absl::OkStatus();
  });
  reader.On("ignore_eos", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(bool ignore, Bool(p, v));
    s.set_ignore_eos(ignore);
    return absl::OkStatus();
  });
  reader.On("skip_special_tokens", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(bool skip, Bool(p, v));
    s.set_include_special_tokens(!skip);
    return absl::OkStatus();
  });
  reader.On("stream", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(c.options.stream, Bool(p, v));
    return absl::OkStatus();
  });
  reader.On("stream_options", [&](const std::string& p, const json& v) -> absl::Status {
    if (!v.is_object()) return WrongType(p, "an object", v);
    c.stream_options_given = true;
    ObjectReader options(p + ".");
    options.On("include_usage", [&](const std::string& q, const json& w) -> absl::Status {
      ASSIGN_OR_RETURN(c.options.include_usage, Bool(q, w));
      return absl::OkStatus();
    });
    return options.Read(v);
  });
  reader.On("logit_bias", [&](const std::string& p, const json& v) -> absl::Status {
    if (!v.is_object()) return WrongType(p, "an object", v);
    if (!v.empty()) return Invalid(p, "is not supported (tern does not bias logits)");
    return absl::OkStatus();
  });
  reader.On("user", [&](const std::string& p, const json& v) -> absl::Status {
    return String(p, v).status();  // an end-user id: no effect on the output
  });
  reader.On("priority", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(c.priority, Int32(p, v));
    return absl::OkStatus();
  });
  reader.On("decoding_mode", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(std::string mode, String(p, v));
    if (mode == "normal") {
      c.decoding_mode = tern::v1::DECODING_MODE_NORMAL;
    } else if (mode == "auto") {
      c.decoding_mode = tern::v1::DECODING_MODE_AUTO;
    } else if (mode == "skeleton_of_thought") {
      c.decoding_mode = tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT;
    } else {
      return Invalid(p, absl::StrCat("\"", mode, "\" is not one of: normal, auto, skeleton_of_thought"));
    }
    return absl::OkStatus();
  });
  reader.On("sot", [&](const std::string& p, const json& v) { return ReadSot(p, v, &c.sot); });
}

// The checks that need every field.
absl::Status Finish(const ObjectReader& reader, Common& c) {
  if (!reader.Seen("model")) return Invalid("model", "is required (GET /v1/models lists the served models)");
  if (c.max_tokens.has_value() && c.max_completion_tokens.has_value() &&
      *c.max_tokens != *c.max_completion_tokens) {
    return Invalid("max_completion_tokens",
                   absl::StrCat(*c.max_completion_tokens, " differs from max_tokens ", *c.max_tokens,
                                "; give one of them"));
  }
  if (c.max_completion_tokens.has_value()) c.sampling.set_max_tokens(*c.max_completion_tokens);
  if (c.max_tokens.has_value()) c.sampling.set_max_tokens(*c.max_tokens);
  if (c.best_of.has_value() && *c.best_of != (c.sampling.has_n() ? c.sampling.n() : 1)) {
    return Invalid("best_of", absl::StrCat(*c.best_of, " is not supported: tern returns every choice it "
                                                       "samples (best_of must equal n)"));
  }
  if (c.stream_options_given && !c.options.stream) {
    return Invalid("stream_options", "is only allowed with stream: true");
  }
  // Streamed Skeleton-of-Thought points come in outline order, so that the
  // streamed content adds up to the answer.
  if (c.options.stream && c.decoding_mode != tern::v1::DECODING_MODE_NORMAL) c.sot.set_ordered(true);
  return absl::OkStatus();
}

absl::StatusOr<std::string> MessageContent(const std::string& param, const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (!value.is_array()) return WrongType(param, "a string or an array of content parts", value);
  std::vector<std::string> texts;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string part_param = Indexed(param, i);
    const json& part = value[i];
    if (!part.is_object()) return WrongType(part_param, "an object", part);
    const auto type = part.find("type");
    if (type == part.end() || !type->is_string()) return Invalid(part_param + ".type", "is required");
    if (*type != "text") {
      return Invalid(part_param + ".type",
                     absl::StrCat("\"", type->get<std::string>(), "\" is not supported; tern serves text only"));
    }
    std::string text;
    ObjectReader reader(part_param + ".");
    reader.On("type", [](const std::string&, const json&) { return absl::OkStatus(); });
    reader.On("text", [&](const std::string& p, const json& v) -> absl::Status {
      ASSIGN_OR_RETURN(text, String(p, v));
      return absl::OkStatus();
    });
    RETURN_IF_ERROR(reader.Read(part));
    if (!reader.Seen("text")) return Invalid(part_param + ".text", "is required");
    texts.push_back(std::move(text));
  }
  return absl::StrJoin(texts, "\n");
}

absl::Status ReadMessages(const std::string& param, const json& value, tern::v1::ChatRequest* request) {
  if (!value.is_array()) return WrongType(param, "an array of messages", value);
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string message_param = Indexed(param, i);
    const json& message = value[i];
    if (!message.is_object()) return WrongType(message_param, "an object", message);
    tern::v1::ChatMessage* out = request->add_messages();
    bool content_given = false;
    ObjectReader reader(message_param + ".");
    reader.On("role", [&](const std::string& p, const json& v) -> absl::Status {
      ASSIGN_OR_RETURN(*out->mutable_role(), String(p, v));
      return absl::OkStatus();
    });
    reader.On("content", [&](const std::string& p, const json& v) -> absl::Status {
      ASSIGN_OR_RETURN(*out->mutable_content(), MessageContent(p, v));
      content_given = true;
      return absl::OkStatus();
    });
    RETURN_IF_ERROR(reader.Read(message));
    if (!reader.Seen("role")) return Invalid(message_param + ".role", "is required");
    // OpenAI lets an assistant message have no content (it called tools).
    if (!content_given && out->role() != "assistant") return Invalid(message_param + ".content", "is required");
  }
  return absl::OkStatus();
}

// `prompt`: a string, or token ids; a list of one of either.
absl::Status ReadPrompt(const std::string& param, const json& value, tern::v1::GenerateRequest* request) {
  if (value.is_string()) {
    request->set_text(value.get<std::string>());
    return absl::OkStatus();
  }
  if (!value.is_array()) return WrongType(param, "a string, an array of token ids, or an array of one of either", value);
  if (value.empty()) return Invalid(param, "is empty");
  const auto token_ids = [&](const std::string& p, const json& ids) -> absl::Status {
    request->mutable_token_ids();  // an empty list still sets the oneof (validation: "is empty")
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSIGN_OR_RETURN(int32_t id, Int32(Indexed(p, i), ids[i]));
      request->mutable_token_ids()->add_ids(id);
    }
    return absl::OkStatus();
  };
  if (value[0].is_number()) return token_ids(param, value);
  if (value.size() > 1) {
    return Invalid(param, absl::StrCat("holds ", value.size(),
                                       " prompts; tern takes one prompt per request (send one request each)"));
  }
  const json& only = value[0];
  if (only.is_string()) {
    request->set_text(only.get<std::string>());
    return absl::OkStatus();
  }
  if (only.is_array()) return token_ids(Indexed(param, 0), only);
  return WrongType(Indexed(param, 0), "a string or an array of token ids", only);
}

void Apply(const Common& c, tern::v1::SamplingParams* sampling, tern::v1::SkeletonOfThought* sot) {
  *sampling = c.sampling;
  *sot = c.sot;
}

}  // namespace

absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return absl::InvalidArgumentError("the request body is empty; send a JSON object");
  }
  json parsed;
  try {
    parsed = json::parse(body.begin(), body.end(), [](int depth, json::parse_event_t event, json&) {
      if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
          depth >= kMaxJsonDepth) {
        throw TooDeep{};
      }
      return true;
    });
  } catch (const json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 9: ..."
    std::string what = e.what();
    if (const size_t bracket = what.find("] "); what.rfind("[json.exception", 0) == 0 && bracket != std::string::npos) {
      what = what.substr(bracket + 2);
    }
    return absl::InvalidArgumentError(absl::StrCat("the request body is not valid JSON: ", what));
  } catch (const TooDeep&) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body nests arrays and objects deeper than ", kMaxJsonDepth, " levels"));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the request body is not valid JSON: ", e.what()));
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body must be a JSON object, not ", TypeName(parsed)));
  }
  return parsed;
}

absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body) {
  ASSIGN_OR_RETURN(json object, ParseJsonObject(body));
  ChatCompletionRequest out;
  Common c;
  ObjectReader reader("");
  OnCommon(reader, c);
  reader.On("messages", [&](const std::string& p, const json& v) { return ReadMessages(p, v, &out.request); });
  reader.On("max_completion_tokens", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(c.max_completion_tokens, Int32(p, v));
    return absl::OkStatus();
  });
  std::optional<bool> logprobs;
  std::optional<int32_t> top_logprobs;
  reader.On("logprobs", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(logprobs, Bool(p, v));
    return absl::OkStatus();
  });
  reader.On("top_logprobs", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(top_logprobs, Int32(p, v));
    return absl::OkStatus();
  });
  reader.On("response_format", [&](const std::string& p, const json& v) -> absl::Status {
    if (!v.is_object()) return WrongType(p, "an object", v);
    const auto type = v.find("type");
    if (type == v.end() || !type->is_string()) return Invalid(p + ".type", "is required");
    if (*type != "text" || v.size() != 1) {
      return Invalid(p, absl::StrCat("{\"type\": \"", type->get<std::string>(),
                                     "\"} is not supported; tern generates free text only (type \"text\")"));
    }
    return absl::OkStatus();
  });
  reader.On("add_generation_prompt", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(bool add, Bool(p, v));
    out.request.set_add_generation_prompt(add);
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(reader.Read(object));
  if (!reader.Seen("messages")) return Invalid("messages", "is required");
  RETURN_IF_ERROR(Finish(reader, c));
  if (top_logprobs.has_value() && !logprobs.value_or(false)) {
    return Invalid("top_logprobs", "needs logprobs: true");
  }
  if (logprobs.value_or(false)) {
    c.options.logprobs = true;
    c.options.top_logprobs = top_logprobs.value_or(0);
    c.sampling.set_logprobs(c.options.top_logprobs);
  }
  out.request.set_model(c.model);
  out.request.set_priority(c.priority);
  out.request.set_decoding_mode(c.decoding_mode);
  Apply(c, out.request.mutable_sampling(), out.request.mutable_sot());
  out.options = c.options;
  return out;
}

absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body) {
  ASSIGN_OR_RETURN(json object, ParseJsonObject(body));
  CompletionRequest out;
  Common c;
  ObjectReader reader("");
  OnCommon(reader, c);
  reader.On("prompt", [&](const std::string& p, const json& v) { return ReadPrompt(p, v, &out.request); });
  reader.On("logprobs", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t k, Int32(p, v));
    c.options.logprobs = true;
    c.options.top_logprobs = k;
    c.sampling.set_logprobs(k);
    return absl::OkStatus();
  });
  reader.On("echo", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(bool echo, Bool(p, v));
    if (echo) return Invalid(p, "is not supported (tern returns the completion only)");
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(reader.Read(object));
  if (!reader.Seen("prompt")) return Invalid("prompt", "is required");
  RETURN_IF_ERROR(Finish(reader, c));
  // OpenAI's default for completions; chat's is the rest of the context.
  if (!c.sampling.has_max_tokens()) c.sampling.set_max_tokens(16);
  out.request.set_model(c.model);
  out.request.set_priority(c.priority);
  out.request.set_decoding_mode(c.decoding_mode);
  Apply(c, out.request.mutable_sampling(), out.request.mutable_sot());
  out.options = c.options;
  return out;
}

namespace {

// "auto" -> 0x0 (the model's own size); "WIDTHxHEIGHT" -> both.
absl::Status ReadImageSize(const std::string& param, const json& value, tern::v1::GenerateImageRequest* request) {
  ASSIGN_OR_RETURN(std::string size, String(param, value));
  if (size == "auto") return absl::OkStatus();
  const absl::Status bad = Invalid(param, absl::StrCat("must be \"auto\" or WIDTHxHEIGHT such as \"256x256\", not \"",
                                                       size.substr(0, 32), "\""));
  const size_t x = size.find('x');
  if (x == std::string::npos || x == 0 || x + 1 == size.size() || size.size() > 11) return bad;
  int32_t sides[2] = {0, 0};
  const std::string parts[2] = {size.substr(0, x), size.substr(x + 1)};
  for (int i = 0; i < 2; ++i) {
    for (char ch : parts[i]) {
      if (ch < '0' || ch > '9') return bad;
    }
    sides[i] = std::stoi(parts[i]);
    if (sides[i] <= 0) return bad;
  }
  request->set_width(sides[0]);
  request->set_height(sides[1]);
  return absl::OkStatus();
}

// A field OpenAI's images API has that tern takes only at the value that
// changes nothing.
ObjectReader::Handler OnlyValue(std::string allowed, std::string why) {
  return [allowed = std::move(allowed), why = std::move(why)](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(std::string value, String(p, v));
    if (value == allowed) return absl::OkStatus();
    return Invalid(p, absl::StrCat("\"", value.substr(0, 32), "\" is not supported (", why, "); use \"", allowed, "\""));
  };
}

}  // namespace

absl::StatusOr<tern::v1::GenerateImageRequest> ParseImageGenerationRequest(std::string_view body) {
  ASSIGN_OR_RETURN(json object, ParseJsonObject(body));
  tern::v1::GenerateImageRequest out;
  ObjectReader reader("");
  reader.On("model", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(*out.mutable_model(), String(p, v));
    return absl::OkStatus();
  });
  reader.On("prompt", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(*out.mutable_prompt(), String(p, v));
    return absl::OkStatus();
  });
  reader.On("class_name", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(*out.mutable_class_name(), String(p, v));
    return absl::OkStatus();
  });
  reader.On("class_label", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t label, Int32(p, v));
    out.set_class_label(label);
    return absl::OkStatus();
  });
  reader.On("n", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t n, Int32(p, v));
    if (n < 1) return Invalid(p, absl::StrCat(n, " is not a number of images (1 or more)"));
    out.set_batch(n);
    return absl::OkStatus();
  });
  reader.On("size", [&](const std::string& p, const json& v) { return ReadImageSize(p, v, &out); });
  reader.On("response_format",
            OnlyValue("b64_json", "tern returns the images in the response and keeps none to serve by URL"));
  reader.On("output_format", OnlyValue("png", "tern encodes images as PNG"));
  reader.On("quality", OnlyValue("auto", "tern's models have one quality; num_inference_steps trades time for it"));
  reader.On("stream", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(bool stream, Bool(p, v));
    if (stream) return Invalid(p, "true is not supported (tern returns the finished images; gRPC GenerateImage streams progress)");
    return absl::OkStatus();
  });
  for (const char* field : {"style", "background", "moderation", "output_compression", "partial_images"}) {
    reader.On(field, [](const std::string& p, const json&) {
      return Invalid(p, "is not supported (tern's diffusion models take none)");
    });
  }
  reader.On("user", [](const std::string& p, const json& v) { return String(p, v).status(); });
  // tern's extras, as tern.v1.GenerateImageRequest has them.
  reader.On("seed", [&](const std::string& p, const json& v) -> absl::Status {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
      return Invalid(p, "must be an integer in [0, 2^64)");
    }
    out.set_seed(v.get<uint64_t>());
    return absl::OkStatus();
  });
  reader.On("guidance_scale", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(float scale, Float(p, v));
    out.set_guidance_scale(scale);
    return absl::OkStatus();
  });
  reader.On("num_inference_steps", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t steps, Int32(p, v));
    if (steps < 1) return Invalid(p, absl::StrCat(steps, " is not a number of steps (1 or more)"));
    out.set_steps(steps);
    return absl::OkStatus();
  });
  reader.On("sampler", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(std::string name, String(p, v));
    static const auto* samplers = new std::map<std::string, tern::v1::Sampler>{
        {"ddim", tern::v1::SAMPLER_DDIM}, {"dpm++2m", tern::v1::SAMPLER_DPM_SOLVER_PP_2M},
        {"euler", tern::v1::SAMPLER_EULER}, {"schedule", tern::v1::SAMPLER_SCHEDULE}};
    const auto it = samplers->find(name);
    if (it == samplers->end()) {
      return Invalid(p, absl::StrCat("\"", name.substr(0, 32), "\" is not a sampler: ddim, dpm++2m, euler or schedule"));
    }
    out.set_sampler(it->second);
    return absl::OkStatus();
  });
  reader.On("priority", [&](const std::string& p, const json& v) -> absl::Status {
    ASSIGN_OR_RETURN(int32_t priority, Int32(p, v));
    out.set_priority(priority);
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(reader.Read(object));
  const int conditions = reader.Seen("prompt") + reader.Seen("class_name") + reader.Seen("class_label");
  if (conditions == 0) {
    return Invalid("prompt", "is required (a class-conditional model takes tern's class_name or class_label instead)");
  }
  if (conditions > 1) {
    return Invalid(reader.Seen("prompt") ? "prompt" : "class_name",
                   "give one of prompt, class_name or class_label, not several");
  }
  return out;
}

absl::Status InOpenAiTerms(const absl::Status& status, Endpoint endpoint) {
  const std::string message(status.message());
  struct Rename {
    const char* tern;
    const char* openai;
  };
  const char* logprobs = endpoint == Endpoint::kChatCompletions ? "top_logprobs" : "logprobs";
  const Rename text_renames[] = {
      {"sampling.logprobs", logprobs}, {"sampling.", ""}, {"token_ids", "prompt"}, {"text", "prompt"}};
  const Rename image_renames[] = {{"batch", "n"},     {"steps", "num_inference_steps"}, {"width", "size"},
                                  {"height", "size"}, {"condition", "prompt"}};
  const absl::Span<const Rename> renames =
      endpoint == Endpoint::kImageGenerations ? absl::Span<const Rename>(image_renames) : text_renames;
  for (const Rename& r : renames) {
    if (!absl::StartsWith(message, r.tern)) continue;
    const std::string rest = message.substr(std::string_view(r.tern).size());
    // Whole field names only: "text: ..." but not "textual ...".
    if (std::string_view(r.tern).back() != '.' && !rest.empty() && rest[0] != ':' && rest[0] != '[') continue;
    std::string renamed = absl::StrCat(r.openai, rest);
    // The gRPC field takes 0 for the model's size; OpenAI's takes "auto".
    if (std::string_view(r.openai) == "size") absl::StrReplaceAll({{"(0 takes that)", "(\"auto\" takes that)"}}, &renamed);
    return absl::Status(status.code(), renamed);
  }
  return status;
}

std::string ParamOf(const absl::Status& status) {
  const std::string message(status.message());
  const size_t colon = message.find(": ");
  if (colon == std::string::npos || colon == 0) return {};
  const std::string field = message.substr(0, colon);
  for (char ch : field) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                    ch == '.' || ch == '[' || ch == ']';
    if (!ok) return {};
  }
  return field;
}

}  // namespace tern::server::openai
