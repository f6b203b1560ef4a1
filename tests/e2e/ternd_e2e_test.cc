// End-to-end: the real ternd on loopback, spoken to over real sockets.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tern/v1/models.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {
namespace {

using std::chrono::seconds;

grpc::health::v1::HealthCheckResponse::ServingStatus CheckHealth(const DaemonProcess& daemon,
                                                                  const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(Connect(daemon));
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

TEST(TerndE2eTest, ReportsServingOverGrpcHealth) {
  DaemonProcess daemon = StartOrDie({});
  EXPECT_EQ(CheckHealth(daemon, ""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckHealth(daemon, "tern.v1.Llm"), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST(TerndE2eTest, ReflectionListsTernServices) {
  DaemonProcess daemon = StartOrDie({});
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(Connect(daemon));
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("*");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> names;
  for (const auto& service : response.list_services_response().service()) names.insert(service.name());
  EXPECT_TRUE(names.count("tern.v1.Llm"));
  EXPECT_TRUE(names.count("tern.v1.Models"));
  EXPECT_TRUE(names.count("tern.v1.Diffusion"));
  EXPECT_TRUE(names.count("grpc.health.v1.Health"));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST(TerndE2eTest, ListsNoModelsWhenNoneConfigured) {
  DaemonProcess daemon = StartOrDie({});
  auto stub = tern::v1::Models::NewStub(Connect(daemon));
  grpc::ClientContext context;
  SetDeadline(&context);
  tern::v1::ListModelsResponse response;
  ASSERT_TRUE(stub->ListModels(&context, {}, &response).ok());
  EXPECT_EQ(response.models_size(), 0);
}

TEST(TerndE2eTest, MetricsScrapePassesPromtool) {
  DaemonProcess daemon = StartOrDie({});
  // One call first, so per-RPC series exist in the scrape.
  EXPECT_EQ(CheckHealth(daemon, ""), grpc::health::v1::HealthCheckResponse::SERVING);
  {
    auto stub = tern::v1::Models::NewStub(Connect(daemon));
    grpc::ClientContext context;
    tern::v1::ListModelsResponse response;
    ASSERT_TRUE(stub->ListModels(&context, {}, &response).ok());
  }
  const HttpReply scrape = HttpGet(daemon.http_port(), "/metrics");
  ASSERT_EQ(scrape.status, 200);
  EXPECT_NE(scrape.body.find("tern_build_info{"), std::string::npos);
  EXPECT_NE(scrape.body.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_NE(scrape.body.find("tern_grpc_requests_total{code=\"OK\",method=\"/tern.v1.Models/ListModels\"} 1"),
            std::string::npos)
      << scrape.body;
  TempDir dir;
  const std::string path = dir.Write("scrape.txt", scrape.body);
  const ProcessResult promtool =
      RunProcess({"/bin/sh", "-c", "promtool check metrics < " + path}, seconds(30));
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output;
}

TEST(TerndE2eTest, HealthzAndReadyzAnswer) {
  DaemonProcess daemon = StartOrDie({});
  EXPECT_EQ(HttpGet(daemon.http_port(), "/healthz").status, 200);
  const HttpReply ready = HttpGet(daemon.http_port(), "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready\n");
  EXPECT_EQ(HttpGet(daemon.http_port(), "/nope").status, 404);
}

TEST(TerndE2eTest, AuthRejectsMissingAndUnknownKeysButKeepsHealthOpen) {
  TempDir dir;
  // team-b's key is "key-bbbbbbbb", given by its SHA-256 only.
  const std::string config = dir.Write("config.json", R"({
    "tenants": [{"name": "team-a", "apiKeys": ["key-aaaaaaaa"]},
                {"name": "team-b",
                 "apiKeySha256": ["8ad01026b2b2613b559ccb088e480e0d161365030085fb5cb060748451eb4c28"]}]
  })");
  DaemonProcess daemon = StartOrDie({"--config", config, "--log-level", "trace"});
  auto stub = tern::v1::Models::NewStub(Connect(daemon));
  {
    grpc::ClientContext context;
    tern::v1::ListModelsResponse response;
    const grpc::Status status = stub->ListModels(&context, {}, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_NE(status.error_message().find("authorization"), std::string::npos);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer wrong-key-000");
    tern::v1::ListModelsResponse response;
    EXPECT_EQ(stub->ListModels(&context, {}, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  for (const char* key : {"key-aaaaaaaa", "key-bbbbbbbb"}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + key);
    tern::v1::ListModelsResponse response;
    EXPECT_TRUE(stub->ListModels(&context, {}, &response).ok()) << key;
  }
  {
    // A near miss is rejected; no key, accepted or not, reaches the log.
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer key-bbbbbbbc");
    tern::v1::ListModelsResponse response;
    EXPECT_EQ(stub->ListModels(&context, {}, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(CheckHealth(daemon, ""), grpc::health::v1::HealthCheckResponse::SERVING);
  const ProcessResult stopped = daemon.Stop(SIGTERM, seconds(30));
  EXPECT_EQ(stopped.exit_code, 0) << stopped.output;
  EXPECT_NE(stopped.output.find("tenant=team-b"), std::string::npos) << stopped.output;
  for (const char* secret : {"key-aaaaaaaa", "key-bbbbbbbb", "key-bbbbbbbc", "wrong-key-000"}) {
    EXPECT_EQ(stopped.output.find(secret), std::string::npos) << secret << " was logged:\n" << stopped.output;
  }
}

TEST(TerndE2eTest, GenerateRejectsBadRequestsWithPreciseStatus) {
  DaemonProcess daemon = StartOrDie({});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  const auto call = [&](const tern::v1::GenerateRequest& request) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = stub->Generate(&context, request);
    tern::v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    return reader->Finish();
  };
  tern::v1::GenerateRequest request;
  EXPECT_EQ(call(request).error_code(), grpc::StatusCode::NOT_FOUND);  // no model named ""
  request.set_model("missing");
  request.set_text("hello");
  const grpc::Status missing = call(request);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(missing.error_message().find("missing"), std::string::npos);
}

TEST(TerndE2eTest, SigtermDrainsAndExitsZeroWithinTimeout) {
  DaemonProcess daemon = StartOrDie({"--drain-timeout", "5"});
  const auto start = std::chrono::steady_clock::now();
  const ProcessResult result = daemon.Stop(SIGTERM, std::chrono::seconds(10));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_LT(took, std::chrono::seconds(6));
  EXPECT_NE(result.output.find("drained"), std::string::npos) << result.output;
}

TEST(TerndE2eTest, ServesModelDirectoryGivenByFlag) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, "tiny-llama"), "--backend", "cpu"});
  auto stub = tern::v1::Models::NewStub(Connect(daemon));
  grpc::ClientContext context;
  tern::v1::ListModelsResponse response;
  ASSERT_TRUE(stub->ListModels(&context, {}, &response).ok());
  ASSERT_EQ(response.models_size(), 1);
  EXPECT_EQ(response.models(0).name(), "tiny-llama");
  EXPECT_EQ(response.models(0).architecture(), "LlamaForCausalLM");
  EXPECT_EQ(response.models(0).context_length(), 2048);
  EXPECT_EQ(response.models(0).backend(), "cpu");
  EXPECT_GT(response.models(0).num_parameters(), 4'000'000);
}

// /metrics describes each model (tern_model_info, with the configured weight
// scheme as the layers run it), the bytes its weights hold on the backend and
// the KV cache's tokens (its blocks x 16), and the start-up log says the same.
TEST(TerndE2eTest, MetricsDescribeTheModelsWeightsAndKvCapacity) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny-llama");
  DaemonProcess daemon = StartOrDie({"--config", dir.Write("c.json", R"({"models": [{"path": ")" + model +
                                                                         R"(", "backend": "cpu", "weightScheme": "w4a16-g32",
                                                                         "kvBlockSize": 16, "cpuKvCacheMib": 4}]})")});
  const HttpReply scrape = HttpGet(daemon.http_port(), "/metrics");
  ASSERT_EQ(scrape.status, 200);
  const std::string info =
      R"(tern_model_info{architecture="LlamaForCausalLM",attention_scheme="dense",backend="cpu",dtype="float32",)"
      R"x(kind="llm",kv_cache_dtype="auto",model="tiny-llama",weight_scheme="w4a16-g32 (quantized at load)"} 1)x";
  EXPECT_NE(scrape.body.find(info), std::string::npos) << scrape.body;
  // The value of the one series of `name` (label model="tiny-llama").
  const auto value = [&](const std::string& name) {
    const std::string series = name + R"({model="tiny-llama"} )";
    const size_t at = scrape.body.find(series);
    EXPECT_NE(at, std::string::npos) << series << "\n" << scrape.body;
    return at == std::string::npos ? -1.0 : std::stod(scrape.body.substr(at + series.size()));
  };
  // The CPU backend holds every weight in fp32 (weight-only layers
  // dequantized), so at least 4 bytes a parameter.
  auto stub = tern::v1::Models::NewStub(Connect(daemon));
  grpc::ClientContext context;
  tern::v1::ListModelsResponse models;
  ASSERT_TRUE(stub->ListModels(&context, {}, &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  const double weight_bytes = value("tern_model_weight_bytes");
  EXPECT_GE(weight_bytes, 4.0 * double(models.models(0).num_parameters()));
  const double blocks = value("tern_kv_cache_blocks");
  EXPECT_GT(blocks, 0);
  EXPECT_EQ(value("tern_kv_cache_capacity_tokens"), blocks * 16);
  TempDir scrape_dir;
  const ProcessResult promtool = RunProcess(
      {"/bin/sh", "-c", "promtool check metrics < " + scrape_dir.Write("scrape.txt", scrape.body)}, seconds(30));
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output;

  const std::string log = daemon.Output();
  EXPECT_NE(log.find(" (w4a16-g32 (quantized at load)) kv_cache=" + std::to_string(int64_t(blocks) * 16) + " tokens"),
            std::string::npos)
      << log;
}

// A model served with an MoA plan (attention_scheme "moa:<plan>"): ListModels
// names the scheme, the plan and its average density at the plan's reference
// length (tiny: 2 layers of 4 heads; layer 0 bands of 250 tokens, layer 1 of
// 250 + N / 4: at N = 1000, (0.25 + 0.5) / 2).
TEST(TerndE2eTest, ServesAnMoaPlanAndReportsItsDensity) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny-moa");
  const std::string plan = dir.Write("plan.json", R"({"format": "tern.moa.v1", "num_layers": 2, "num_heads": 4,
    "reference_length": 1000, "sinks": 0, "buckets": [{"alphas": [[250, 250, 250, 250], [250, 250, 250, 250]],
    "betas": [[0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]]}]})");
  DaemonProcess daemon = StartOrDie({"--config", dir.Write("c.json", R"({"models": [{"path": ")" + model +
                                                                         R"(", "backend": "cpu", "attentionScheme": "moa:)" +
                                                                         plan + R"("}]})")});
  auto stub = tern::v1::Models::NewStub(Connect(daemon));
  grpc::ClientContext context;
  tern::v1::ListModelsResponse response;
  ASSERT_TRUE(stub->ListModels(&context, {}, &response).ok());
  ASSERT_EQ(response.models_size(), 1);
  EXPECT_EQ(response.models(0).attention_scheme(), "moa");
  EXPECT_EQ(response.models(0).attention_plan(), plan);
  EXPECT_NEAR(response.models(0).attention_density(), 0.375, 1e-9);
  EXPECT_EQ(response.models(0).attention_density_length(), 1000);
}

TEST(TerndE2eTest, TokenizeAndDetokenizeOverTheWire) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, "tiny-llama")});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  tern::v1::TokenizeRequest request;
  request.set_model("tiny-llama");
  request.set_text("Hello world");
  tern::v1::TokenizeResponse tokens;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Tokenize(&context, request, &tokens).ok());
  }
  // LLaMA-2: BOS, then "▁Hello" (15043) and "▁world" (3186).
  ASSERT_EQ(tokens.ids_size(), 3);
  EXPECT_EQ(tokens.ids(0), 1);
  EXPECT_EQ(tokens.ids(1), 15043);
  EXPECT_EQ(tokens.ids(2), 3186);
  EXPECT_EQ(tokens.tokens(1), "\u2581Hello");
  tern::v1::DetokenizeRequest detokenize;
  detokenize.set_model("tiny-llama");
  detokenize.mutable_ids()->CopyFrom(tokens.ids());
  detokenize.set_skip_special_tokens(true);
  tern::v1::DetokenizeResponse text;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Detokenize(&context, detokenize, &text).ok());
  }
  EXPECT_EQ(text.text(), "Hello world");
  detokenize.add_ids(999999);
  grpc::ClientContext context;
  EXPECT_EQ(stub->Detokenize(&context, detokenize, &text).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // The CLI prints the ids space-separated.
  const ProcessResult cli = RunProcess(
      {BinaryPath("tern"), "--target", daemon.grpc_target(), "tokenize", "-m", "tiny-llama", "Hello world"},
      seconds(30));
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_EQ(cli.output, "1 15043 3186\n");
}

