// OpenAI-compatible request bodies -> tern.v1 requests.
//
// POST /v1/chat/completions becomes a tern.v1.ChatRequest, POST
// /v1/completions a tern.v1.GenerateRequest; everything the front
// (server/front/generation.h) checks is checked there, once, for gRPC and
// HTTP alike. This file checks only what is OpenAI's own: that the body is a
// JSON object (malformed JSON is an error naming its line and column;
// nesting deeper than kMaxJsonDepth is refused before it is built), the type
// of every field, the shapes OpenAI allows (stop as a string or a list,
// content as a string or text parts, prompt as text or token ids), and that
// every field is one tern implements. A field tern does not implement
// (response_format other than text, tools, logit_bias, ...) or does not
// know is INVALID_ARGUMENT naming it: nothing is silently ignored, except
// `user` (an end-user id with no effect on the output). A field set to null
// is absent, as in OpenAI's API.
//
// tern's extra fields, as vLLM takes its extra parameters: decoding_mode
// ("normal", "auto", "skeleton_of_thought"; default "normal"), sot
// ({"outline": [...], "ordered", "max_point_tokens"}), priority, top_k (-1
// or 0: no limit), min_p, repetition_penalty, ignore_eos, stop_token_ids,
// skip_special_tokens, and for chat add_generation_prompt.
//
// POST /v1/images/generations becomes a tern.v1.GenerateImageRequest:
// `prompt` (the text condition; a class-conditional model such as the demo
// DiT takes tern's `class_name` or `class_label` instead: exactly one of the
// three), `n` (images, 1 or more), `size` ("auto", or "WIDTHxHEIGHT", which
// the front checks against the model's resolution), `response_format` only
// "b64_json" (tern keeps no images to serve by URL), `output_format` only
// "png", `quality` only "auto", `stream` only false, `user` (no effect); tern's
// extras as the gRPC request has them: `seed` (0 to 2^64 - 1; image i gets
// seed + i), `guidance_scale`, `num_inference_steps`, `sampler` ("ddim",
// "dpm++2m", "euler", "schedule"), `priority`. `style`, `background`, `moderation`,
// `output_compression`, `partial_images` and unknown fields are errors.
//
// Errors are INVALID_ARGUMENT with a message "<param>: <why>", param being
// the OpenAI name of the field (InOpenAiTerms rewrites the front's messages,
// which name tern.v1 fields, the same way).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tern/v1/diffusion.pb.h"
#include "tern/v1/llm.pb.h"

namespace tern::server::openai {

// Arrays and objects nested deeper than this are refused.
inline constexpr int kMaxJsonDepth = 32;

enum class Endpoint { kChatCompletions, kCompletions, kImageGenerations };

// What the response should look like, beyond the tern.v1 request.
struct ResponseOptions {
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // chat: logprobs: true; completions: logprobs: k
  int top_logprobs = 0;        // alternatives per token
};

struct ChatCompletionRequest {
  tern::v1::ChatRequest request;
  ResponseOptions options;
};

struct CompletionRequest {
  tern::v1::GenerateRequest request;
  ResponseOptions options;
};

// The body as a JSON object. INVALID_ARGUMENT for malformed JSON (naming the
// position), nesting deeper than kMaxJsonDepth, or a value that is not an
// object. Never throws.
absl::StatusOr<nlohmann::json> ParseJsonObject(std::string_view body);

absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view body);
absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body);
absl::StatusOr<tern::v1::GenerateImageRequest> ParseImageGenerationRequest(std::string_view body);

// The front's error in OpenAI's words: a message that names a tern.v1 field
// ("sampling.temperature: ...", "text: ...") names the OpenAI parameter
// instead ("temperature: ...", "prompt: ..."; for images "n: ...",
// "size: ...", "num_inference_steps: ..."). Other statuses pass unchanged.
absl::Status InOpenAiTerms(const absl::Status& status, Endpoint endpoint);

// The parameter an INVALID_ARGUMENT (or other) message names: its text
// before ": " when that looks like a field path ("messages[0].role"), else
// empty.
std::string ParamOf(const absl::Status& status);

}  // namespace tern::server::openai
