// The HTTP/1.1 server (Boost.Beast on Boost.Asio): /metrics, /healthz,
// /readyz and the OpenAI-compatible API (server/openai/).
//
// Routes are exact paths, or prefixes ("/v1/models/" + id). A handler gets
// the request and an HttpExchange, through which it answers whenever it is
// ready and from any thread: a whole response (Respond), or a stream
// (StartStream, Write..., EndStream: chunked transfer encoding, the framing
// of server-sent events). Writes go out one at a time in order; each reports
// when it is on the wire, so the producer (an engine's stream) never waits on
// the client and never floods memory. While a response is in progress the
// server watches the connection: when the client closes it, OnClientGone's
// callback runs (the OpenAI API cancels the request in the engine).
//
// Limits: request headers over Options::max_header_bytes get 431, bodies
// over Options::max_body_bytes 413 (checked against Content-Length before
// the body is read), a request that is not HTTP/1.x 400; these and unknown
// routes (404) or methods (405) are answered by the router's error
// responder, which the daemon sets to OpenAI's error JSON. "Expect:
// 100-continue" is honoured.
//
// Threads: the server runs its own io_context on `num_threads` threads;
// each connection is a strand, and handlers run on it. Handlers must not
// block for long. Start and Stop are called from one controlling thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/config/tls_files.h"

namespace tern::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::string query;   // after '?', may be empty
  std::string body;
  // Header fields in arrival order, names as sent.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string peer;    // "ipv4:127.0.0.1:40112"

  // The first header named `name` (case-insensitive), empty when absent.
  std::string Header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Further header fields.
  std::vector<std::pair<std::string, std::string>> headers;
};

// The server's side of one request in progress. Thread-safe: every method
// may be called from any thread (each hops onto the connection's strand).
// Answer with exactly one of Respond or StartStream (+ Write* + EndStream);
// an exchange dropped without an answer answers 500.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  // The whole response.
  virtual void Respond(HttpResponse response) = 0;
  // The head of a streamed response (`head.body` is ignored): status and
  // headers now, the body in chunks.
  virtual void StartStream(HttpResponse head) = 0;
  // Queues `data` for the stream. `done` runs once on the connection's
  // strand: true when the data is on the wire, false when it never will be
  // (the client is gone, the server stopping). Empty data completes at once.
  virtual void Write(std::string data, std::function<void(bool ok)> done) = 0;
  // The end of the stream (the last chunk); the connection then serves the
  // client's next request, or closes.
  virtual void EndStream() = 0;
  // `on_gone` runs once, on the connection's strand, if the client closes
  // the connection before the response is complete (at once if it already
  // has). Only the last callback set is kept.
  virtual void OnClientGone(std::function<void()> on_gone) = 0;
  // Runs `task` on the connection's strand, after what is already queued.
  virtual void Post(std::function<void()> task) = 0;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;
using HttpAsyncHandler = std::function<void(const HttpRequest&, std::shared_ptr<HttpExchange>)>;
// The response to an error found outside any handler, e.g. (413, "request
// body is larger than 8388608 bytes").
using HttpErrorResponder = std::function<HttpResponse(int status, const std::string& message)>;

class HttpRouter {
 public:
  // Registers `handler` for `method` on the exact `path` (synchronous: it
  // returns the response).
  void Handle(const std::string& method, const std::string& path, HttpHandler handler);
  // Registers an asynchronous handler for the exact `path`.
  void HandleAsync(const std::string& method, const std::string& path, HttpAsyncHandler handler);
  // Registers an asynchronous handler for every path that begins with
  // `prefix` and has no exact route; the longest prefix wins.
  void HandlePrefix(const std::string& method, const std::string& prefix, HttpAsyncHandler handler);
  // Sets how errors outside handlers are answered (default: plain text).
  void SetErrorResponder(HttpErrorResponder responder);

  // Runs the handler of `request`; 404 for an unknown path, 405 for a known
  // path with another method (HEAD runs GET's handler).
  void Dispatch(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const;
  // The error responder's answer.
  HttpResponse Error(int status, const std::string& message) const;
  // True when `path` has a handler for some method.
  bool Knows(const std::string& path) const;

 private:
  struct Route {
    HttpHandler sync;
    HttpAsyncHandler async;
  };
  const std::map<std::string, Route>* Find(const std::string& path) const;

  std::map<std::string, std::map<std::string, Route>> routes_;    // path -> method -> handler
  std::map<std::string, std::map<std::string, Route>> prefixes_;  // prefix -> method -> handler
  HttpErrorResponder error_;
};

class HttpServer {
 public:
  struct Options {
    std::string host = "0.0.0.0";
    int port = 8000;  // 0 picks a free port
    int num_threads = 2;
    // Requests with a larger body get 413.
    size_t max_body_bytes = 8 << 20;
    // Requests whose request line and headers are larger get 431.
    size_t max_header_bytes = 16 << 10;
    // A connection with no request in progress is closed after this long,
    // and so is one whose client does not take a streamed chunk for this long.
    absl::Duration idle_timeout = absl::Seconds(60);
    // Set: HTTPS only (TLS 1.2+), and with a client CA mutual TLS: a
    // connection without a client certificate that chains to it fails the
    // handshake. A failed handshake (plaintext HTTP too) closes the
    // connection without an answer.
    std::optional<TlsFiles> tls;
  };

  // Binds, listens and starts serving. FAILED_PRECONDITION when the address
  // cannot be bound (in use, not local, no permission), naming it.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const Options& options,
                                                           HttpRouter router);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the chosen one when Options::port was 0).
  int port() const;
  // Responses in progress (handlers not yet answered or streams not ended).
  int active_responses() const;
  // Stops accepting, waits up to `grace` for responses in progress to end,
  // then closes every connection and joins the threads. Idempotent.
  void Stop(absl::Duration grace = absl::ZeroDuration());

  struct Impl;  // the io_context, acceptor and threads (http_server.cc)

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::server