TEST(TerndE2eTest, GenerateStreamsTokensWithUsageAndFinishReason) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, "tiny-llama")});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  tern::v1::GenerateRequest request;
  request.set_model("tiny-llama");
  request.set_text("Hello");
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(8);
  request.mutable_sampling()->set_ignore_eos(true);
  const StreamResult first = Stream(*stub, request);
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.tokens, 8);
  EXPECT_GE(first.chunks, 2) << "tokens must stream, then usage";
  EXPECT_EQ(first.finish, tern::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(first.usage.completion_tokens(), 8);
  EXPECT_EQ(first.usage.prompt_tokens(), 2);  // BOS + "▁Hello"
  const StreamResult again = Stream(*stub, request);
  EXPECT_EQ(again.text, first.text) << "greedy decoding is deterministic";

  request.mutable_sampling()->set_top_p(1.5f);
  const StreamResult invalid = Stream(*stub, request);
  EXPECT_EQ(invalid.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(invalid.status.error_message().find("sampling.top_p"), std::string::npos);

  // Per-request and engine metrics, in a scrape promtool accepts.
  const HttpReply scrape = HttpGet(daemon.http_port(), "/metrics");
  for (const char* series : {
           R"(tern_time_to_first_token_seconds_count{model="tiny-llama",tenant="default"} 2)",
           R"(tern_request_finished_total{model="tiny-llama",outcome="length",tenant="default"} 2)",
           R"(tern_generation_tokens_total{model="tiny-llama"} 16)",
           R"(tern_num_requests_running{model="tiny-llama"} 0)",
           R"(tern_kv_cache_usage_ratio{model="tiny-llama"})",
           R"(tern_request_queue_time_seconds_count{model="tiny-llama",tenant="default"} 2)",
           R"(tern_request_prefill_time_seconds_count{model="tiny-llama",tenant="default"} 2)",
           R"(tern_request_decode_time_seconds_count{model="tiny-llama",tenant="default"} 2)",
           R"(tern_batch_tokens{model="tiny-llama"})"}) {
    EXPECT_NE(scrape.body.find(series), std::string::npos) << series << "\n" << scrape.body;
  }
  TempDir scrape_dir;
  const ProcessResult promtool = RunProcess(
      {"/bin/sh", "-c", "promtool check metrics < " + scrape_dir.Write("scrape.txt", scrape.body)}, seconds(30));
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output;

  // The CLI streams the same text.
  const ProcessResult cli = RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "generate", "-m",
                                        "tiny-llama", "--max-tokens", "8", "--temperature", "0", "Hello"},
                                       seconds(60));
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
}

