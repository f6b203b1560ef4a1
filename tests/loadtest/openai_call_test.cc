// tern-load's OpenAI-compatible client: the target URL, the request body,
// SSE events into the trace, status codes, and the runner against a fake
// OpenAI server on loopback (no model, no ternd).
#include "loadtest/openai_call.h"

#include <atomic>
#include <thread>

#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read_until.hpp"
#include "boost/asio/write.hpp"
#include "gtest/gtest.h"
#include "loadtest/runner.h"

namespace tern::loadtest {
namespace {

using json = nlohmann::json;

TEST(OpenAiTargetTest, ParsesHttpUrls) {
  auto plain = ParseHttpTarget("http://127.0.0.1:8000");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, "8000");
  EXPECT_EQ(plain->prefix, "");
  auto v1 = ParseHttpTarget("http://example.com/v1/");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->port, "80");
  EXPECT_EQ(v1->prefix, "");  // clients' base URLs end in /v1: the paths add it
  auto prefixed = ParseHttpTarget("http://[::1]:9000/openai");
  ASSERT_TRUE(prefixed.ok()) << prefixed.status();
  EXPECT_EQ(prefixed->host, "::1");
  EXPECT_EQ(prefixed->port, "9000");
  EXPECT_EQ(prefixed->prefix, "/openai");
  EXPECT_FALSE(ParseHttpTarget("https://example.com").ok());
  EXPECT_FALSE(ParseHttpTarget("127.0.0.1:8000").ok());
  EXPECT_FALSE(ParseHttpTarget("http://host:notaport").ok());
  EXPECT_FALSE(ParseHttpTarget("http://:80").ok());
}

LoadOptions OpenAiOptions() {
  bool help = false;
  auto options = ParseLoadOptions({"--api", "openai", "--model", "m", "--rate", "1", "--requests", "1", "--prompts",
                                   "p.txt", "--max-tokens", "5", "--seed", "9"},
                                  &help);
  EXPECT_TRUE(options.ok()) << options.status();
  return *options;
}

TEST(OpenAiBodyTest, IsAPlainStreamedChatCompletionUnlessTernExtrasAreAsked) {
  LoadOptions options = OpenAiOptions();
  EXPECT_EQ(options.target, "http://127.0.0.1:8000");
  PlannedRequest planned;
  planned.index = 3;
  planned.prompt = 1;
  planned.max_tokens = 5;
  const std::vector<std::string> prompts = {"a", "Why is the sky blue?"};
  const json body = BuildChatCompletionBody(options, planned, prompts);
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["messages"], json::parse(R"([{"role": "user", "content": "Why is the sky blue?"}])"));
  EXPECT_EQ(body["max_tokens"], 5);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_TRUE(body["seed"].is_number_unsigned());
  for (const char* extra : {"decoding_mode", "sot", "ignore_eos", "temperature"}) EXPECT_FALSE(body.contains(extra));

  options.ignore_eos = true;
  options.temperature = 0.0f;
  options.sot_share = 1;
  options.sot_outline_points = 2;
  options.sot_point_tokens = 3;
  planned.sot = true;
  const json sot = BuildChatCompletionBody(options, planned, prompts);
  EXPECT_EQ(sot["decoding_mode"], "skeleton_of_thought");
  EXPECT_EQ(sot["sot"], json::parse(R"({"outline": ["Part 1", "Part 2"], "max_point_tokens": 3})"));
  EXPECT_EQ(sot["ignore_eos"], true);
  EXPECT_EQ(sot["temperature"], 0.0);
}

