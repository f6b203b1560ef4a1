// The OpenAI-compatible HTTP API of the real ternd on the demo LLM (and the
// demo DiT beside it for /v1/images/generations), over loopback: the
// official OpenAI Node client (tests/e2e/openai_client_test.mjs;
// skipped where node or the npm package is absent), curl's view of the SSE
// framing, and what only a raw socket can do: a client that goes away
// cancels its request, size limits, malformed HTTP, a full queue, and the
// same rule answering on gRPC and HTTP.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tern/v1/diffusion.grpc.pb.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"
#include "tests/raw_http_client.h"

namespace tern::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

constexpr char kModel[] = "tern-demo-llm";
constexpr char kImageModel[] = "tern-demo-dit";
constexpr char kKey[] = "e2e-openai-key-0123";
constexpr char kBetaKey[] = "e2e-beta-key-4567";

std::string DemoModelDir() { return std::string(TERN_MODELS_DIR) + "/tern-demo-llm"; }
std::string DemoDitDir() { return std::string(TERN_MODELS_DIR) + "/tern-demo-dit"; }

// Standard base64 (RFC 4648, padded), as OpenAI's b64_json is written.
std::string Base64Decode(const std::string& text) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char ch : text) {
    if (ch == '=') break;
    const size_t value = alphabet.find(ch);
    if (value == std::string::npos) return "<not base64>";
    bits = (bits << 6) | static_cast<uint32_t>(value);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

// A PNG's width and height from its IHDR chunk (0x0 when it is not a PNG).
std::pair<uint32_t, uint32_t> PngSize(const std::string& png) {
  const std::string signature = "\x89PNG\r\n\x1a\n";
  if (png.size() < 24 || png.compare(0, 8, signature) != 0 || png.compare(12, 4, "IHDR") != 0) return {0, 0};
  const auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(png[at])) << 24) |
           (static_cast<uint32_t>(static_cast<uint8_t>(png[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(png[at + 2])) << 8) | static_cast<uint8_t>(png[at + 3]);
  };
  return {be32(16), be32(20)};
}

// The demo DiT's Sneakers as tern.v1 asks for them.
tern::v1::GenerateImageRequest GrpcSneakers() {
  tern::v1::GenerateImageRequest r;
  r.set_model(kImageModel);
  r.set_class_name("Sneaker");
  r.set_steps(4);
  r.set_guidance_scale(2.0f);
  r.set_sampler(tern::v1::SAMPLER_DPM_SOLVER_PP_2M);
  r.set_seed(1234);
  r.set_batch(2);
  return r;
}

// The same request in OpenAI's words, with tern's extras.
json OpenAiSneakers() {
  return {{"model", kImageModel}, {"class_name", "Sneaker"}, {"n", 2}, {"size", "32x32"},
          {"response_format", "b64_json"}, {"num_inference_steps", 4}, {"guidance_scale", 2.0},
          {"sampler", "dpm++2m"}, {"seed", 1234}};
}

// The PNGs gRPC GenerateImage streams for `request`, by index.
std::vector<std::string> GrpcImages(const DaemonProcess& daemon, const tern::v1::GenerateImageRequest& request,
                                    const std::string& key) {
  auto stub = tern::v1::Diffusion::NewStub(Connect(daemon));
  grpc::ClientContext context;
  Prepare(&context, {.api_key = key, .timeout = seconds(120)});
  auto reader = stub->GenerateImage(&context, request);
  std::vector<std::string> pngs(request.batch());
  tern::v1::GenerateImageResponse message;
  while (reader->Read(&message)) {
    if (message.has_image() && message.image().index() < request.batch()) {
      pngs[message.image().index()] = message.image().png();
    }
  }
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return pngs;
}

std::string Series(const std::string& name) { return name + "{model=\"" + kModel + "\"}"; }

struct Reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  json Json() const { return json::parse(body, nullptr, false); }
};

