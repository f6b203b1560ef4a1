// The HTTP/1.1 server (Boost.Beast on Boost.Asio): /metrics, /healthz,
// /readyz now, the OpenAI-compatible API later. Routes are exact paths.
//
// Threads: the server runs its own io_context on `num_threads` threads;
// handlers run on them and must not block for long. Start and Stop are
// called from one controlling thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::string query;   // after '?', may be empty
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpRouter {
 public:
  // Registers `handler` for `method` on the exact `path`.
  void Handle(const std::string& method, const std::string& path, HttpHandler handler);
  // 404 for an unknown path, 405 for a known path with another method.
  HttpResponse Dispatch(const HttpRequest& request) const;
  // True when `path` has a handler for some method.
  bool Knows(const std::string& path) const;

 private:
  std::map<std::string, std::map<std::string, HttpHandler>> routes_;  // path -> method -> handler
};

class HttpServer {
 public:
  struct Options {
    std::string host = "0.0.0.0";
    int port = 8000;  // 0 picks a free port
    int num_threads = 2;
    // Requests larger than this get 413.
    size_t max_body_bytes = 8 << 20;
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
  // Stops accepting, closes connections, and joins the threads. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::server
