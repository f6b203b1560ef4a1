#include "server/http/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/write.hpp"
#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/raw_http_client.h"

namespace tern::server {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Records what a handler answered through the exchange.
class RecordingExchange final : public HttpExchange {
 public:
  void Respond(HttpResponse response) override { responses.push_back(std::move(response)); }
  void StartStream(HttpResponse head) override { responses.push_back(std::move(head)); }
  void Write(std::string data, std::function<void(bool ok)> done) override {
    written += data;
    if (done) done(true);
  }
  void EndStream() override {}
  void OnClientGone(std::function<void()>) override {}
  void Post(std::function<void()> task) override { task(); }

  std::vector<HttpResponse> responses;
  std::string written;
};

HttpResponse DispatchOnce(const HttpRouter& router, HttpRequest request) {
  auto exchange = std::make_shared<RecordingExchange>();
  router.Dispatch(request, exchange);
  EXPECT_EQ(exchange->responses.size(), 1u);
  return exchange->responses.empty() ? HttpResponse{} : exchange->responses[0];
}

HttpRequest Request(std::string method, std::string path, std::string query = "") {
  HttpRequest request;
  request.method = std::move(method);
  request.path = std::move(path);
  request.query = std::move(query);
  return request;
}


std::unique_ptr<HttpServer> StartServer(HttpRouter router, HttpServer::Options options = {}) {
  options.host = "127.0.0.1";
  options.port = 0;
  auto server = HttpServer::Start(options, std::move(router));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(HttpRouterTest, DispatchesByPathAndMethod) {
  HttpRouter router;
  router.Handle("GET", "/a", [](const HttpRequest& r) { return HttpResponse{200, "text/plain", "a:" + r.query, {}}; });
  EXPECT_EQ(DispatchOnce(router, Request("GET", "/a", "x=1")).body, "a:x=1");
  EXPECT_EQ(DispatchOnce(router, Request("HEAD", "/a")).status, 200);
  const HttpResponse wrong_method = DispatchOnce(router, Request("POST", "/a"));
  EXPECT_EQ(wrong_method.status, 405);
  ASSERT_EQ(wrong_method.headers.size(), 1u);
  EXPECT_EQ(wrong_method.headers[0].first, "Allow");
  EXPECT_EQ(wrong_method.headers[0].second, "GET");
  EXPECT_EQ(DispatchOnce(router, Request("GET", "/b")).status, 404);
}

TEST(HttpRouterTest, PrefixRoutesAndErrorResponder) {
  HttpRouter router;
  router.HandlePrefix("GET", "/v1/models/", [](const HttpRequest& r, std::shared_ptr<HttpExchange> exchange) {
    exchange->Respond({200, "text/plain", "model " + r.path.substr(11), {}});
  });
  router.HandleAsync("GET", "/v1/models", [](const HttpRequest&, std::shared_ptr<HttpExchange> exchange) {
    exchange->Respond({200, "text/plain", "list", {}});
  });
  router.SetErrorResponder(
      [](int status, const std::string& message) { return HttpResponse{status, "application/json", "E:" + message, {}}; });
  EXPECT_EQ(DispatchOnce(router, Request("GET", "/v1/models")).body, "list");
  EXPECT_EQ(DispatchOnce(router, Request("GET", "/v1/models/a/b")).body, "model a/b");
  const HttpResponse missing = DispatchOnce(router, Request("GET", "/v2"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, "E:no route for GET /v2");
  EXPECT_EQ(missing.content_type, "application/json");
  EXPECT_TRUE(router.Knows("/v1/models/x"));
  EXPECT_FALSE(router.Knows("/v1/other"));
}

TEST(HttpServerTest, ServesOverLoopbackAndStops) {
  HttpRouter router;
  router.Handle("GET", "/ping", [](const HttpRequest&) { return HttpResponse{200, "text/plain", "pong", {}}; });
  auto server = StartServer(std::move(router));
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);
  for (int i = 0; i < 3; ++i) {
    const auto reply = tern::testing::HttpGet(server->port(), "/ping?i=" + std::to_string(i));
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.body, "pong");
  }
  EXPECT_EQ(tern::testing::HttpGet(server->port(), "/missing").status, 404);
  server->Stop();
  server->Stop();  // idempotent
}

TEST(HttpServerTest, PortInUseIsAnError) {
  HttpServer::Options options;
  options.host = "127.0.0.1";
  options.port = 0;
  auto first = HttpServer::Start(options, HttpRouter{});
  ASSERT_TRUE(first.ok());
  options.port = (*first)->port();
  auto second = HttpServer::Start(options, HttpRouter{});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(std::to_string(options.port)), std::string::npos);
}

TEST(HttpServerTest, BadHostIsAnError) {
  HttpServer::Options options;
  options.host = "not-an-ip";
  EXPECT_EQ(HttpServer::Start(options, HttpRouter{}).status().code(), absl::StatusCode::kInvalidArgument);
}

