#include "loadtest/openai_call.h"

#include <atomic>
#include <cstdint>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "loadtest/request_builder.h"

namespace tern::loadtest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

// grpc::StatusCode values (the trace keeps codes as ints; no gRPC here).
constexpr int kOk = 0, kCancelled = 1, kUnknown = 2, kInvalidArgument = 3, kDeadlineExceeded = 4, kNotFound = 5,
              kAlreadyExists = 6, kPermissionDenied = 7, kResourceExhausted = 8, kUnimplemented = 12, kInternal = 13,
              kUnavailable = 14, kUnauthenticated = 16;

int FinishReasonOf(const std::string& name) {
  if (name == "stop") return 1;    // tern.v1.FINISH_REASON_STOP
  if (name == "length") return 2;  // FINISH_REASON_LENGTH
  if (name == "abort") return 3;   // FINISH_REASON_ABORT
  return 0;
}

std::string ErrorMessage(const std::string& body) {
  const json parsed = json::parse(body, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error")) {
    const json& error = parsed["error"];
    if (error.is_object() && error.contains("message") && error["message"].is_string()) {
      return error["message"].get<std::string>();
    }
    if (error.is_string()) return error.get<std::string>();
  }
  return body.substr(0, 200);
}

}  // namespace

absl::StatusOr<HttpTarget> ParseHttpTarget(const std::string& url) {
  constexpr absl::string_view kScheme = "http://";
  if (absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError("--target: https is not supported; use http:// (or a local TLS proxy)");
  }
  if (!absl::StartsWith(url, kScheme)) {
    return absl::InvalidArgumentError("--target: with --api openai, give an http://HOST:PORT URL, got \"" + url + "\"");
  }
  std::string rest = url.substr(kScheme.size());
  HttpTarget target;
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    target.prefix = rest.substr(slash);
    rest = rest.substr(0, slash);
    while (!target.prefix.empty() && target.prefix.back() == '/') target.prefix.pop_back();
    // ".../v1" is where clients point their base URL: the paths add it.
    if (absl::EndsWith(target.prefix, "/v1")) target.prefix.resize(target.prefix.size() - 3);
  }
  size_t colon = rest.rfind(':');
  if (!rest.empty() && rest[0] == '[') {  // [IPv6]:port
    const size_t close = rest.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError("--target: unclosed [ in \"" + url + "\"");
    target.host = rest.substr(1, close - 1);
    colon = rest.size() > close + 1 && rest[close + 1] == ':' ? close + 1 : std::string::npos;
  } else {
    target.host = rest.substr(0, colon);
  }
  target.port = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  int port = 0;
  if (target.host.empty() || !absl::SimpleAtoi(target.port, &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError("--target: expected http://HOST:PORT, got \"" + url + "\"");
  }
  return target;
}