// A model with async_scheduling plans each decode step while the one before
// runs: its streams are the plain engine's, token for token, and the steps
// planned ahead are counted.
TEST(TerndE2eTest, AsyncSchedulingStreamsTheSameTokens) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny-llama");
  tern::v1::GenerateRequest request;
  request.set_model("tiny-llama");
  request.set_text("Once upon a time");
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(24);
  request.mutable_sampling()->set_ignore_eos(true);
  std::string texts[2];
  for (const bool async : {false, true}) {
    DaemonProcess daemon = StartOrDie(
        {"--config", dir.Write(async ? "async.json" : "plain.json",
                               R"({"models": [{"path": ")" + model + R"(", "backend": "cpu", "asyncScheduling": )" +
                                   (async ? "true" : "false") + "}]}")});
    auto stub = tern::v1::Llm::NewStub(Connect(daemon));
    const StreamResult result = Stream(*stub, request);
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.tokens, 24);
    texts[async ? 1 : 0] = result.text;
    const HttpReply scrape = HttpGet(daemon.http_port(), "/metrics");
    const std::string series = R"(tern_engine_steps_planned_ahead_total{model="tiny-llama"} )";
    const size_t at = scrape.body.find(series);
    ASSERT_NE(at, std::string::npos) << scrape.body;
    const double planned = std::stod(scrape.body.substr(at + series.size()));
    if (async) {
      EXPECT_GE(planned, 15) << "most of 24 decode steps are planned ahead";
    } else {
      EXPECT_EQ(planned, 0);
    }
  }
  EXPECT_EQ(texts[1], texts[0]);
}