// One HTTP/1.1 request with Beast; the body of a streamed (chunked)
// response arrives de-chunked.
Reply Request(int port, http::verb method, const std::string& target, const std::string& body,
              const std::string& key = kKey, const std::map<std::string, std::string>& extra_headers = {}) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  Reply reply;
  boost::system::error_code ec;
  socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  if (ec) return reply;
  http::request<http::string_body> request{method, target, 11};
  request.set(http::field::host, "127.0.0.1");
  if (!key.empty()) request.set(http::field::authorization, "Bearer " + key);
  if (method == http::verb::post) request.set(http::field::content_type, "application/json");
  for (const auto& [name, value] : extra_headers) request.set(name, value);
  request.body() = body;
  request.prepare_payload();
  http::write(socket, request, ec);
  if (ec) return reply;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(socket, buffer, parser, ec);
  if (ec) return reply;
  reply.status = parser.get().result_int();
  reply.body = parser.get().body();
  for (const auto& field : parser.get()) {
    std::string name(field.name_string());
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    reply.headers[name] = std::string(field.value());
  }
  return reply;
}

Reply Post(int port, const std::string& target, const json& body, const std::string& key = kKey) {
  return Request(port, http::verb::post, target, body.dump(), key);
}

json Chat(const std::string& content, int max_tokens) {
  return {{"model", kModel},
          {"messages", json::array({{{"role", "user"}, {"content", content}}})},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}


bool HaveProgram(const std::string& name) {
  return RunProcess({"/usr/bin/env", "sh", "-c", "command -v " + name}, seconds(10)).exit_code == 0;
}

std::string NodeModulesDir() {
  const char* env = std::getenv("TERN_NODE_MODULES");
  return env != nullptr && *env != '\0' ? env : TERN_NODE_MODULES;
}

class OpenAiE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string config = dir_->Write("config.json", R"({
      "models": [{"name": "tern-demo-llm", "path": ")" + DemoModelDir() + R"(", "backend": "cpu"},
                 {"name": "tern-demo-dit", "path": ")" + DemoDitDir() + R"("}],
      "tenants": [{"name": "alpha", "apiKeys": [")" + std::string(kKey) + R"("]},
                  {"name": "beta", "apiKeys": [")" + std::string(kBetaKey) + R"("]}]
    })");
    daemon_ = new DaemonProcess(StartOrDie({"--config", config}));
  }
  static void TearDownTestSuite() {
    delete daemon_;
    delete dir_;
  }
  static int port() { return daemon_->http_port(); }

  static TempDir* dir_;
  static DaemonProcess* daemon_;
};

TempDir* OpenAiE2eTest::dir_ = nullptr;
DaemonProcess* OpenAiE2eTest::daemon_ = nullptr;

TEST_F(OpenAiE2eTest, OfficialNodeClient) {
  if (!HaveProgram("node")) GTEST_SKIP() << "node is not installed";
  const std::string modules = NodeModulesDir();
  if (!std::filesystem::exists(modules + "/openai/package.json")) {
    GTEST_SKIP() << "the npm package openai is not in " << modules << " (tools/dev/install_deps.sh installs it)";
  }
  // gRPC's images for the same request, which client.images.generate must get byte for byte.
  const std::vector<std::string> pngs = GrpcImages(*daemon_, GrpcSneakers(), kKey);
  std::string expected;
  for (size_t i = 0; i < pngs.size(); ++i) {
    expected += (i > 0 ? "," : "") + dir_->Write("grpc-sneaker-" + std::to_string(i) + ".png", pngs[i]);
  }
  const ProcessResult run =
      RunProcess({"/usr/bin/env", "node", std::string(TERN_E2E_DIR) + "/openai_client_test.mjs", "--base-url",
                  "http://127.0.0.1:" + std::to_string(port()) + "/v1", "--api-key", kKey, "--model", kModel,
                  "--image-model", kImageModel, "--image-pngs", expected, "--modules", modules},
                 seconds(240));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("all checks passed"), std::string::npos) << run.output;
}