json BuildChatCompletionBody(const LoadOptions& options, const PlannedRequest& planned,
                             const std::vector<std::string>& prompts) {
  // The same choices as the gRPC request (request_builder.h), in OpenAI's words.
  const tern::v1::GenerateRequest request = BuildGenerateRequest(options, planned, prompts);
  const tern::v1::SamplingParams& sampling = request.sampling();
  json body = {{"model", options.model},
               {"messages", json::array({{{"role", "user"}, {"content", request.text()}}})},
               {"max_tokens", sampling.max_tokens()},
               {"seed", sampling.seed()},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (sampling.has_temperature()) body["temperature"] = sampling.temperature();
  if (sampling.ignore_eos()) body["ignore_eos"] = true;
  switch (request.decoding_mode()) {
    case tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT: body["decoding_mode"] = "skeleton_of_thought"; break;
    case tern::v1::DECODING_MODE_AUTO: body["decoding_mode"] = "auto"; break;
    default: break;
  }
  if (request.has_sot() && (request.sot().outline_size() > 0 || request.sot().has_max_point_tokens())) {
    json sot = json::object();
    if (request.sot().outline_size() > 0) {
      sot["outline"] = std::vector<std::string>(request.sot().outline().begin(), request.sot().outline().end());
    }
    if (request.sot().has_max_point_tokens()) sot["max_point_tokens"] = request.sot().max_point_tokens();
    body["sot"] = std::move(sot);
  }
  return body;
}

int GrpcCodeForHttpStatus(int status) {
  switch (status) {
    case 200: return kOk;
    case 400: return kInvalidArgument;
    case 401: return kUnauthenticated;
    case 403: return kPermissionDenied;
    case 404: return kNotFound;
    case 408:
    case 504: return kDeadlineExceeded;
    case 409: return kAlreadyExists;
    case 413:
    case 422: return kInvalidArgument;
    case 429: return kResourceExhausted;
    case 499: return kCancelled;
    case 501: return kUnimplemented;
    case 502:
    case 503: return kUnavailable;
    default: break;
  }
  return status >= 500 ? kInternal : kUnknown;
}

int GrpcCodeForErrorType(const std::string& type) {
  if (type == "invalid_request_error" || type == "BadRequestError") return kInvalidArgument;
  if (type == "authentication_error") return kUnauthenticated;
  if (type == "permission_error") return kPermissionDenied;
  if (type == "not_found_error" || type == "NotFoundError") return kNotFound;
  if (type == "rate_limit_error") return kResourceExhausted;
  if (type == "service_unavailable_error") return kUnavailable;
  if (type == "timeout_error") return kDeadlineExceeded;
  return kInternal;
}

bool ApplySseData(const std::string& data, Clock::time_point now, RequestTrace* trace, SseError* error) {
  if (data == "[DONE]") return false;
  const json chunk = json::parse(data, nullptr, false);
  if (chunk.is_discarded() || !chunk.is_object()) {
    error->code = kInternal;
    error->message = "the stream sent an event that is not JSON: " + data.substr(0, 200);
    return true;
  }
  if (chunk.contains("error")) {
    const json& e = chunk["error"];
    error->code = e.is_object() && e.contains("type") && e["type"].is_string()
                      ? GrpcCodeForErrorType(e["type"].get<std::string>())
                      : kInternal;
    error->message = ErrorMessage(data);
    return true;
  }
  bool carries_tokens = false;
  if (chunk.contains("choices") && chunk["choices"].is_array()) {
    for (const json& choice : chunk["choices"]) {
      if (!choice.is_object()) continue;
      const auto has_text = [](const json& object, const char* key) {
        return object.contains(key) && object[key].is_string() && !object[key].get_ref<const std::string&>().empty();
      };
      if (choice.contains("delta") && choice["delta"].is_object()) {
        const json& delta = choice["delta"];
        if (has_text(delta, "content") || has_text(delta, "reasoning_content") || has_text(delta, "reasoning")) {
          carries_tokens = true;
        }
      }
      if (has_text(choice, "text")) carries_tokens = true;
      if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
        trace->finish_reason = FinishReasonOf(choice["finish_reason"].get<std::string>());
      }
    }
  }
  if (chunk.contains("usage") && chunk["usage"].is_object()) {
    const json& usage = chunk["usage"];
    if (usage.contains("completion_tokens") && usage["completion_tokens"].is_number_integer()) {
      trace->usage_completion_tokens = usage["completion_tokens"].get<int64_t>();
    }
    if (usage.contains("prompt_tokens") && usage["prompt_tokens"].is_number_integer()) {
      trace->usage_prompt_tokens = usage["prompt_tokens"].get<int64_t>();
    }
  }
  if (carries_tokens) {
    trace->token_chunk_times.push_back(now);
    ++trace->counted_tokens;  // one chunk, at least one token
  }
  return true;
}

absl::StatusOr<std::unique_ptr<OpenAiClient>> OpenAiClient::Create(const std::string& url,
                                                                    std::chrono::milliseconds connect_timeout,
                                                                    int threads) {
  absl::StatusOr<HttpTarget> target = ParseHttpTarget(url);
  if (!target.ok()) return target.status();
  std::unique_ptr<OpenAiClient> client(new OpenAiClient());
  client->target_ = *target;
  boost::system::error_code ec;
  tcp::resolver resolver(client->io_);
  const auto endpoints = resolver.resolve(target->host, target->port, ec);
  if (ec || endpoints.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", target->host, ": ", ec.message()));
  }
  // One connection now: an unreachable target fails the run at once.
  beast::tcp_stream probe(client->io_);
  probe.expires_after(connect_timeout);
  bool connected = false;
  probe.async_connect(endpoints, [&](const boost::system::error_code& e, const tcp::endpoint& endpoint) {
    if (!e) {
      connected = true;
      client->endpoint_ = endpoint;
    }
    ec = e;
  });
  client->io_.run();
  client->io_.restart();
  if (!connected) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", url, " within ", connect_timeout.count(),
                                               " ms: ", ec.message()));
  }
  probe.close();
  client->work_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
      asio::make_work_guard(client->io_));
  for (int i = 0; i < std::max(1, threads); ++i) {
    client->threads_.emplace_back([raw = client.get()] { raw->io_.run(); });
  }
  return client;
}

OpenAiClient::~OpenAiClient() {
  work_.reset();
  io_.stop();
  for (std::thread& thread : threads_) thread.join();
}

// The socket and what an operation in flight needs; kept alive by the
// operation's handler, so a late Cancel is harmless.
struct OpenAiCall::Connection {
  explicit Connection(asio::io_context& io) : stream(asio::make_strand(io)) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  http::request<http::string_body> request;
  http::response_parser<http::buffer_body> parser;
  char chunk[16384];
};

OpenAiCall::OpenAiCall(RequestTrace trace, std::string body, const std::string& api_key,
                       std::chrono::milliseconds timeout, OpenAiClient* client, CallSink* sink)
    : LoadCall(std::move(trace)),
      body_(std::move(body)),
      api_key_(api_key),
      timeout_(timeout),
      client_(client),
      sink_(sink),
      connection_(std::make_shared<Connection>(client->io())) {}

OpenAiCall::~OpenAiCall() = default;