TEST(OpenAiSseTest, ChunksBecomeTheTrace) {
  RequestTrace trace;
  SseError error;
  const Clock::time_point t0 = Clock::now();
  EXPECT_TRUE(ApplySseData(R"({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})", t0,
                           &trace, &error));
  EXPECT_TRUE(trace.token_chunk_times.empty());  // no text: not a token
  EXPECT_TRUE(ApplySseData(R"({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]})",
                           t0 + std::chrono::milliseconds(5), &trace, &error));
  EXPECT_TRUE(ApplySseData(R"({"choices": [{"index": 0, "delta": {"reasoning_content": "1. a"}}]})",
                           t0 + std::chrono::milliseconds(9), &trace, &error));
  EXPECT_TRUE(ApplySseData(R"({"choices": [{"index": 0, "text": "!", "finish_reason": "length"}]})",
                           t0 + std::chrono::milliseconds(12), &trace, &error));
  EXPECT_TRUE(ApplySseData(R"({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}})",
                           t0 + std::chrono::milliseconds(13), &trace, &error));
  EXPECT_FALSE(ApplySseData("[DONE]", t0, &trace, &error));
  EXPECT_EQ(trace.token_chunk_times.size(), 3u);
  EXPECT_EQ(trace.counted_tokens, 3);
  EXPECT_EQ(trace.finish_reason, 2);  // length
  EXPECT_EQ(trace.usage_completion_tokens, 4);
  EXPECT_EQ(trace.usage_prompt_tokens, 7);
  EXPECT_EQ(error.code, 0);

  EXPECT_TRUE(ApplySseData(R"({"error": {"message": "queue full", "type": "rate_limit_error"}})", t0, &trace, &error));
  EXPECT_EQ(error.code, 8);  // RESOURCE_EXHAUSTED
  EXPECT_EQ(error.message, "queue full");
  SseError garbage;
  EXPECT_TRUE(ApplySseData("{not json", t0, &trace, &garbage));
  EXPECT_EQ(garbage.code, 13);  // INTERNAL
}

TEST(OpenAiSseTest, HttpStatusesAndErrorTypesMapToGrpcCodes) {
  EXPECT_EQ(GrpcCodeForHttpStatus(200), 0);
  EXPECT_EQ(GrpcCodeForHttpStatus(400), 3);
  EXPECT_EQ(GrpcCodeForHttpStatus(401), 16);
  EXPECT_EQ(GrpcCodeForHttpStatus(404), 5);
  EXPECT_EQ(GrpcCodeForHttpStatus(429), 8);
  EXPECT_EQ(GrpcCodeForHttpStatus(503), 14);
  EXPECT_EQ(GrpcCodeForHttpStatus(504), 4);
  EXPECT_EQ(GrpcCodeForHttpStatus(500), 13);
  EXPECT_EQ(GrpcCodeForErrorType("authentication_error"), 16);
  EXPECT_EQ(GrpcCodeForErrorType("something_else"), 13);
}

// A fake OpenAI server: answers every chat completion with a canned stream
// written in pieces (CRLF line ends, an event split across writes, a
// comment), or with 429 for model "busy". Counts requests.
class FakeOpenAiServer {
 public:
  FakeOpenAiServer() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeOpenAiServer() {
    stop_ = true;
    // A blocking accept() does not return when another thread closes the
    // acceptor: wake it with one last connection.
    boost::system::error_code ignored;
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket wake(io);
    wake.connect(acceptor_.local_endpoint(), ignored);
    thread_.join();
  }
  int port() const { return acceptor_.local_endpoint().port(); }
  int requests() const { return requests_.load(); }
  std::string last_request() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_request_;
  }

 private:
  void Serve() {
    while (!stop_) {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket socket(io_);
      acceptor_.accept(socket, ec);
      if (ec || stop_) return;
      std::string request;
      boost::asio::read_until(socket, boost::asio::dynamic_buffer(request), "\r\n\r\n", ec);
      if (ec) continue;  // a connection without a request (tern-load's reachability probe)
      const size_t length_at = request.find("Content-Length: ");
      const size_t body_at = request.find("\r\n\r\n") + 4;
      const size_t length = length_at == std::string::npos ? 0 : std::stoul(request.substr(length_at + 16));
      while (request.size() < body_at + length && !ec) {
        char buffer[4096];
        const size_t n = socket.read_some(boost::asio::buffer(buffer), ec);
        request.append(buffer, n);
      }
      ++requests_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        last_request_ = request;
      }
      if (request.find("\"model\":\"busy\"") != std::string::npos) {
        const std::string body = R"({"error": {"message": "queue full", "type": "rate_limit_error"}})";
        Write(socket, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
        continue;
      }
      Write(socket, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
      const std::vector<std::string> pieces = {
          ": a comment\r\n\r\n",
          "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n",
          "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata: {\"choi",
          "ces\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\r\n\r\n",
          "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"},\"finish_reason\":\"stop\"}]}\n\n",
          "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3}}\n\n",
          "data: [DONE]\n\n"};
      for (const std::string& piece : pieces) {
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        Write(socket, piece);
      }
    }
  }
  static void Write(boost::asio::ip::tcp::socket& socket, const std::string& bytes) {
    boost::system::error_code ec;
    boost::asio::write(socket, boost::asio::buffer(bytes), ec);
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::string last_request_;
};