// A streamed response from another thread: chunked framing, in order, each
// write reported once it is out, then the connection serves the next
// request (keep-alive).
TEST(HttpServerTest, StreamsChunksFromAnotherThreadThenKeepsTheConnection) {
  std::vector<std::thread> producers;
  std::mutex mu;
  HttpRouter router;
  std::atomic<int> written{0};
  router.HandleAsync("POST", "/stream", [&](const HttpRequest& request, std::shared_ptr<HttpExchange> exchange) {
    std::lock_guard<std::mutex> lock(mu);
    producers.emplace_back([exchange, &written, body = request.body] {
      exchange->StartStream({200, "text/event-stream", "", {{"Cache-Control", "no-cache"}}});
      for (int i = 0; i < 3; ++i) {
        std::promise<bool> done;
        exchange->Write("data: " + body + std::to_string(i) + "\n\n", [&](bool ok) { done.set_value(ok); });
        if (done.get_future().get()) ++written;
      }
      exchange->EndStream();
    });
  });
  router.Handle("GET", "/ping", [](const HttpRequest&) { return HttpResponse{200, "text/plain", "pong", {}}; });
  auto server = StartServer(std::move(router));
  ASSERT_NE(server, nullptr);
  tern::testing::RawHttpClient client(server->port());
  client.Send("POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  const std::string streamed = client.ReadUntil("0\r\n\r\n");
  EXPECT_NE(streamed.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << streamed;
  EXPECT_NE(streamed.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << streamed;
  EXPECT_NE(streamed.find("Content-Type: text/event-stream\r\n"), std::string::npos) << streamed;
  EXPECT_NE(streamed.find("Cache-Control: no-cache\r\n"), std::string::npos) << streamed;
  const size_t body = streamed.find("\r\n\r\n") + 4;
  EXPECT_EQ(streamed.substr(body), "b\r\ndata: hi0\n\n\r\nb\r\ndata: hi1\n\n\r\nb\r\ndata: hi2\n\n\r\n0\r\n\r\n");
  EXPECT_EQ(written.load(), 3);
  client.Send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(client.ReadUntil("pong").find("pong"), std::string::npos);
  server->Stop();
  for (auto& producer : producers) producer.join();
}

// The client closes its connection while the handler is still working: the
// server tells the handler, and later writes fail instead of piling up.
TEST(HttpServerTest, ClientThatGoesAwayIsReportedAndWritesFail) {
  std::promise<void> gone;
  std::promise<std::shared_ptr<HttpExchange>> held;
  HttpRouter router;
  router.HandleAsync("POST", "/slow", [&](const HttpRequest&, std::shared_ptr<HttpExchange> exchange) {
    exchange->OnClientGone([&] { gone.set_value(); });
    held.set_value(exchange);  // answered later, never here
  });
  auto server = StartServer(std::move(router));
  ASSERT_NE(server, nullptr);
  {
    tern::testing::RawHttpClient client(server->port());
    client.Send("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    std::shared_ptr<HttpExchange> exchange = held.get_future().get();
    EXPECT_EQ(server->active_responses(), 1);
    client.Close();
    ASSERT_EQ(gone.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
    exchange->StartStream({200, "text/event-stream", "", {}});
    std::promise<bool> done;
    exchange->Write("data: late\n\n", [&](bool ok) { done.set_value(ok); });
    EXPECT_FALSE(done.get_future().get());
    exchange->EndStream();
  }
  for (int i = 0; i < 500 && server->active_responses() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server->active_responses(), 0);
}

TEST(HttpServerTest, LimitsAndMalformedRequestsGetTheErrorResponder) {
  HttpRouter router;
  router.Handle("POST", "/echo", [](const HttpRequest& r) { return HttpResponse{200, "text/plain", r.body, {}}; });
  router.SetErrorResponder([](int status, const std::string& message) {
    return HttpResponse{status, "application/json", "{\"error\":\"" + message + "\"}", {}};
  });
  HttpServer::Options options;
  options.max_body_bytes = 64;
  options.max_header_bytes = 1024;
  auto server = StartServer(std::move(router), options);
  ASSERT_NE(server, nullptr);
  {
    tern::testing::RawHttpClient client(server->port());
    client.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    const std::string reply = client.ReadUntil("}");
    EXPECT_NE(reply.find("HTTP/1.1 413"), std::string::npos) << reply;
    EXPECT_NE(reply.find("request body is larger than 64 bytes"), std::string::npos) << reply;
  }
  {
    tern::testing::RawHttpClient client(server->port());
    client.Send("POST /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
    const std::string reply = client.ReadUntil("}");
    EXPECT_NE(reply.find("HTTP/1.1 431"), std::string::npos) << reply;
  }
  {
    tern::testing::RawHttpClient client(server->port());
    client.Send("NOT HTTP AT ALL\r\n\r\n");
    const std::string reply = client.ReadUntil("}");
    EXPECT_NE(reply.find("HTTP/1.1 400"), std::string::npos) << reply;
  }
  {
    // Expect: 100-continue gets the interim response, then the answer.
    tern::testing::RawHttpClient client(server->port());
    client.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_NE(client.ReadUntil("100 Continue\r\n\r\n").find("HTTP/1.1 100 Continue"), std::string::npos);
    client.Send("hello");
    EXPECT_NE(client.ReadUntil("hello").find("\r\n\r\nhello"), std::string::npos);
  }
}

TEST(HttpServerTest, HandlerThatDropsItsExchangeAnswers500) {
  HttpRouter router;
  router.HandleAsync("GET", "/forgetful", [](const HttpRequest&, std::shared_ptr<HttpExchange>) {});
  auto server = StartServer(std::move(router));
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(tern::testing::HttpGet(server->port(), "/forgetful").status, 500);
}

TEST(HttpServerTest, StopWaitsForResponsesInProgress) {
  std::promise<std::shared_ptr<HttpExchange>> held;
  HttpRouter router;
  router.HandleAsync("GET", "/later", [&](const HttpRequest&, std::shared_ptr<HttpExchange> exchange) {
    held.set_value(exchange);
  });
  auto server = StartServer(std::move(router));
  ASSERT_NE(server, nullptr);
  auto reply = std::async(std::launch::async, [&] { return tern::testing::HttpGet(server->port(), "/later"); });
  std::shared_ptr<HttpExchange> exchange = held.get_future().get();
  std::thread answer([exchange] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    exchange->Respond({200, "text/plain", "done", {}});
  });
  server->Stop(absl::Seconds(5));
  answer.join();
  EXPECT_EQ(reply.get().body, "done");
}

}  // namespace
}  // namespace tern::server