TEST(TernRunTest, GeneratesDeterministicTextFromPrompt) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny-llama");
  const std::vector<std::string> argv = {BinaryPath("tern-run"), "--model", model, "--max-tokens", "12",
                                         "--temperature", "0.8", "--seed", "5", "The capital of France is"};
  const ProcessResult first = RunProcess(argv, seconds(60));
  const ProcessResult second = RunProcess(argv, seconds(60));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_GT(first.output.size(), 1u);
  EXPECT_EQ(first.output, second.output) << "same seed, same text";
  const ProcessResult bad = RunProcess({BinaryPath("tern-run"), "--model", model, "--top-p", "0", "x"}, seconds(60));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("top_p"), std::string::npos) << bad.output;
}

// --- Bad input: a clear message and a non-zero exit, never a crash. ---

void ExpectCleanFailure(const std::vector<std::string>& args, const std::string& message_part) {
  std::vector<std::string> argv = {BinaryPath("ternd"), "--grpc-port", "0", "--http-port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  const ProcessResult result = RunProcess(argv, seconds(30));
  EXPECT_EQ(result.signal, 0) << "ternd crashed: " << result.output;
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.exit_code, -1) << "ternd did not exit: " << result.output;
  EXPECT_NE(result.output.find(message_part), std::string::npos)
      << "expected \"" << message_part << "\" in: " << result.output;
}