// curl sees the wire: "data: {json}\n\n" events, the last one "data: [DONE]".
TEST_F(OpenAiE2eTest, CurlSeesServerSentEvents) {
  if (!HaveProgram("curl")) GTEST_SKIP() << "curl is not installed";
  json body = Chat("Tell me about ships.", 8);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  const ProcessResult run = RunProcess(
      {"/usr/bin/env", "curl", "-sS", "-N", "-D", "-", "--max-time", "60", "-H", "Authorization: Bearer " + std::string(kKey),
       "-H", "Content-Type: application/json", "-d", body.dump(),
       "http://127.0.0.1:" + std::to_string(port()) + "/v1/chat/completions"},
      seconds(90));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const size_t head_end = run.output.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << run.output;
  const std::string head = run.output.substr(0, head_end);
  EXPECT_NE(head.find("HTTP/1.1 200 OK"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Type: text/event-stream"), std::string::npos) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
  EXPECT_NE(head.find("x-request-id: "), std::string::npos) << head;
  const std::string stream = run.output.substr(head_end + 4);
  ASSERT_GE(stream.size(), 14u);
  EXPECT_EQ(stream.substr(stream.size() - 14), "data: [DONE]\n\n") << stream;
  size_t pos = 0;
  int events = 0;
  bool usage = false;
  while (pos < stream.size()) {
    const size_t end = stream.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos) << stream.substr(pos);
    const std::string event = stream.substr(pos, end - pos);
    ASSERT_EQ(event.rfind("data: ", 0), 0u) << event;
    EXPECT_EQ(event.find('\n'), std::string::npos) << "one line per event: " << event;
    const std::string data = event.substr(6);
    if (data != "[DONE]") {
      const json chunk = json::parse(data, nullptr, false);
      ASSERT_FALSE(chunk.is_discarded()) << data;
      EXPECT_EQ(chunk["object"], "chat.completion.chunk");
      if (chunk["choices"].empty()) usage = chunk["usage"]["completion_tokens"].get<int>() > 0;
      ++events;
    }
    pos = end + 2;
  }
  EXPECT_GE(events, 3);
  EXPECT_TRUE(usage);
}

TEST_F(OpenAiE2eTest, NonStreamedChatCompletionAndModels) {
  const Reply chat = Post(port(), "/v1/chat/completions", Chat("Hello", 6));
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(chat.headers.at("content-type"), "application/json");
  const json object = chat.Json();
  EXPECT_EQ(object["object"], "chat.completion");
  EXPECT_EQ(object["id"], "chatcmpl-" + chat.headers.at("x-request-id"));
  EXPECT_LE(object["usage"]["completion_tokens"].get<int>(), 6);

  const Reply models = Request(port(), http::verb::get, "/v1/models", "");
  ASSERT_EQ(models.status, 200) << models.body;
  // By name: the demo DiT, then the demo LLM.
  ASSERT_EQ(models.Json()["data"].size(), 2u) << models.body;
  EXPECT_EQ(models.Json()["data"][0]["id"], kImageModel);
  EXPECT_EQ(models.Json()["data"][1]["id"], kModel);
  EXPECT_EQ(models.Json()["data"][1]["max_model_len"], 2048);
  EXPECT_EQ(Request(port(), http::verb::get, "/v1/models/tern-demo-llm", "").status, 200);
  EXPECT_EQ(Request(port(), http::verb::get, "/v1/models/nope", "").status, 404);
  // The client's x-request-id names the request.
  const Reply named = Request(port(), http::verb::post, "/v1/completions",
                              json{{"model", kModel}, {"prompt", "Hi"}, {"max_tokens", 2}}.dump(), kKey,
                              {{"x-request-id", "my-request-7"}});
  ASSERT_EQ(named.status, 200) << named.body;
  EXPECT_EQ(named.Json()["id"], "cmpl-my-request-7");
  EXPECT_EQ(named.headers.at("x-request-id"), "my-request-7");
  const Reply listed = Request(port(), http::verb::get, "/v1/models", "", "");
  EXPECT_EQ(listed.status, 401);
  EXPECT_EQ(listed.Json()["error"]["type"], "authentication_error");
  EXPECT_EQ(listed.headers.at("www-authenticate"), "Bearer");
}

// POST /v1/images/generations runs the same front and diffusion engine as
// gRPC GenerateImage: the same seed gives the same PNG bytes; errors are
// OpenAI error objects naming the OpenAI parameter.
TEST_F(OpenAiE2eTest, ImagesAreGrpcsImagesAsBase64Pngs) {
  const std::vector<std::string> grpc_pngs = GrpcImages(*daemon_, GrpcSneakers(), kKey);
  const Reply reply = Post(port(), "/v1/images/generations", OpenAiSneakers());
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.headers.at("content-type"), "application/json");
  const json body = reply.Json();
  EXPECT_GT(body["created"].get<int64_t>(), 0);
  EXPECT_EQ(body["size"], "32x32");
  EXPECT_EQ(body["output_format"], "png");
  EXPECT_EQ(body["tern"]["seeds"], json::array({1234, 1235}));
  ASSERT_EQ(body["data"].size(), 2u) << reply.body;
  for (size_t i = 0; i < 2; ++i) {
    const std::string png = Base64Decode(body["data"][i]["b64_json"].get<std::string>());
    EXPECT_EQ(PngSize(png), std::make_pair(32u, 32u)) << "image " << i;
    EXPECT_EQ(png, grpc_pngs[i]) << "image " << i << " differs from gRPC's for the same seed";
  }
  // "auto" is the model's size; one image by default.
  json one = OpenAiSneakers();
  one["size"] = "auto";
  one.erase("n");
  const Reply single = Post(port(), "/v1/images/generations", one);
  ASSERT_EQ(single.status, 200) << single.body;
  ASSERT_EQ(single.Json()["data"].size(), 1u);
  EXPECT_EQ(Base64Decode(single.Json()["data"][0]["b64_json"].get<std::string>()), grpc_pngs[0]);
  EXPECT_GE(ScrapeMetric(*daemon_, R"(tern_http_requests_total{code="200",route="/v1/images/generations"})")
                .value_or(0), 2);
  EXPECT_GE(ScrapeMetric(*daemon_, R"(tern_diffusion_images_total{model="tern-demo-dit",tenant="alpha"})")
                .value_or(0), 5);

  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    int status;
    const char* param;
  };
  const std::vector<Case> cases = {
      {"a size the model does not make", [](json& r) { r["size"] = "64x64"; }, 400, "size"},
      {"a size that is not WxH", [](json& r) { r["size"] = "large"; }, 400, "size"},
      {"images by URL", [](json& r) { r["response_format"] = "url"; }, 400, "response_format"},
      {"too many images", [](json& r) { r["n"] = 17; }, 400, "n"},
      {"no images", [](json& r) { r["n"] = 0; }, 400, "n"},
      {"steps past the model's", [](json& r) { r["num_inference_steps"] = 5000; }, 400, "num_inference_steps"},
      {"a text prompt for a class-conditional model",
       [](json& r) { r.erase("class_name"); r["prompt"] = "a sneaker"; }, 400, "prompt"},
      {"no prompt", [](json& r) { r.erase("class_name"); }, 400, "prompt"},
      {"a class the model lacks", [](json& r) { r["class_name"] = "Hat"; }, 400, "class_name"},
      {"a language model", [](json& r) { r["model"] = kModel; }, 400, "model"},
      {"an unknown model", [](json& r) { r["model"] = "nope"; }, 404, "model"},
      {"a field tern's models take none of", [](json& r) { r["style"] = "vivid"; }, 400, "style"},
      {"a misspelt extra", [](json& r) { r["num_inference_step"] = 4; }, 400, "num_inference_step"},
  };
  for (const Case& c : cases) {
    json request = OpenAiSneakers();
    c.edit(request);
    const Reply bad = Post(port(), "/v1/images/generations", request);
    EXPECT_EQ(bad.status, c.status) << c.what << ": " << bad.body;
    EXPECT_EQ(bad.Json()["error"]["param"], c.param) << c.what << ": " << bad.body;
    EXPECT_TRUE(bad.Json()["error"]["message"].is_string()) << c.what;
  }
  const Reply anonymous = Post(port(), "/v1/images/generations", OpenAiSneakers(), "");
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
}

