// tern-load's OpenAI-compatible client (--api openai): each request is one
// streamed chat completion (POST {target}/v1/chat/completions with
// "stream": true and stream_options.include_usage), so the same workload can
// drive ternd's HTTP API, vLLM, SGLang, TGI, llama.cpp's server or any other
// OpenAI-compatible server.
//
// Timing comes from the server-sent events: a chunk whose choice carries
// text (delta.content, or delta.reasoning_content: the skeleton of a
// Skeleton-of-Thought answer) is a token chunk (TTFT, ITL); output tokens are
// usage.completion_tokens from the last chunk, else the number of token
// chunks. A status other than 200, or an error event in the stream, fails the
// request with the gRPC code of the same meaning (429 -> RESOURCE_EXHAUSTED,
// ...) and the server's message, so the report reads the same for both APIs.
//
// HTTP/1.1 over Boost.Asio, plain http:// only, one TCP connection per
// request (opened when it is sent, so TTFT includes the connect: about 0.1 ms
// on loopback). Threads: the client's io threads run every call's handlers,
// each call on its own strand.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "loadtest/load_call.h"
#include "loadtest/options.h"
#include "loadtest/workload.h"
#include "nlohmann/json.hpp"

namespace tern::loadtest {

// "http://host:port[/prefix]" (port 80 when absent). The API's paths go
// under the prefix: http://h:8000/openai -> /openai/v1/chat/completions.
struct HttpTarget {
  std::string host;
  std::string port;
  std::string prefix;  // "" or "/something", no trailing slash
};
absl::StatusOr<HttpTarget> ParseHttpTarget(const std::string& url);

// The chat completion request for one planned request. tern's extra fields
// go only where the run asks for them (decoding_mode and sot for
// Skeleton-of-Thought, ignore_eos), so a plain run is a plain OpenAI request.
nlohmann::json BuildChatCompletionBody(const LoadOptions& options, const PlannedRequest& planned,
                                       const std::vector<std::string>& prompts);

// The gRPC status code (as an int) that means what an HTTP status or an
// OpenAI error `type` means.
int GrpcCodeForHttpStatus(int http_status);
int GrpcCodeForErrorType(const std::string& type);

// Folds the data of one server-sent event into `trace` (`now`: when it
// arrived). Returns false for "[DONE]"; fills `error` (code, message) for an
// error event.
struct SseError {
  int code = 0;
  std::string message;
};
bool ApplySseData(const std::string& data, Clock::time_point now, RequestTrace* trace, SseError* error);

// The connection side shared by every call of a run: the resolved target and
// the io threads.
class OpenAiClient {
 public:
  // Resolves the target and checks that it accepts a TCP connection within
  // `connect_timeout` (UNAVAILABLE otherwise).
  static absl::StatusOr<std::unique_ptr<OpenAiClient>> Create(const std::string& url,
                                                              std::chrono::milliseconds connect_timeout,
                                                              int threads = 2);
  // Stops the io threads; handlers still queued never run.
  ~OpenAiClient();

  boost::asio::io_context& io() { return io_; }
  const boost::asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }
  const HttpTarget& target() const { return target_; }

 private:
  OpenAiClient() = default;
  boost::asio::io_context io_;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  boost::asio::ip::tcp::endpoint endpoint_;
  HttpTarget target_;
};

class OpenAiCall final : public LoadCall {
 public:
  // `trace` arrives with index, tenant, max_tokens and scheduled set; `body`
  // is the chat completion request. `client` outlives the call.
  OpenAiCall(RequestTrace trace, std::string body, const std::string& api_key, std::chrono::milliseconds timeout,
             OpenAiClient* client, CallSink* sink);
  ~OpenAiCall() override;

  void Start() override;
  void Cancel() override;

 private:
  struct Connection;
  void OnConnect(const boost::system::error_code& ec);
  void OnWrite(const boost::system::error_code& ec);
  void ReadSome();
  void OnRead(const boost::system::error_code& ec);
  // Takes in body bytes; true when they ended the call (Done was called).
  bool Consume(const char* data, size_t size);
  // The end: records the status and tells the sink (last action).
  void Done(int code, std::string message);

  std::string body_;
  std::string api_key_;
  std::chrono::milliseconds timeout_;
  OpenAiClient* client_;
  CallSink* sink_;
  std::shared_ptr<Connection> connection_;
  // Handler state (the call's strand).
  std::string events_;       // SSE bytes not yet split into events
  std::string error_body_;   // the body of a response other than 200
  int http_status_ = 0;
  bool done_ = false;
  bool saw_done_marker_ = false;
  SseError stream_error_;
};

}  // namespace tern::loadtest