TEST(TerndBadInputTest, MalformedConfigFile) {
  TempDir dir;
  ExpectCleanFailure({"--config", dir.Write("c.json", "{\"listen\": {")}, "c.json");
}

TEST(TerndBadInputTest, UnknownConfigField) {
  TempDir dir;
  ExpectCleanFailure({"--config", dir.Write("c.json", R"({"listen": {"grpcPrt": 1}})")}, "grpcPrt");
}

TEST(TerndBadInputTest, MissingConfigFile) {
  ExpectCleanFailure({"--config", "/nonexistent/tern.json"}, "/nonexistent/tern.json");
}

TEST(TerndBadInputTest, OutOfRangeConfigValue) {
  TempDir dir;
  ExpectCleanFailure({"--config", dir.Write("c.json", R"({"tenants": [{"name": "a", "weight": -1}]})")},
                     "tenants[0].weight");
}

TEST(TerndBadInputTest, MissingModelPath) {
  ExpectCleanFailure({"--model", "/nonexistent/model-dir"}, "/nonexistent/model-dir");
}

TEST(TerndBadInputTest, ModelDirectoryWithoutWeights) {
  TempDir dir;
  dir.Write("m/config.json", R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 256,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "max_position_embeddings": 512})");
  ExpectCleanFailure({"--model", dir.path() + "/m"}, "model.safetensors");
}