// One rule, two transports: the front's validation answers gRPC with
// INVALID_ARGUMENT naming the tern.v1 field, HTTP with 400 naming the OpenAI
// parameter; the HTTP metrics count by route and status.
TEST_F(OpenAiE2eTest, SameRuleOnGrpcAndHttp) {
  auto stub = tern::v1::Llm::NewStub(Connect(*daemon_));
  tern::v1::ChatRequest request;
  request.set_model(kModel);
  auto* message = request.add_messages();
  message->set_role("user");
  message->set_content("Hi");
  request.mutable_sampling()->set_temperature(101);
  const StreamResult grpc_result = StreamChat(*stub, request, {.api_key = kKey});
  EXPECT_EQ(grpc_result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(grpc_result.status.error_message(), "sampling.temperature: 101 is not in [0, 100]");

  json body = Chat("Hi", 4);
  body["temperature"] = 101;
  const Reply http_result = Post(port(), "/v1/chat/completions", body);
  EXPECT_EQ(http_result.status, 400);
  EXPECT_EQ(http_result.Json(), json::parse(R"({"error": {"message": "temperature: 101 is not in [0, 100]",
      "type": "invalid_request_error", "param": "temperature", "code": "invalid_argument"}})"));
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ScrapeMetric(*daemon_, R"(tern_http_requests_total{code="400",route="/v1/chat/completions"})")
                   .value_or(0) >= 1;
      },
      seconds(5)));
}

