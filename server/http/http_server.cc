#include "server/http/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <deque>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl.hpp"
#include "spdlog/spdlog.h"

namespace tern::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// After an error reply that leaves request bytes unread (413, 431), the
// connection reads and drops what the client still sends for at most this
// long (and this many bytes) before closing, so that closing with unread
// data does not reset the connection before the client has read the reply.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 1 << 20;

HttpResponse PlainError(int status, const std::string& message) {
  HttpResponse response;
  response.status = status;
  response.body = message + "\n";
  return response;
}

std::string PeerOf(const tcp::socket& socket) {
  beast::error_code ec;
  const tcp::endpoint endpoint = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  if (endpoint.address().is_v6()) {
    return absl::StrCat("ipv6:[", endpoint.address().to_string(), "]:", endpoint.port());
  }
  return absl::StrCat("ipv4:", endpoint.address().to_string(), ":", endpoint.port());
}

}  // namespace

struct HttpServer::Impl {
  Options options;
  HttpRouter router;
  std::optional<asio::ssl::context> tls;  // set: every connection is TLS
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::vector<std::thread> threads;
  std::atomic<bool> stopped{false};
  std::atomic<int> active{0};
  int port = 0;

  void Accept();
};

namespace {

// A connection's byte stream: plain TCP, or TLS over it. Beast's and Asio's
// algorithms take it as an AsyncReadStream / AsyncWriteStream; timeouts and
// the socket belong to the TCP layer (tcp_layer()).
class ConnectionStream {
 public:
  using executor_type = beast::tcp_stream::executor_type;

  ConnectionStream(tcp::socket socket, asio::ssl::context* tls) {
    if (tls != nullptr) {
      tls_.emplace(std::move(socket), *tls);
    } else {
      plain_.emplace(std::move(socket));
    }
  }

  bool is_tls() const { return tls_.has_value(); }
  beast::tcp_stream& tcp_layer() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }
  beast::ssl_stream<beast::tcp_stream>& tls() { return *tls_; }
  executor_type get_executor() { return tcp_layer().get_executor(); }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_->async_read_some(buffers, std::forward<Handler>(handler));
    }
  }
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_->async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

 private:
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
};

// One connection: read a request, hand it to its handler, write the answer
// (whole or streamed), repeat while keep-alive. Everything here runs on the
// connection's strand; HttpExchange calls hop onto it.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : stream_(std::move(socket), server->tls ? &*server->tls : nullptr),
        server_(server),
        peer_(PeerOf(stream_.tcp_layer().socket())) {}

  ~Session() {
    if (current_ != 0) server_->active.fetch_sub(1);
  }

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->stream_.is_tls()) return self->Read();
      // TLS first (a client certificate too, under mutual TLS); a client
      // that fails it, or sends plaintext, is dropped without an answer.
      self->stream_.tcp_layer().expires_after(absl::ToChronoNanoseconds(self->server_->options.idle_timeout));
      self->stream_.tls().async_handshake(asio::ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) {
          spdlog::debug("http {}: TLS handshake failed: {}", self->peer_, ec.message());
          beast::error_code ignored;
          self->stream_.tcp_layer().socket().close(ignored);
          return;
        }
        self->Read();
      });
    });
  }

  void Post(std::function<void()> task) { asio::post(stream_.get_executor(), std::move(task)); }

  // The exchange's operations, on the strand. `id` names the request they
  // belong to; a stale id (an exchange whose response already ended) is
  // ignored.
  void DoRespond(uint64_t id, HttpResponse response);
  void DoStartStream(uint64_t id, HttpResponse head);
  void DoWrite(uint64_t id, std::string data, std::function<void(bool)> done);
  void DoEndStream(uint64_t id);
  void DoOnClientGone(uint64_t id, std::function<void()> on_gone);

 private:
  enum class State { kReading, kHandling, kStreaming, kWriting };

  struct Pending {
    std::string bytes;
    std::function<void(bool)> done;  // may be empty
    bool last = false;               // the stream's end
  };

  void Read();
  void OnHeader(beast::error_code ec);
  void ReadBody();
  void OnRead(beast::error_code ec);
  // An error found before any handler ran; closes after writing it.
  void ReplyError(int status, const std::string& message);
  void Dispatch();
  void WriteWhole(HttpResponse response, bool keep_alive);
  void MaybeWrite();
  void OnWritten(beast::error_code ec);
  void FailQueued();
  void FinishResponse(bool reusable);
  void Watch();
  void OnReadable(uint64_t id, beast::error_code ec);
  void ClientGone();
  void Close();
  void Linger();

  ConnectionStream stream_;
  HttpServer::Impl* server_;
  const std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  State state_ = State::kReading;
  uint64_t next_id_ = 0;
  uint64_t current_ = 0;  // the request whose response is in progress; 0: none
  bool keep_alive_ = false;
  bool chunked_ = false;
  bool client_gone_ = false;
  bool end_queued_ = false;
  bool writing_ = false;
  std::function<void()> on_gone_;
  std::deque<Pending> queue_;
  std::array<char, 4096> scratch_;
  size_t lingered_ = 0;
};