TEST(TerndBadInputTest, UnsupportedArchitecture) {
  TempDir dir;
  dir.Write("m/config.json", R"({"architectures": ["GPT2LMHeadModel"]})");
  ExpectCleanFailure({"--model", dir.path() + "/m"}, "GPT2LMHeadModel");
}

TEST(TerndBadInputTest, SkeletonOfThoughtSettingsThatCannotWork) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny");
  const auto config = [&](const std::string& sot) {
    return dir.Write("c.json", R"({"models": [{"path": ")" + model + R"(", "sot": )" + sot + "}]}");
  };
  ExpectCleanFailure({"--config", config(R"({"router": "magic"})")}, "sot.router \"magic\" is not one of");
  ExpectCleanFailure({"--config", config(R"({"router": "trained"})")}, "neither sot.router_file");
  ExpectCleanFailure({"--config", config(R"({"router": "trained", "routerFile": "/nonexistent/router.json"})")},
                     "/nonexistent/router.json");
  ExpectCleanFailure({"--config", config(R"({"maxPoints": 1})")}, "sot.max_points = 1 is not in [2, 64]");
  ExpectCleanFailure({"--config", config(R"({"pointPrompt": "no placeholders"})")}, "point_user");
  ExpectCleanFailure({"--model", model, "--sot-router-file", dir.Write("bad-router.json", "{\"version\": 99}")},
                     "bad-router.json");
}

// An MoA plan that does not fit the model stops start-up naming the file and
// the field (tiny: 2 layers of 4 query heads).
TEST(TerndBadInputTest, MoaPlanThatDoesNotFitTheModel) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny");
  const auto config = [&](const std::string& scheme) {
    return dir.Write("c.json", R"({"models": [{"path": ")" + model + R"(", "backend": "cpu", "attentionScheme": ")" +
                                   scheme + R"("}]})");
  };
  const std::string three_layers = dir.Write("three.json", R"({"alphas": [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]],
    "betas": [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]})");
  ExpectCleanFailure({"--config", config("moa:" + three_layers)}, "num_hidden_layers");
  ExpectCleanFailure({"--config", config("moa:" + three_layers)}, "three.json");
  const std::string unsorted = dir.Write("unsorted.json", R"({"format": "tern.moa.v1", "num_layers": 2,
    "num_heads": 4, "sinks": 4, "buckets": [
      {"max_length": 512, "alphas": [[64, 64, 64, 64], [64, 64, 64, 64]], "betas": [[0, 0, 0, 0], [0, 0, 0, 0]]},
      {"max_length": 256, "alphas": [[64, 64, 64, 64], [64, 64, 64, 64]], "betas": [[0, 0, 0, 0], [0, 0, 0, 0]]}]})");
  ExpectCleanFailure({"--config", config("moa:" + unsorted)}, "buckets[1].max_length");
  const std::string negative = dir.Write("negative.json", R"({"format": "tern.moa.v1", "num_layers": 2,
    "num_heads": 4, "sinks": 4, "buckets": [{"alphas": [[-64, 64, 64, 64], [64, 64, 64, 64]],
    "betas": [[0, 0, 0, 0], [0, 0, 0, 0]]}]})");
  ExpectCleanFailure({"--config", config("moa:" + negative)}, "negative");
  ExpectCleanFailure({"--config", config("moa:")}, "attention_scheme");
  ExpectCleanFailure({"--config", config("moa:/nonexistent/plan.json")}, "/nonexistent/plan.json");
}

