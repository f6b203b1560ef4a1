#include "server/http/http_server.h"

#include <atomic>
#include <optional>

#include "absl/strings/str_cat.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "spdlog/spdlog.h"

namespace tern::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr auto kIdleTimeout = std::chrono::seconds(60);

// One connection: read a request, answer it, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpRouter* router, size_t max_body_bytes)
      : stream_(std::move(socket)), router_(router), max_body_bytes_(max_body_bytes) {}

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(max_body_bytes_);
    stream_.expires_after(kIdleTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      return Close();
    }
    if (ec == http::error::body_limit) return Reply(Error(413, "request body too large"), false);
    if (ec) return Close();
    const auto& msg = parser_->get();
    HttpRequest request;
    request.method = std::string(msg.method_string());
    const std::string target(msg.target());
    const auto question = target.find('?');
    request.path = target.substr(0, question);
    if (question != std::string::npos) request.query = target.substr(question + 1);
    request.body = msg.body();
    HttpResponse response;
    try {
      response = router_->Dispatch(request);
    } catch (const std::exception& e) {
      // Handlers report errors as responses; an exception is a bug, but one
      // request must not take the server down.
      spdlog::error("http {} {}: handler threw: {}", request.method, request.path, e.what());
      response = Error(500, "internal error");
    }
    Reply(std::move(response), msg.keep_alive());
  }

  static HttpResponse Error(int status, const std::string& text) {
    HttpResponse response;
    response.status = status;
    response.body = text + "\n";
    return response;
  }

  void Reply(HttpResponse response, bool keep_alive) {
    auto message = std::make_shared<http::response<http::string_body>>();
    message->version(11);
    message->result(static_cast<http::status>(response.status));
    message->set(http::field::server, "ternd");
    message->set(http::field::content_type, response.content_type);
    message->keep_alive(keep_alive);
    message->body() = std::move(response.body);
    message->prepare_payload();
    http::async_write(stream_, *message,
                      [self = shared_from_this(), message, keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpRouter* router_;
  size_t max_body_bytes_;
};

}  // namespace

void HttpRouter::Handle(const std::string& method, const std::string& path, HttpHandler handler) {
  routes_[path][method] = std::move(handler);
}

bool HttpRouter::Knows(const std::string& path) const { return routes_.count(path) > 0; }

HttpResponse HttpRouter::Dispatch(const HttpRequest& request) const {
  const auto path_it = routes_.find(request.path);
  if (path_it == routes_.end()) {
    HttpResponse response;
    response.status = 404;
    response.body = absl::StrCat("no route for ", request.path, "\n");
    return response;
  }
  auto method_it = path_it->second.find(request.method);
  if (method_it == path_it->second.end() && request.method == "HEAD") {
    method_it = path_it->second.find("GET");
  }
  if (method_it == path_it->second.end()) {
    HttpResponse response;
    response.status = 405;
    response.body = absl::StrCat(request.method, " is not allowed on ", request.path, "\n");
    return response;
  }
  return method_it->second(request);
}

struct HttpServer::Impl {
  Options options;
  HttpRouter router;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::vector<std::thread> threads;
  std::atomic<bool> stopped{false};
  int port = 0;

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
        spdlog::warn("http accept failed: {}", ec.message());
      } else {
        std::make_shared<Session>(std::move(socket), &router, options.max_body_bytes)->Run();
      }
      Accept();
    });
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options,
                                                              HttpRouter router) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->router = std::move(router);
  const std::string where = absl::StrCat(options.host, ":", options.port);
  beast::error_code ec;
  const auto address = asio::ip::make_address(options.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP listen address \"", options.host, "\" is not an IP address"));
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen for HTTP on ", where, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  Impl* raw = impl.get();
  for (int i = 0; i < std::max(1, options.num_threads); ++i) {
    impl->threads.emplace_back([raw] { raw->io.run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::Stop() {
  if (impl_->stopped.exchange(true)) return;
  asio::post(impl_->io, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
  });
  impl_->io.stop();
  for (auto& thread : impl_->threads) thread.join();
  impl_->threads.clear();
}

}  // namespace tern::server