class Exchange final : public HttpExchange {
 public:
  Exchange(std::shared_ptr<Session> session, uint64_t id) : session_(std::move(session)), id_(id) {}

  ~Exchange() override {
    if (!answered_.exchange(true)) {
      session_->Post([session = session_, id = id_] {
        session->DoRespond(id, PlainError(500, "internal error: the handler did not answer"));
      });
    }
  }

  void Respond(HttpResponse response) override {
    answered_ = true;
    session_->Post([session = session_, id = id_, response = std::move(response)]() mutable {
      session->DoRespond(id, std::move(response));
    });
  }
  void StartStream(HttpResponse head) override {
    answered_ = true;
    session_->Post([session = session_, id = id_, head = std::move(head)]() mutable {
      session->DoStartStream(id, std::move(head));
    });
  }
  void Write(std::string data, std::function<void(bool ok)> done) override {
    session_->Post([session = session_, id = id_, data = std::move(data), done = std::move(done)]() mutable {
      session->DoWrite(id, std::move(data), std::move(done));
    });
  }
  void EndStream() override {
    session_->Post([session = session_, id = id_] { session->DoEndStream(id); });
  }
  void OnClientGone(std::function<void()> on_gone) override {
    session_->Post([session = session_, id = id_, on_gone = std::move(on_gone)]() mutable {
      session->DoOnClientGone(id, std::move(on_gone));
    });
  }
  void Post(std::function<void()> task) override { session_->Post(std::move(task)); }

 private:
  std::shared_ptr<Session> session_;
  const uint64_t id_;
  std::atomic<bool> answered_{false};
};

void Session::Read() {
  state_ = State::kReading;
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(server_->options.max_header_bytes));
  parser_->body_limit(server_->options.max_body_bytes);
  stream_.tcp_layer().expires_after(absl::ToChronoNanoseconds(server_->options.idle_timeout));
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
}

void Session::OnHeader(beast::error_code ec) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
      ec == asio::error::connection_reset || ec == asio::error::eof) {
    return Close();
  }
  if (ec == http::error::header_limit) {
    return ReplyError(431, absl::StrCat("request headers are larger than ", server_->options.max_header_bytes,
                                        " bytes"));
  }
  if (ec == http::error::body_limit) {
    return ReplyError(413, absl::StrCat("request body is larger than ", server_->options.max_body_bytes, " bytes"));
  }
  if (ec) return ReplyError(400, absl::StrCat("malformed HTTP request: ", ec.message()));
  const auto& header = parser_->get();
  const auto expect = header[http::field::expect];
  if (absl::EqualsIgnoreCase(absl::string_view(expect.data(), expect.size()), "100-continue")) {
    auto interim = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
    asio::async_write(stream_, asio::buffer(*interim),
                      [self = shared_from_this(), interim](beast::error_code write_ec, size_t) {
                        if (write_ec) return self->Close();
                        self->ReadBody();
                      });
    return;
  }
  ReadBody();
}