TEST(TerndBadInputTest, PortAlreadyInUse) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  ExpectCleanFailure({"--host", "127.0.0.1", "--grpc-port", port}, port);
  ExpectCleanFailure({"--host", "127.0.0.1", "--http-port", port}, port);
  close(fd);
}

TEST(TerndBadInputTest, UnknownFlag) { ExpectCleanFailure({"--no-such-flag"}, "no_such_flag"); }

// A model directory whose files are corrupt at start: a named error and a
// non-zero exit, never a crash.
TEST(TerndBadInputTest, CorruptModelFiles) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny");
  const std::string weights = model + "/model.safetensors";
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) / 2);
  ExpectCleanFailure({"--model", model}, "model.safetensors");
  std::ofstream(weights, std::ios::trunc) << "\xff\xff\xff\xff\xff\xff\xff\x7f{";
  ExpectCleanFailure({"--model", model}, "model.safetensors");
  const std::string other = MakeTinyModel(dir, "tiny2");
  std::ofstream(other + "/config.json", std::ios::trunc) << "{\"architectures\": [";
  ExpectCleanFailure({"--model", other}, "config.json");
}

// --- TLS and mutual TLS, with a CA and certificates made at test time. ---

bool HaveProgram(const std::string& name) {
  return RunProcess({"/usr/bin/env", "sh", "-c", "command -v " + name}, seconds(10)).exit_code == 0;
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, made
// by the openssl CLI (EC P-256, valid one day) in `dir`.
void MakeCertificates(const TempDir& dir) {
  const std::string script = R"(set -e
cd ")" + dir.path() + R"("
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -subj /CN=tern-test-ca -days 1 -out ca.pem
for who in server client other; do
  key $who.key
  openssl req -new -key $who.key -subj /CN=tern-test-$who -out $who.csr
done
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext -out server.pem 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext -out client.pem 2>/dev/null
# A client certificate from a CA ternd does not trust.
key rogue-ca.key
openssl req -x509 -new -key rogue-ca.key -subj /CN=rogue-ca -days 1 -out rogue-ca.pem
openssl x509 -req -in other.csr -CA rogue-ca.pem -CAkey rogue-ca.key -CAcreateserial -days 1 -extfile client.ext -out other.pem 2>/dev/null
)";
  const ProcessResult made = RunProcess({"/bin/sh", "-c", script}, seconds(60));
  ASSERT_EQ(made.exit_code, 0) << made.output;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// gRPC health over `credentials`: the status of the call (OK when served).
grpc::Status HealthOver(const DaemonProcess& daemon, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(daemon.grpc_target(), credentials));
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::seconds(5));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, {}, &response);
  if (status.ok()) {
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  return status;
}

std::shared_ptr<grpc::ChannelCredentials> Tls(const TempDir& dir, const std::string& client = "") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadText(dir.Path("ca.pem"));
  if (!client.empty()) {
    options.pem_cert_chain = ReadText(dir.Path(client + ".pem"));
    options.pem_private_key = ReadText(dir.Path(client + ".key"));
  }
  return grpc::SslCredentials(options);
}

