// tern.v1 stream messages -> OpenAI-compatible responses: chat.completion
// and text_completion objects, their streamed chunks as server-sent events,
// and OpenAI's error object. Pure formatting: no I/O, no locks; one
// ResponseAssembler per request, used from one thread at a time.
//
// Mapping:
// - A message's choices become chunks, one per choice (`index` = choice).
//   A chat choice's first chunk carries `"role": "assistant"`.
// - finish_reason: "stop" or "length" (tern's ABORT, a request cancelled
//   because its client went away, is "abort", as in vLLM).
// - logprobs: chat `{"content": [{token, logprob, bytes, top_logprobs}]}`,
//   completions `{tokens, token_logprobs, top_logprobs, text_offset}`; a
//   token is the text its bytes decode to (bytes are exact).
// - usage from the last message: prompt_tokens, completion_tokens,
//   total_tokens, prompt_tokens_details.cached_tokens. Streamed only with
//   stream_options.include_usage, as a last chunk with no choices (every
//   chunk then has "usage": null).
// - Skeleton-of-Thought: the skeleton is chat's `reasoning_content` (the
//   field vLLM and DeepSeek use for text that precedes the answer); the
//   points are the content of choice 0, streamed in outline order, joined
//   with "\n"; the finish_reason comes once, at the end ("length" when any
//   point ran out of tokens). A non-streamed answer is the SotReport's
//   joined answer, and the response carries `"tern": {"decoding_mode",
//   "sot": {...}}`.
// - Objects keep OpenAI's field order (id, object, created, model, choices,
//   usage).
// - The stream ends with `data: [DONE]`; an error after the first chunk is
//   an event `data: {"error": {...}}` followed by `data: [DONE]`.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "runtime/tokenizer/tokenizer.h"
#include "server/http/http_server.h"
#include "server/openai/openai_request.h"
#include "tern/v1/diffusion.pb.h"
#include "tern/v1/llm.pb.h"

namespace tern::server::openai {

// {"error": {"message", "type", "param", "code"}}: `type` from the HTTP
// status (server/front/status_mapping.h), `param` null when empty.
nlohmann::ordered_json ErrorObject(int http_status, const std::string& message, const std::string& param,
                           const std::string& code);
// The HTTP response of a tern status: its HTTP status and OpenAI error
// object; param from the message (ParamOf), or "model" for NOT_FOUND;
// code "model_not_found", "invalid_api_key", or the status code's name.
HttpResponse ErrorResponse(const absl::Status& status);
// The HTTP response of an error the transport found (413, 431, 404, 405, ...).
HttpResponse TransportErrorResponse(int http_status, const std::string& message);

// The body of POST /v1/images/generations: {"created", "data": [{"b64_json":
// PNG as base64}, ...], "output_format": "png", "size": "WxH", "tern":
// {"seeds": [...]}} (each image's seed, to ask for it again), images in
// index order.
nlohmann::ordered_json ImagesBody(int64_t created, const std::vector<tern::v1::GeneratedImage>& images);

// JSON text as the API writes it: compact, invalid UTF-8 replaced (never
// throws).
std::string Dump(const nlohmann::ordered_json& value);

class ResponseAssembler {
 public:
  // `id`: "chatcmpl-..." or "cmpl-..."; `created`: Unix seconds;
  // `tokenizer` (may be null) spells logprob tokens.
  ResponseAssembler(Endpoint endpoint, std::string id, std::string model, int64_t created, ResponseOptions options,
                    const runtime::Tokenizer* tokenizer);

  // Streaming: the events ("data: {...}\n\n"...) of one stream message;
  // empty when it shows nothing.
  std::string Events(const tern::v1::GenerateResponse& message);
  // Streaming, after the stream ended OK: the usage chunk when asked for,
  // then "data: [DONE]\n\n".
  std::string EndEvents();
  // Streaming, after an error: the error event, then "data: [DONE]\n\n".
  std::string ErrorEvents(const absl::Status& status);

  // Not streaming: takes in one stream message.
  void Add(const tern::v1::GenerateResponse& message);
  // Not streaming: the whole response object.
  nlohmann::ordered_json Body() const;

 private:
  struct Choice {
    std::string text;
    std::string reasoning;
    std::optional<std::string> finish;
    bool started = false;  // a chunk went out (chat: with the role)
    nlohmann::ordered_json logprobs;  // chat: content array; completions: the four arrays
    int64_t text_offset = 0;
  };
  // What one message adds to `choice`: text, reasoning and logprobs deltas.
  struct Delta {
    std::string text;
    std::string reasoning;
    nlohmann::ordered_json logprobs;  // null: none
    std::optional<std::string> finish;
  };

  // Folds one message's choices into per-choice deltas (SoT parts merged
  // into choice 0).
  std::map<int, Delta> Deltas(const tern::v1::GenerateResponse& message);
  nlohmann::ordered_json LogprobsDelta(const tern::v1::Choice& choice, Choice& state) const;
  std::string TokenText(const tern::v1::TokenLogprob& token) const;
  nlohmann::ordered_json ChunkHeader() const;
  std::string Event(const nlohmann::ordered_json& chunk) const;
  nlohmann::ordered_json UsageJson() const;
  void TakeLast(const tern::v1::GenerateResponse& message);

  const Endpoint endpoint_;
  const std::string id_;
  const std::string model_;
  const int64_t created_;
  const ResponseOptions options_;
  const runtime::Tokenizer* tokenizer_;
  std::map<int, Choice> choices_;
  // Skeleton-of-Thought.
  bool sot_parts_ = false;   // a skeleton or point chunk was seen
  int last_point_ = -1;      // the point streamed last
  bool sot_length_ = false;  // a point (or the skeleton) ran out of tokens
  std::optional<tern::v1::Usage> usage_;
  std::optional<tern::v1::GenerateResponse> last_;  // the message with usage (and the SotReport)
};

}  // namespace tern::server::openai