void Session::ReadBody() {
  stream_.tcp_layer().expires_after(absl::ToChronoNanoseconds(server_->options.idle_timeout));
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

void Session::OnRead(beast::error_code ec) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
      ec == asio::error::connection_reset || ec == asio::error::eof) {
    return Close();
  }
  if (ec == http::error::body_limit) {
    return ReplyError(413, absl::StrCat("request body is larger than ", server_->options.max_body_bytes, " bytes"));
  }
  if (ec) return ReplyError(400, absl::StrCat("malformed HTTP request: ", ec.message()));
  Dispatch();
}

void Session::Dispatch() {
  auto& msg = parser_->get();
  HttpRequest request;
  request.method = std::string(msg.method_string());
  const std::string target(msg.target());
  const auto question = target.find('?');
  request.path = target.substr(0, question);
  if (question != std::string::npos) request.query = target.substr(question + 1);
  request.body = std::move(msg.body());
  for (const auto& field : msg) request.headers.emplace_back(field.name_string(), field.value());
  request.peer = peer_;
  keep_alive_ = msg.keep_alive();
  chunked_ = msg.version() >= 11;
  client_gone_ = false;
  end_queued_ = false;
  on_gone_ = nullptr;
  current_ = ++next_id_;
  state_ = State::kHandling;
  server_->active.fetch_add(1);
  // A handler may take its time (a non-streamed generation): no deadline on
  // the connection until the answer is written.
  stream_.tcp_layer().expires_never();
  Watch();
  auto exchange = std::make_shared<Exchange>(shared_from_this(), current_);
  try {
    server_->router.Dispatch(request, exchange);
  } catch (const std::exception& e) {
    // Handlers report errors as responses; an exception is a bug, but one
    // request must not take the server down.
    spdlog::error("http {} {}: handler threw: {}", request.method, request.path, e.what());
    exchange->Respond(PlainError(500, "internal error"));
  }
}

void Session::ReplyError(int status, const std::string& message) {
  // The request was not read to its end: answer and close.
  if (current_ == 0) {
    current_ = ++next_id_;
    server_->active.fetch_add(1);
  }
  state_ = State::kHandling;
  keep_alive_ = false;
  chunked_ = true;
  DoRespond(current_, server_->router.Error(status, message));
}

void Session::DoRespond(uint64_t id, HttpResponse response) {
  if (id != current_ || state_ != State::kHandling) return;
  state_ = State::kWriting;
  WriteWhole(std::move(response), keep_alive_ && !client_gone_);
}

void Session::WriteWhole(HttpResponse response, bool keep_alive) {
  auto message = std::make_shared<http::response<http::string_body>>();
  message->version(chunked_ ? 11 : 10);
  message->result(static_cast<unsigned>(response.status));
  message->set(http::field::server, "ternd");
  message->set(http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) message->set(name, value);
  message->keep_alive(keep_alive);
  message->body() = std::move(response.body);
  message->prepare_payload();
  stream_.tcp_layer().expires_after(absl::ToChronoNanoseconds(server_->options.idle_timeout));
  http::async_write(stream_, *message,
                    [self = shared_from_this(), message, keep_alive](beast::error_code ec, size_t) {
                      self->FinishResponse(!ec && keep_alive);
                    });
}

void Session::DoStartStream(uint64_t id, HttpResponse head) {
  if (id != current_ || state_ != State::kHandling) return;
  state_ = State::kStreaming;
  if (client_gone_) keep_alive_ = false;
  http::response<http::empty_body> message;
  message.version(chunked_ ? 11 : 10);
  message.result(static_cast<unsigned>(head.status));
  message.set(http::field::server, "ternd");
  message.set(http::field::content_type, head.content_type);
  for (const auto& [name, value] : head.headers) message.set(name, value);
  if (chunked_) {
    message.chunked(true);
    message.keep_alive(keep_alive_);
  } else {
    // HTTP/1.0: the body ends when the connection closes.
    keep_alive_ = false;
    message.keep_alive(false);
  }
  std::ostringstream text;
  text << message.base();
  queue_.push_back({text.str(), nullptr, false});
  MaybeWrite();
}