// curl's exit status and output (body and the HTTP status on the last line).
ProcessResult Curl(const DaemonProcess& daemon, const std::string& scheme, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {"/usr/bin/env", "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(scheme + "://127.0.0.1:" + std::to_string(daemon.http_port()) + "/v1/models");
  return RunProcess(argv, seconds(30));
}

TEST(TerndTlsE2eTest, TlsAndMutualTlsOnGrpcAndHttp) {
  if (!HaveProgram("openssl") || !HaveProgram("curl")) GTEST_SKIP() << "needs the openssl and curl programs";
  TempDir dir;
  MakeCertificates(dir);
  const auto config = [&](const std::string& tls) {
    return dir.Write("c.json", R"({"tls": )" + tls + "}");
  };
  const std::string cert = dir.Path("server.pem"), key = dir.Path("server.key"), ca = dir.Path("ca.pem");

  // Bad TLS settings stop start-up, naming the field.
  ExpectCleanFailure({"--config", config(R"({"keyFile": ")" + key + R"("})")}, "tls.cert_file: is required");
  ExpectCleanFailure({"--config", config(R"({"certFile": ")" + dir.Path("nope.pem") + R"(", "keyFile": ")" + key +
                                         R"("})")},
                     "tls.cert_file: cannot read");
  ExpectCleanFailure({"--config", config(R"({"certFile": ")" + cert + R"(", "keyFile": ")" + dir.Write("bad.key", "junk") +
                                         R"("})")},
                     "tls.key_file");
  ExpectCleanFailure({"--config", config(R"({"certFile": ")" + cert + R"(", "keyFile": ")" + dir.Path("client.key") +
                                         R"("})")},
                     "does not match the certificate");
  ExpectCleanFailure({"--config", config(R"({"certFile": ")" + cert + R"(", "keyFile": ")" + key +
                                         R"(", "clientCaFile": ")" + dir.Write("empty-ca.pem", "") + R"("})")},
                     "tls.client_ca_file");

  {  // TLS: encrypted clients get in; plaintext does not.
    DaemonProcess daemon =
        StartOrDie({"--config", config(R"({"certFile": ")" + cert + R"(", "keyFile": ")" + key + R"("})")});
    EXPECT_TRUE(HealthOver(daemon, Tls(dir)).ok());
    EXPECT_EQ(HealthOver(daemon, grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
    const ProcessResult https = Curl(daemon, "https", {"--cacert", ca});
    EXPECT_EQ(https.exit_code, 0) << https.output;
    EXPECT_NE(https.output.find(R"("object":"list")"), std::string::npos) << https.output;
    EXPECT_EQ(https.output.substr(https.output.size() - 3), "200") << https.output;
    EXPECT_NE(Curl(daemon, "http", {}).exit_code, 0) << "plaintext HTTP must be refused";
    EXPECT_NE(Curl(daemon, "https", {}).exit_code, 0) << "a certificate from an unknown CA must be refused";
    const ProcessResult cli = RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "--tls-ca", ca, "health"},
                                         seconds(30));
    EXPECT_EQ(cli.exit_code, 0) << cli.output;
    EXPECT_NE(RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "health"}, seconds(30)).exit_code, 0);
  }
  {  // Mutual TLS: a client certificate from the client CA is required.
    DaemonProcess daemon = StartOrDie({"--config", config(R"({"certFile": ")" + cert + R"(", "keyFile": ")" + key +
                                                          R"(", "clientCaFile": ")" + ca + R"("})")});
    EXPECT_TRUE(HealthOver(daemon, Tls(dir, "client")).ok());
    EXPECT_EQ(HealthOver(daemon, Tls(dir)).error_code(), grpc::StatusCode::UNAVAILABLE) << "no client certificate";
    EXPECT_EQ(HealthOver(daemon, Tls(dir, "other")).error_code(), grpc::StatusCode::UNAVAILABLE)
        << "a client certificate from another CA";
    EXPECT_EQ(HealthOver(daemon, grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
    const ProcessResult mutual =
        Curl(daemon, "https", {"--cacert", ca, "--cert", dir.Path("client.pem"), "--key", dir.Path("client.key")});
    EXPECT_EQ(mutual.exit_code, 0) << mutual.output;
    EXPECT_EQ(mutual.output.substr(mutual.output.size() - 3), "200") << mutual.output;
    EXPECT_NE(Curl(daemon, "https", {"--cacert", ca}).exit_code, 0) << "HTTPS without a client certificate";
    const ProcessResult cli = RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "--tls-ca", ca,
                                          "--tls-cert", dir.Path("client.pem"), "--tls-key", dir.Path("client.key"),
                                          "health"},
                                         seconds(30));
    EXPECT_EQ(cli.exit_code, 0) << cli.output;
    EXPECT_NE(RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "--tls-ca", ca, "health"}, seconds(30))
                  .exit_code,
              0);
  }
}

}  // namespace
}  // namespace tern::testing