TEST_F(OpenAiE2eTest, TransportErrorsAreOpenAiErrors) {
  const Reply malformed = Request(port(), http::verb::post, "/v1/chat/completions", "{\"model\": ");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(malformed.Json()["error"]["message"].get<std::string>().rfind(
                "the request body is not valid JSON: parse error at line 1, column 11", 0),
            0u)
      << malformed.body;
  const Reply unknown_route = Request(port(), http::verb::post, "/v1/embeddings", "{}");
  EXPECT_EQ(unknown_route.status, 404);
  EXPECT_EQ(unknown_route.Json()["error"]["type"], "not_found_error");
  const Reply wrong_method = Request(port(), http::verb::get, "/v1/chat/completions", "");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers.at("allow"), "POST");

  // A body over 8 MiB is refused from its Content-Length, before it is sent.
  RawHttpClient big(port());
  big.Send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n");
  const std::string refused = big.ReadUntil("}}", seconds(20));
  EXPECT_NE(refused.find("HTTP/1.1 413"), std::string::npos) << refused;
  EXPECT_NE(refused.find("\"code\":\"request_too_large\""), std::string::npos) << refused;

  RawHttpClient headers(port());
  headers.Send("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(20000, 'p') + "\r\n\r\n");
  EXPECT_NE(headers.ReadUntil("}}", seconds(20)).find("HTTP/1.1 431"), std::string::npos);
}

// A client that closes its connection, streamed or not, has its request
// cancelled in the engine: it stops generating within a step or so.
TEST_F(OpenAiE2eTest, ClientThatGoesAwayCancelsItsRequest) {
  const auto aborted = [&] {
    return ScrapeMetric(*daemon_, R"(tern_request_finished_total{model="tern-demo-llm",outcome="abort",tenant="alpha"})")
        .value_or(0);
  };
  const double before = aborted();
  json body = Chat("Write a very long story about the sea.", 1800);
  body["ignore_eos"] = true;
  {
    json streamed = body;
    streamed["stream"] = true;
    RawHttpClient client(port());
    client.SendPost("/v1/chat/completions", streamed.dump(), std::string(kKey));
    ASSERT_NE(client.ReadUntil("data: {", seconds(20)).find("data: {"), std::string::npos);
    client.Close();
  }
  EXPECT_TRUE(WaitUntil([&] { return aborted() >= before + 1; }, seconds(10)));
  {
    RawHttpClient client(port());
    client.SendPost("/v1/completions", json{{"model", kModel}, {"prompt", "The sea"}, {"max_tokens", 1800},
                                             {"ignore_eos", true}}.dump(), std::string(kKey));
    ASSERT_TRUE(WaitUntil([&] { return ScrapeMetric(*daemon_, Series("tern_num_requests_running")) == 1.0; },
                          seconds(10)));
    client.Close();
  }
  EXPECT_TRUE(WaitUntil([&] { return aborted() >= before + 2; }, seconds(10)));
  EXPECT_TRUE(WaitUntil([&] { return ScrapeMetric(*daemon_, Series("tern_num_requests_running")) == 0.0; },
                        seconds(10)));
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ScrapeMetric(*daemon_, R"(tern_http_requests_total{code="499",route="/v1/chat/completions"})")
                   .value_or(0) >= 1;
      },
      seconds(5)));
}