void Session::DoWrite(uint64_t id, std::string data, std::function<void(bool)> done) {
  const bool live = id == current_ && state_ == State::kStreaming && !end_queued_ && !client_gone_;
  if (!live || data.empty()) {
    if (done) Post([done = std::move(done), ok = live] { done(ok); });
    return;
  }
  std::string bytes = chunked_ ? absl::StrFormat("%x\r\n", data.size()) + data + "\r\n" : std::move(data);
  queue_.push_back({std::move(bytes), std::move(done), false});
  MaybeWrite();
}

void Session::DoEndStream(uint64_t id) {
  if (id != current_ || state_ != State::kStreaming || end_queued_) return;
  end_queued_ = true;
  queue_.push_back({chunked_ ? "0\r\n\r\n" : "", nullptr, true});
  MaybeWrite();
}

void Session::DoOnClientGone(uint64_t id, std::function<void()> on_gone) {
  if (id != current_ || state_ == State::kReading) return;
  if (client_gone_) {
    on_gone();
    return;
  }
  on_gone_ = std::move(on_gone);
}

void Session::MaybeWrite() {
  if (writing_ || queue_.empty()) return;
  Pending& next = queue_.front();
  if (next.bytes.empty()) {
    // The end of a stream that has no framing (HTTP/1.0).
    OnWritten({});
    return;
  }
  writing_ = true;
  // A client that does not take a chunk for this long is treated as gone.
  stream_.tcp_layer().expires_after(absl::ToChronoNanoseconds(server_->options.idle_timeout));
  asio::async_write(stream_, asio::buffer(next.bytes),
                    [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWritten(ec); });
}

void Session::OnWritten(beast::error_code ec) {
  writing_ = false;
  Pending written = std::move(queue_.front());
  queue_.pop_front();
  if (ec) {
    if (written.done) written.done(false);
    ClientGone();
    FailQueued();
    return FinishResponse(false);
  }
  if (written.done) written.done(true);
  if (written.last) return FinishResponse(keep_alive_ && !client_gone_);
  MaybeWrite();
}

void Session::FailQueued() {
  std::deque<Pending> failed;
  failed.swap(queue_);
  for (Pending& pending : failed) {
    if (pending.done) pending.done(false);
  }
}

void Session::FinishResponse(bool reusable) {
  if (current_ != 0) server_->active.fetch_sub(1);
  current_ = 0;
  on_gone_ = nullptr;
  FailQueued();
  if (reusable && !server_->stopped.load()) return Read();
  Close();
}

void Session::Watch() {
  stream_.tcp_layer().socket().async_wait(tcp::socket::wait_read,
                              [self = shared_from_this(), id = current_](beast::error_code ec) {
                                self->OnReadable(id, ec);
                              });
}

void Session::OnReadable(uint64_t id, beast::error_code ec) {
  if (id != current_ || state_ == State::kReading || ec == asio::error::operation_aborted) return;
  if (ec) return ClientGone();
  char byte;
  const ssize_t n = ::recv(stream_.tcp_layer().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return ClientGone();  // the client closed its end
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Watch();
    return ClientGone();
  }
  // The client sent its next request already (pipelining): leave it for the
  // next read; a close is then noticed by the writes.
}

void Session::ClientGone() {
  if (client_gone_) return;
  client_gone_ = true;
  keep_alive_ = false;
  if (on_gone_) {
    auto on_gone = std::move(on_gone_);
    on_gone_ = nullptr;
    on_gone();
  }
}

void Session::Close() {
  beast::error_code ignored;
  stream_.tcp_layer().socket().shutdown(tcp::socket::shutdown_send, ignored);
  if (server_->stopped.load()) {
    stream_.tcp_layer().socket().close(ignored);
    return;
  }
  // Read what the client still sends (a body we refused, say) until it
  // closes, so that closing does not reset the connection under our reply.
  lingered_ = 0;
  stream_.tcp_layer().expires_after(kLingerTime);
  Linger();
}