TEST(OpenAiRunnerTest, DrivesAnOpenAiServerAndReadsItsStream) {
  FakeOpenAiServer server;
  bool help = false;
  auto options = ParseLoadOptions({"--api", "openai", "--target", "http://127.0.0.1:" + std::to_string(server.port()),
                                   "--model", "m", "--concurrency", "1", "--requests", "3", "--prompts", "p.txt",
                                   "--api-key", "sk-test-1234", "--max-tokens", "3"},
                                  &help);
  ASSERT_TRUE(options.ok()) << options.status();
  auto runner = LoadRunner::Create(*options, {"Hello"}, std::chrono::seconds(5));
  ASSERT_TRUE(runner.ok()) << runner.status();
  const RunResult result = (*runner)->Run(RunHooks());
  ASSERT_EQ(result.traces.size(), 3u);
  for (const RequestTrace& trace : result.traces) {
    EXPECT_EQ(trace.status_code, 0) << trace.status_message;
    EXPECT_EQ(trace.token_chunk_times.size(), 3u);
    EXPECT_EQ(trace.usage_completion_tokens, 3);
    EXPECT_EQ(trace.finish_reason, 1);
  }
  EXPECT_EQ(server.requests(), 3);
  const std::string request = server.last_request();
  EXPECT_NE(request.find("POST /v1/chat/completions HTTP/1.1"), std::string::npos) << request;
  EXPECT_NE(request.find("Authorization: Bearer sk-test-1234"), std::string::npos) << request;
  EXPECT_NE(request.find("\"stream\":true"), std::string::npos) << request;
}

TEST(OpenAiRunnerTest, HttpErrorsFailRequestsWithTheServersMessage) {
  FakeOpenAiServer server;
  bool help = false;
  auto options = ParseLoadOptions({"--api", "openai", "--target", "http://127.0.0.1:" + std::to_string(server.port()),
                                   "--model", "busy", "--concurrency", "1", "--requests", "2", "--prompts", "p.txt"},
                                  &help);
  ASSERT_TRUE(options.ok()) << options.status();
  auto runner = LoadRunner::Create(*options, {"Hello"}, std::chrono::seconds(5));
  ASSERT_TRUE(runner.ok()) << runner.status();
  const RunResult result = (*runner)->Run(RunHooks());
  ASSERT_EQ(result.traces.size(), 2u);
  for (const RequestTrace& trace : result.traces) {
    EXPECT_EQ(trace.status_code, 8);  // RESOURCE_EXHAUSTED
    EXPECT_EQ(trace.status_message, "HTTP 429: queue full");
  }
}

TEST(OpenAiRunnerTest, UnreachableTargetIsUnavailable) {
  bool help = false;
  // A port nothing listens on: bind one, note it, close it.
  int port = 0;
  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    port = acceptor.local_endpoint().port();
  }
  auto options = ParseLoadOptions({"--api", "openai", "--target", "http://127.0.0.1:" + std::to_string(port),
                                   "--model", "m", "--rate", "1", "--requests", "1", "--prompts", "p.txt"},
                                  &help);
  ASSERT_TRUE(options.ok()) << options.status();
  auto runner = LoadRunner::Create(*options, {"Hello"}, std::chrono::seconds(2));
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kUnavailable);
}

TEST(OpenAiOptionsTest, FlagsThatNeedTheOtherApiAreRefused) {
  bool help = false;
  const std::vector<std::string> base = {"--model", "m", "--rate", "1", "--requests", "1", "--prompts", "p.txt"};
  const auto parse = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return ParseLoadOptions(args, &help).status();
  };
  EXPECT_EQ(parse({"--api", "rest"}).message(), "--api: expected grpc or openai, got \"rest\"");
  EXPECT_EQ(parse({"--api", "openai", "--target", "127.0.0.1:8000"}).message(),
            "--target: with --api openai, give the server's http://HOST:PORT, got \"127.0.0.1:8000\"");
  EXPECT_EQ(parse({"--target", "http://127.0.0.1:8000"}).message(),
            "--target: with --api grpc, give HOST:PORT (an http:// URL needs --api openai)");
  EXPECT_EQ(parse({"--api", "openai", "--connections", "4"}).message(),
            "--connections: applies to --api grpc (with --api openai each request has its own connection)");
  EXPECT_TRUE(parse({"--api", "grpc"}).ok());
}

}  // namespace
}  // namespace tern::loadtest
