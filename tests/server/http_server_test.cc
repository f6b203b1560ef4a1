#include "server/http/http_server.h"

#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"

namespace tern::server {
namespace {

TEST(HttpRouterTest, DispatchesByPathAndMethod) {
  HttpRouter router;
  router.Handle("GET", "/a", [](const HttpRequest& r) { return HttpResponse{200, "text/plain", "a:" + r.query}; });
  EXPECT_EQ(router.Dispatch({"GET", "/a", "x=1", ""}).body, "a:x=1");
  EXPECT_EQ(router.Dispatch({"HEAD", "/a", "", ""}).status, 200);
  EXPECT_EQ(router.Dispatch({"POST", "/a", "", ""}).status, 405);
  EXPECT_EQ(router.Dispatch({"GET", "/b", "", ""}).status, 404);
}

TEST(HttpServerTest, ServesOverLoopbackAndStops) {
  HttpRouter router;
  router.Handle("GET", "/ping", [](const HttpRequest&) { return HttpResponse{200, "text/plain", "pong"}; });
  HttpServer::Options options;
  options.host = "127.0.0.1";
  options.port = 0;
  auto server = HttpServer::Start(options, std::move(router));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  for (int i = 0; i < 3; ++i) {
    const auto reply = tern::testing::HttpGet((*server)->port(), "/ping?i=" + std::to_string(i));
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.body, "pong");
  }
  EXPECT_EQ(tern::testing::HttpGet((*server)->port(), "/missing").status, 404);
  (*server)->Stop();
  (*server)->Stop();  // idempotent
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

}  // namespace
}  // namespace tern::server