// Request ids are the client's, so two tenants may pick the same one: ternd
// keys requests by (tenant, id). While alpha's request "shared" streams over
// gRPC, beta uses "shared" over HTTP and gRPC (accepted: no 409 or
// ALREADY_EXISTS that would tell beta alpha's request exists), and beta's
// client going away cancels only beta's request; alpha's own second
// "shared" is a conflict, and its rejected call cancels nothing. alpha's
// stream ends with exactly the tokens of a fault-free greedy run. Then
// /metrics and the log name both tenants and never a key.
TEST_F(OpenAiE2eTest, TenantsCannotCollideWithCancelOrObserveEachOthersRequests) {
  auto stub = tern::v1::Llm::NewStub(Connect(*daemon_));
  tern::v1::GenerateRequest request;
  request.set_model(kModel);
  request.set_text("The history of the sea");
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_max_tokens(160);
  request.mutable_sampling()->set_ignore_eos(true);
  request.set_request_id("shared");
  const auto abort_count = [&](const std::string& tenant) {
    return ScrapeMetric(*daemon_, R"(tern_request_finished_total{model="tern-demo-llm",outcome="abort",tenant=")" +
                                      tenant + R"("})")
        .value_or(0);
  };
  const double beta_aborts = abort_count("beta"), alpha_aborts = abort_count("alpha");

  grpc::ClientContext alpha_context;
  Prepare(&alpha_context, {.api_key = kKey, .timeout = seconds(300)});
  auto alpha_reader = stub->Generate(&alpha_context, request);
  std::atomic<int> alpha_chunks{0};
  StreamResult alpha;
  std::thread alpha_thread([&] {
    alpha = ReadStream(alpha_reader.get(), [&](const tern::v1::GenerateResponse&) { ++alpha_chunks; });
  });
  ASSERT_TRUE(WaitUntil([&] { return alpha_chunks > 0; }, seconds(20)));

  // alpha's own id again: 409 over HTTP (streamed or not), ALREADY_EXISTS over gRPC.
  json again = {{"model", kModel}, {"prompt", "Hi"}, {"max_tokens", 2}};
  EXPECT_EQ(Request(port(), http::verb::post, "/v1/completions", again.dump(), kKey, {{"x-request-id", "shared"}}).status,
            409);
  again["stream"] = true;
  EXPECT_EQ(Request(port(), http::verb::post, "/v1/completions", again.dump(), kKey, {{"x-request-id", "shared"}}).status,
            409);
  tern::v1::GenerateRequest short_request = request;
  short_request.mutable_sampling()->set_max_tokens(2);
  EXPECT_EQ(Stream(*stub, short_request, {.api_key = kKey}).status.error_code(), grpc::StatusCode::ALREADY_EXISTS);

  // beta's "shared" streams over HTTP; its client walks away mid-stream.
  {
    RawHttpClient client(port());
    client.Send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kBetaKey) +
                "\r\nx-request-id: shared\r\nContent-Type: application/json\r\nContent-Length: ");
    const std::string body = json{{"model", kModel}, {"prompt", "The sea"}, {"max_tokens", 1800},
                                  {"ignore_eos", true}, {"stream", true}}.dump();
    client.Send(std::to_string(body.size()) + "\r\n\r\n" + body);
    const std::string head = client.ReadUntil("data: {", seconds(20));
    ASSERT_NE(head.find("HTTP/1.1 200"), std::string::npos) << head;
    client.Close();
  }
  EXPECT_TRUE(WaitUntil([&] { return abort_count("beta") >= beta_aborts + 1; }, seconds(10)));
  // beta's "shared" over gRPC, while alpha's still runs.
  EXPECT_GT(alpha_chunks, 0);
  const StreamResult beta = Stream(*stub, short_request, {.api_key = kBetaKey});
  EXPECT_TRUE(beta.status.ok()) << beta.status.error_message();
  EXPECT_EQ(beta.tokens, 2);
  for (const std::string& id : beta.request_ids) EXPECT_EQ(id, "shared");

  alpha_thread.join();
  ASSERT_TRUE(alpha.status.ok()) << alpha.status.error_message();
  EXPECT_EQ(abort_count("alpha"), alpha_aborts) << "nothing of beta's reached alpha's request";
  // The reference: the same request alone, with no fault around it.
  request.set_request_id("reference");
  const StreamResult reference = Stream(*stub, request, {.api_key = kKey, .timeout = seconds(300)});
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();
  ASSERT_EQ(reference.choices.at(0).token_ids.size(), 160u);
  EXPECT_EQ(alpha.choices.at(0).token_ids, reference.choices.at(0).token_ids) << "tokens lost or duplicated";

  // Metrics carry tenant names, never a key; nor does the log.
  const HttpReply scrape = HttpGet(port(), "/metrics");
  ASSERT_EQ(scrape.status, 200);
  EXPECT_NE(scrape.body.find(R"(tenant="alpha")"), std::string::npos);
  EXPECT_NE(scrape.body.find(R"(tenant="beta")"), std::string::npos);
  EXPECT_EQ(scrape.body.find(kKey), std::string::npos);
  EXPECT_EQ(scrape.body.find(kBetaKey), std::string::npos);
  const std::string log = daemon_->Output();
  EXPECT_NE(log.find("tenant=beta"), std::string::npos);
  EXPECT_EQ(log.find(kKey), std::string::npos);
  EXPECT_EQ(log.find(kBetaKey), std::string::npos);
}

