// The OpenAI-compatible HTTP API on ternd's HTTP server:
//
//   POST /v1/chat/completions   chat (streamed as server-sent events with stream: true)
//   POST /v1/completions        text completion (likewise)
//   GET  /v1/models             the models this caller may use
//   GET  /v1/models/{id}        one of them
//   POST /v1/images/generations images from a diffusion model, as base64 PNGs
//
// A thin transport over the front (server/front/generation.h): each request
// gets a CallScope (bearer key -> tenant, request id from x-request-id, one
// log line, tern_http_requests_total{route,code}), its body becomes a tern.v1
// request (openai_request.h), PrepareChat/PrepareGenerate admit, validate and
// convert it, and StartGeneration submits it; the engine's GenerationStream
// feeds an OpenAiCall, which formats messages (openai_response.h) on the
// connection's strand, never on the engine thread, and writes them as one
// JSON response or as SSE chunks. A client that closes its connection
// cancels its request in the engine. An image request goes the same way
// through the front's PrepareImage (server/front/image_generation.h) into the
// model's diffusion engine; its ImageStream (services/image_stream.h) feeds
// an OpenAiImageCall, which answers with all the images at once. Errors are
// OpenAI's error object with
// the HTTP status of server/front/status_mapping.h.
#pragma once

#include <cstdint>

#include "server/front/service_context.h"
#include "server/http/http_server.h"

namespace tern::server::openai {

class OpenAiApi {
 public:
  // `services` is borrowed and outlives the HTTP server.
  explicit OpenAiApi(const ServiceContext& services);

  // Adds the routes above to `router`, and makes its errors (unknown route,
  // wrong method, body or headers too large, malformed HTTP) OpenAI error
  // objects, counted in tern_http_requests_total{route="other"}.
  void Register(HttpRouter& router) const;

 private:
  void Completions(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange, bool chat) const;
  void ListModels(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const;
  void RetrieveModel(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const;
  void ImageGenerations(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const;

  const ServiceContext& services_;
  const int64_t created_;  // "created" of every model: when ternd started
};

}  // namespace tern::server::openai