void OpenAiCall::Start() {
  trace_.sent = Clock::now();
  Connection& c = *connection_;
  const HttpTarget& target = client_->target();
  c.request = http::request<http::string_body>(http::verb::post, target.prefix + "/v1/chat/completions", 11);
  c.request.set(http::field::host, target.host + ":" + target.port);
  c.request.set(http::field::content_type, "application/json");
  c.request.set(http::field::accept, "text/event-stream");
  c.request.set(http::field::user_agent, "tern-load");
  if (!api_key_.empty()) c.request.set(http::field::authorization, "Bearer " + api_key_);
  c.request.body() = body_;
  c.request.prepare_payload();
  c.parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // a stream has no size
  // The whole request, connect to the last byte, within --timeout.
  c.stream.expires_after(timeout_);
  c.stream.async_connect(client_->endpoint(), [this, keep = connection_](const boost::system::error_code& ec) {
    OnConnect(ec);
  });
}

void OpenAiCall::Cancel() {
  asio::post(connection_->stream.get_executor(), [connection = connection_] {
    boost::system::error_code ignored;
    connection->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    connection->stream.socket().close(ignored);
  });
}

void OpenAiCall::OnConnect(const boost::system::error_code& ec) {
  if (ec) {
    return Done(ec == beast::error::timeout ? kDeadlineExceeded : ec == asio::error::operation_aborted ? kCancelled
                                                                                                       : kUnavailable,
                "connect: " + ec.message());
  }
  http::async_write(connection_->stream, connection_->request,
                    [this, keep = connection_](const boost::system::error_code& e, size_t) { OnWrite(e); });
}

void OpenAiCall::OnWrite(const boost::system::error_code& ec) {
  if (ec) {
    return Done(ec == beast::error::timeout ? kDeadlineExceeded : kUnavailable, "write: " + ec.message());
  }
  ReadSome();
}

void OpenAiCall::ReadSome() {
  Connection& c = *connection_;
  c.parser.get().body().data = c.chunk;
  c.parser.get().body().size = sizeof(c.chunk);
  http::async_read_some(c.stream, c.buffer, c.parser,
                        [this, keep = connection_](boost::system::error_code e, size_t) {
                          if (e == http::error::need_buffer) e = {};
                          OnRead(e);
                        });
}

void OpenAiCall::OnRead(const boost::system::error_code& ec) {
  Connection& c = *connection_;
  if (c.parser.is_header_done() && http_status_ == 0) http_status_ = c.parser.get().result_int();
  const size_t got = sizeof(c.chunk) - c.parser.get().body().size;
  // Once Done has told the sink, `this` may be gone: return at once.
  if (got > 0 && Consume(c.chunk, got)) return;
  if (ec) {
    if (ec == beast::error::timeout) return Done(kDeadlineExceeded, "timed out (--timeout)");
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
      return Done(kCancelled, "cancelled");
    }
    return Done(kUnavailable, "read: " + ec.message());
  }
  if (!c.parser.is_done()) return ReadSome();
  if (http_status_ != 200) {
    return Done(GrpcCodeForHttpStatus(http_status_), absl::StrCat("HTTP ", http_status_, ": ", ErrorMessage(error_body_)));
  }
  if (!events_.empty() && Consume("\n\n", 2)) return;  // a last event without its blank line
  if (!saw_done_marker_) return Done(kUnavailable, "the stream ended without data: [DONE]");
  Done(kOk, "");
}

bool OpenAiCall::Consume(const char* data, size_t size) {
  if (http_status_ != 200) {
    if (error_body_.size() < 65536) error_body_.append(data, size);
    return false;
  }
  const Clock::time_point now = Clock::now();
  for (size_t i = 0; i < size; ++i) {
    if (data[i] != '\r') events_.push_back(data[i]);
  }
  size_t end;
  while ((end = events_.find("\n\n")) != std::string::npos) {
    const std::string event = events_.substr(0, end);
    events_.erase(0, end + 2);
    std::string payload;
    bool has_data = false;
    size_t line_start = 0;
    while (line_start <= event.size()) {
      size_t line_end = event.find('\n', line_start);
      if (line_end == std::string::npos) line_end = event.size();
      const std::string line = event.substr(line_start, line_end - line_start);
      if (absl::StartsWith(line, "data:")) {
        std::string value = line.substr(5);
        if (!value.empty() && value[0] == ' ') value.erase(0, 1);
        if (has_data) payload += "\n";
        payload += value;
        has_data = true;
      }
      line_start = line_end + 1;
    }
    if (!has_data) continue;  // a comment or an event without data
    if (!ApplySseData(payload, now, &trace_, &stream_error_)) {
      saw_done_marker_ = true;
      continue;
    }
    if (stream_error_.code != 0) {
      Done(stream_error_.code, stream_error_.message);
      return true;
    }
  }
  return false;
}

void OpenAiCall::Done(int code, std::string message) {
  if (done_) return;
  done_ = true;
  boost::system::error_code ignored;
  connection_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  connection_->stream.socket().close(ignored);
  trace_.done = Clock::now();
  trace_.status_code = code;
  trace_.status_message = std::move(message);
  sink_->OnCallDone(this);  // last action: the owner may delete `this` now
}

}  // namespace tern::loadtest