// The prefix cache is salted by tenant: a prompt alpha has sent is a cache
// hit for alpha's next request and a miss for beta's, whose own copy then
// serves beta. Seen over the wire as OpenAI's usage.prompt_tokens_details.
TEST_F(OpenAiE2eTest, PrefixCacheHitsStayInsideTheirTenant) {
  std::string prompt = "Tenant probe 7f3a: ";
  for (int i = 0; i < 24; ++i) prompt += "the tide came in over the harbour wall and the boats rose with it. ";
  const json body = {{"model", kModel}, {"prompt", prompt}, {"max_tokens", 1}, {"temperature", 0}};
  const auto cached_tokens = [&](const char* key) {
    const Reply reply = Request(port(), http::verb::post, "/v1/completions", body.dump(), key);
    EXPECT_EQ(reply.status, 200) << reply.body;
    const json usage = reply.Json().value("usage", json::object());
    EXPECT_GT(usage.value("prompt_tokens", 0), 200) << reply.body;
    return usage.value("prompt_tokens_details", json::object()).value("cached_tokens", -1);
  };
  EXPECT_EQ(cached_tokens(kKey), 0) << "alpha's first sight of the prompt";
  const int alpha_again = cached_tokens(kKey);
  EXPECT_GT(alpha_again, 200) << "alpha's own blocks are reused";
  EXPECT_EQ(cached_tokens(kBetaKey), 0) << "beta must not hit alpha's blocks";
  EXPECT_EQ(cached_tokens(kBetaKey), alpha_again) << "beta's own copy serves beta";
}

// A full queue is 429, as OpenAI answers a rate limit.
TEST(OpenAiLimitsE2eTest, FullQueueIs429) {
  TempDir dir;
  const std::string config = dir.Write("config.json", R"({
    "models": [{"name": "tern-demo-llm", "path": ")" + DemoModelDir() + R"(", "backend": "cpu", "maxNumSeqs": 1}],
    "limits": {"maxQueuedRequests": 1}
  })");
  DaemonProcess daemon = StartOrDie({"--config", config});
  json body = Chat("Write a very long story about the sea.", 1800);
  body["ignore_eos"] = true;
  body["stream"] = true;
  RawHttpClient running(daemon.http_port());
  running.SendPost("/v1/chat/completions", body.dump(), std::string(kKey));
  ASSERT_NE(running.ReadUntil("data: {", seconds(20)).find("data: {"), std::string::npos);
  RawHttpClient waiting(daemon.http_port());
  waiting.SendPost("/v1/chat/completions", body.dump(), std::string(kKey));
  ASSERT_TRUE(WaitUntil([&] { return ScrapeMetric(daemon, Series("tern_num_requests_waiting")) == 1.0; }, seconds(10)));
  const Reply refused = Post(daemon.http_port(), "/v1/chat/completions", Chat("Hi", 4), "");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.Json()["error"]["type"], "rate_limit_error");
  running.Close();
  waiting.Close();
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ScrapeMetric(daemon, Series("tern_num_requests_running")) == 0.0 &&
               ScrapeMetric(daemon, Series("tern_num_requests_waiting")) == 0.0;
      },
      seconds(10)));
}

}  // namespace
}  // namespace tern::testing