void Session::Linger() {
  // Raw bytes (TLS records too) are only counted and dropped.
  stream_.tcp_layer().async_read_some(asio::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t n) {
    self->lingered_ += n;
    if (ec || self->lingered_ > kLingerBytes) {
      beast::error_code ignored;
      self->stream_.tcp_layer().socket().close(ignored);
      return;
    }
    self->Linger();
  });
}

}  // namespace

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, absl::string_view(name.data(), name.size()))) return value;
  }
  return {};
}

void HttpRouter::Handle(const std::string& method, const std::string& path, HttpHandler handler) {
  routes_[path][method].sync = std::move(handler);
}

void HttpRouter::HandleAsync(const std::string& method, const std::string& path, HttpAsyncHandler handler) {
  routes_[path][method].async = std::move(handler);
}

void HttpRouter::HandlePrefix(const std::string& method, const std::string& prefix, HttpAsyncHandler handler) {
  prefixes_[prefix][method].async = std::move(handler);
}

void HttpRouter::SetErrorResponder(HttpErrorResponder responder) { error_ = std::move(responder); }

HttpResponse HttpRouter::Error(int status, const std::string& message) const {
  return error_ ? error_(status, message) : PlainError(status, message);
}

bool HttpRouter::Knows(const std::string& path) const { return Find(path) != nullptr; }

const std::map<std::string, HttpRouter::Route>* HttpRouter::Find(const std::string& path) const {
  if (const auto it = routes_.find(path); it != routes_.end()) return &it->second;
  const std::map<std::string, Route>* best = nullptr;
  size_t best_length = 0;
  for (const auto& [prefix, methods] : prefixes_) {
    if (absl::StartsWith(path, prefix) && prefix.size() >= best_length) {
      best = &methods;
      best_length = prefix.size();
    }
  }
  return best;
}

void HttpRouter::Dispatch(const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) const {
  const std::map<std::string, Route>* methods = Find(request.path);
  if (methods == nullptr) {
    exchange->Respond(Error(404, absl::StrCat("no route for ", request.method, " ", request.path)));
    return;
  }
  auto it = methods->find(request.method);
  if (it == methods->end() && request.method == "HEAD") it = methods->find("GET");
  if (it == methods->end()) {
    HttpResponse response = Error(405, absl::StrCat(request.method, " is not allowed on ", request.path));
    std::string allowed;
    for (const auto& [method, route] : *methods) absl::StrAppend(&allowed, allowed.empty() ? "" : ", ", method);
    response.headers.emplace_back("Allow", allowed);
    exchange->Respond(std::move(response));
    return;
  }
  if (it->second.sync) {
    exchange->Respond(it->second.sync(request));
  } else {
    it->second.async(request, std::move(exchange));
  }
}

void HttpServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      spdlog::warn("http accept failed: {}", ec.message());
    } else {
      std::make_shared<Session>(std::move(socket), this)->Run();
    }
    Accept();
  });
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& options,
                                                              HttpRouter router) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->router = std::move(router);
  if (options.tls.has_value()) {
    // TLS 1.2 and up; with a client CA, a client certificate that chains to
    // it is required (mutual TLS).
    try {
      asio::ssl::context& tls = impl->tls.emplace(asio::ssl::context::tls_server);
      tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
      tls.use_certificate_chain(asio::buffer(options.tls->cert_chain_pem));
      tls.use_private_key(asio::buffer(options.tls->private_key_pem), asio::ssl::context::pem);
      if (options.tls->mutual()) {
        tls.add_certificate_authority(asio::buffer(options.tls->client_ca_pem));
        tls.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
      }
    } catch (const boost::system::system_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("tls: the HTTP server cannot use the certificates: ", e.what()));
    }
  }
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

int HttpServer::active_responses() const { return impl_->active.load(); }

void HttpServer::Stop(absl::Duration grace) {
  if (impl_->stopped.exchange(true)) return;
  asio::post(impl_->io, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
  });
  const absl::Time give_up = absl::Now() + grace;
  while (impl_->active.load() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  impl_->io.stop();
  for (auto& thread : impl_->threads) thread.join();
  impl_->threads.clear();
}

}  // namespace tern::server
