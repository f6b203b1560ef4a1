// End-to-end: tern-load against the real ternd serving a tiny random Llama
// on loopback, checked through its JSON report.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/daemon_process.h"

namespace tern::testing {
namespace {

using std::chrono::seconds;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tern-load-e2e-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string path = path_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string Path(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string MakeTinyModel(const TempDir& dir) {
  const std::string out = dir.Path("tiny-llama");
  const ProcessResult made = RunProcess(
      {BinaryPath("tern-mkmodel"), "--arch", "llama", "--preset", "tiny", "--seed", "0", "--tokenizer",
       std::string(TERN_TEST_DATA_DIR) + "/tokenizers/llama2", "--out", out},
      seconds(60));
  EXPECT_EQ(made.exit_code, 0) << made.output;
  return out;
}

std::optional<DaemonProcess> StartDaemon(const std::vector<std::string>& args) {
  std::string error;
  std::optional<DaemonProcess> daemon = DaemonProcess::Start(args, &error);
  EXPECT_TRUE(daemon.has_value()) << error;
  return daemon;
}

// Runs tern-load with `args` and parses the JSON it wrote to `json_path`.
nlohmann::json RunLoad(std::vector<std::string> args, const std::string& json_path, ProcessResult* result) {
  args.insert(args.begin(), BinaryPath("tern-load"));
  args.insert(args.end(), {"--json", json_path});
  *result = RunProcess(args, seconds(90));
  std::ifstream in(json_path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

constexpr char kTenantsConfig[] = R"({
  "tenants": [{"name": "team-a", "apiKeys": ["key-aaaaaaaa"]},
              {"name": "team-b", "apiKeys": ["key-bbbbbbbb"]}]
})";

TEST(TernLoadE2eTest, OpenLoopOverVicunaPromptsCompletesWithoutErrors) {
  TempDir dir;
  std::optional<DaemonProcess> daemon = StartDaemon({"--model", MakeTinyModel(dir)});
  ASSERT_TRUE(daemon.has_value());
  ProcessResult run;
  const nlohmann::json report = RunLoad(
      {"--target", daemon->grpc_target(), "--model", "tiny-llama", "--rate", "4", "--duration", "3", "--seed", "1",
       "--prompts", std::string(TERN_LOADTEST_PROMPTS_DIR) + "/vicuna80.csv", "--max-tokens", "8",
       "--slo-ttft-ms", "10000", "--slo-tpot-ms", "5000", "--json-requests", "--max-time", "60"},
      dir.Path("report.json"), &run);
  ASSERT_FALSE(report.is_discarded()) << run.output;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json& summary = report["summary"];
  EXPECT_GT(summary["completed"].get<int>(), 0) << report.dump(2);
  EXPECT_EQ(summary["failed"], 0) << report["errors"].dump(2);
  EXPECT_TRUE(report["errors"].empty()) << report["errors"].dump(2);
  EXPECT_FALSE(summary["hit_max_time"].get<bool>());
  // Open loop for 3 s: the run lasts the window.
  EXPECT_GE(summary["elapsed_s"].get<double>(), 3.0);
  EXPECT_GT(summary["request_throughput"].get<double>(), 0);
  EXPECT_GT(summary["output_token_throughput"].get<double>(), 0);
  EXPECT_GT(summary["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(summary["goodput"]["good_requests"], summary["completed"]);
  EXPECT_EQ(report["latency_ms"]["ttft"]["count"], summary["completed"]);
  EXPECT_GT(report["latency_ms"]["e2e"]["p50"].get<double>(), 0);
  int64_t tokens = 0;
  for (const nlohmann::json& request : report["requests"]) {
    EXPECT_EQ(request["status"], "OK");
    const int64_t n = request["output_tokens"].get<int64_t>();
    EXPECT_GE(n, 1);
    EXPECT_LE(n, 8);
    tokens += n;
    EXPECT_LE(request["ttft_ms"].get<double>(), request["e2e_ms"].get<double>());
  }
  EXPECT_EQ(tokens, summary["output_tokens"].get<int64_t>());
  EXPECT_NE(run.output.find("TTFT"), std::string::npos) << run.output;
}

TEST(TernLoadE2eTest, ClosedLoopWithTokenIdsAndTenantMix) {
  TempDir dir;
  std::optional<DaemonProcess> daemon =
      StartDaemon({"--model", MakeTinyModel(dir), "--config", dir.Write("config.json", kTenantsConfig)});
  ASSERT_TRUE(daemon.has_value());
  ProcessResult run;
  const nlohmann::json report = RunLoad(
      {"--target", daemon->grpc_target(), "--model", "tiny-llama", "--concurrency", "4", "--requests", "12",
       "--synthetic-prompt-tokens", "16", "--max-tokens-dist", "uniform:2:6", "--ignore-eos", "--tenant-mix",
       "key-aaaaaaaa:1,key-bbbbbbbb:1", "--seed", "7", "--json-requests", "--max-time", "60"},
      dir.Path("report.json"), &run);
  ASSERT_FALSE(report.is_discarded()) << run.output;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(report["summary"]["completed"], 12) << report.dump(2);
  EXPECT_TRUE(report["errors"].empty()) << report["errors"].dump(2);
  ASSERT_EQ(report["tenants"].size(), 2u);
  EXPECT_GT(report["tenants"][0]["completed"].get<int>(), 0);
  EXPECT_GT(report["tenants"][1]["completed"].get<int>(), 0);
  for (const nlohmann::json& request : report["requests"]) {
    // ignore_eos: exactly max_tokens tokens each; the prompt is the 16 ids.
    EXPECT_EQ(request["output_tokens"], request["max_tokens"]);
    EXPECT_EQ(request["prompt_tokens"], 16);
  }
}

TEST(TernLoadE2eTest, ReportsRejectedRequestsByStatusName) {
  TempDir dir;
  std::optional<DaemonProcess> daemon =
      StartDaemon({"--model", MakeTinyModel(dir), "--config", dir.Write("config.json", kTenantsConfig)});
  ASSERT_TRUE(daemon.has_value());
  ProcessResult run;
  const nlohmann::json report = RunLoad(
      {"--target", daemon->grpc_target(), "--model", "tiny-llama", "--rate", "20", "--requests", "20",
       "--prompts", std::string(TERN_LOADTEST_PROMPTS_DIR) + "/lima.csv", "--max-tokens", "4", "--tenant-mix",
       "key-aaaaaaaa:1,wrong-key-000:1", "--max-time", "60"},
      dir.Path("report.json"), &run);
  ASSERT_FALSE(report.is_discarded()) << run.output;
  EXPECT_EQ(run.exit_code, 1) << "failed requests make the exit status 1: " << run.output;
  const int rejected = report["tenants"][1]["sent"].get<int>();
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(report["tenants"][1]["completed"], 0);
  ASSERT_TRUE(report["errors"].contains("UNAUTHENTICATED")) << report["errors"].dump(2);
  EXPECT_EQ(report["errors"]["UNAUTHENTICATED"]["count"], rejected);
  EXPECT_EQ(report["summary"]["sent"], 20);
  EXPECT_NE(run.output.find("UNAUTHENTICATED"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("wrong-key-000"), std::string::npos) << "keys must not be printed";
}

TEST(TernLoadE2eTest, SotShareReportsSotAndOtherRequestsApart) {
  TempDir dir;
  std::optional<DaemonProcess> daemon = StartDaemon({"--model", MakeTinyModel(dir)});
  ASSERT_TRUE(daemon.has_value());
  ProcessResult run;
  // Half the requests expand a 3-point synthetic outline of 4 tokens a point
  // (max_tokens 3 x 4); the rest decode 12 tokens normally.
  const nlohmann::json report = RunLoad(
      {"--target", daemon->grpc_target(), "--model", "tiny-llama", "--concurrency", "4", "--requests", "12",
       "--prompts", std::string(TERN_LOADTEST_PROMPTS_DIR) + "/vicuna80.csv", "--max-tokens", "12", "--ignore-eos",
       "--sot-share", "0.5", "--sot-outline-points", "3", "--sot-point-tokens", "4", "--seed", "3",
       "--json-requests", "--max-time", "60"},
      dir.Path("report.json"), &run);
  ASSERT_FALSE(report.is_discarded()) << run.output;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(report["summary"]["completed"], 12) << report["errors"].dump(2);
  const nlohmann::json& sot = report["decoding"]["sot"];
  const nlohmann::json& rest = report["decoding"]["non_sot"];
  EXPECT_GT(sot["sent"].get<int>(), 0) << report["decoding"].dump(2);
  EXPECT_GT(rest["sent"].get<int>(), 0) << report["decoding"].dump(2);
  EXPECT_EQ(sot["used_sot"], sot["completed"]) << sot.dump(2);
  EXPECT_EQ(sot["fell_back"], 0);
  EXPECT_EQ(rest["used_sot"], 0);
  EXPECT_DOUBLE_EQ(sot["points_per_request"]["mean"].get<double>(), 3);
  EXPECT_EQ(sot["latency_ms"]["e2e"]["count"], sot["completed"]);
  EXPECT_EQ(rest["latency_ms"]["tpot"]["count"], rest["completed"]);
  for (const nlohmann::json& request : report["requests"]) {
    EXPECT_EQ(request["output_tokens"], 12) << request.dump();
    EXPECT_EQ(request["decoding_used"],
              request["decoding_asked"] == "skeleton_of_thought" ? "skeleton_of_thought" : "normal")
        << request.dump();
  }
  for (const char* part : {"decoding (asked)", "SoT e2e", "normal TPOT", "SoT / normal"}) {
    EXPECT_NE(run.output.find(part), std::string::npos) << part << " not in " << run.output;
  }
}

// Text and image requests in one run: the image requests go to the demo DiT
// (GenerateImage), are reported apart, and both models take turns on the
// one device they share (the CPU), as the device metrics show.
TEST(TernLoadE2eTest, MixedTextAndImageRequestsAreReportedApart) {
  TempDir dir;
  std::optional<DaemonProcess> daemon =
      StartDaemon({"--model", MakeTinyModel(dir), "--model", std::string(TERN_MODELS_DIR) + "/tern-demo-dit"});
  ASSERT_TRUE(daemon.has_value());
  ProcessResult run;
  const nlohmann::json report = RunLoad(
      {"--target", daemon->grpc_target(), "--model", "tiny-llama", "--concurrency", "4", "--requests", "12",
       "--prompts", std::string(TERN_LOADTEST_PROMPTS_DIR) + "/vicuna80.csv", "--max-tokens", "6", "--ignore-eos",
       "--image-model", "tern-demo-dit", "--image-share", "0.5", "--image-steps", "2:4", "--seed", "5",
       "--json-requests", "--max-time", "60"},
      dir.Path("report.json"), &run);
  ASSERT_FALSE(report.is_discarded()) << run.output;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(report["summary"]["completed"], 12) << report["errors"].dump(2);
  const nlohmann::json& images = report["images"];
  ASSERT_TRUE(images.is_object()) << report.dump(2);
  const int image_requests = images["requests"]["sent"].get<int>();
  EXPECT_GT(image_requests, 0);
  EXPECT_LT(image_requests, 12);
  EXPECT_EQ(images["images"], image_requests) << "one image per request";
  EXPECT_EQ(report["decoding"]["non_sot"]["sent"].get<int>() + image_requests, 12);
  for (const nlohmann::json& request : report["requests"]) {
    if (request["decoding_asked"] == "image") {
      EXPECT_GE(request["output_tokens"].get<int>(), 2) << request.dump();
      EXPECT_LE(request["output_tokens"].get<int>(), 4) << request.dump();
    } else {
      EXPECT_EQ(request["output_tokens"], 6) << request.dump();
    }
  }
  for (const char* part : {"images      model tern-demo-dit", "per step", "image e2e"}) {
    EXPECT_NE(run.output.find(part), std::string::npos) << part << " not in " << run.output;
  }
  const HttpReply metrics = HttpGet(daemon->http_port(), "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* model : {"tiny-llama", "tern-demo-dit"}) {
    const std::string series =
        std::string("tern_device_busy_seconds_total{device=\"cpu\",model=\"") + model + "\"} ";
    const size_t at = metrics.body.find(series);
    ASSERT_NE(at, std::string::npos) << series << " not in " << metrics.body;
    EXPECT_GT(std::stod(metrics.body.substr(at + series.size())), 0.0) << series;
  }
}

// --api openai: the same workload as streamed chat completions to ternd's
// OpenAI-compatible HTTP API (the demo LLM: it has a chat template).
TEST(TernLoadE2eTest, OpenAiApiDrivesTheHttpServer) {
  TempDir dir;
  std::optional<DaemonProcess> daemon =
      StartDaemon({"--model", std::string(TERN_MODELS_DIR) + "/tern-demo-llm", "--backend", "cpu", "--config",
                   dir.Write("config.json", kTenantsConfig)});
  ASSERT_TRUE(daemon.has_value());
  const std::string target = "http://127.0.0.1:" + std::to_string(daemon->http_port());
  ProcessResult run;
  const nlohmann::json report = RunLoad(
      {"--api", "openai", "--target", target, "--model", "tern-demo-llm", "--concurrency", "3", "--requests", "9",
       "--prompts", std::string(TERN_LOADTEST_PROMPTS_DIR) + "/vicuna80.csv", "--max-tokens", "6", "--ignore-eos",
       "--tenant-mix", "key-aaaaaaaa:1,key-bbbbbbbb:1", "--seed", "5", "--json-requests", "--max-time", "60"},
      dir.Path("report.json"), &run);
  ASSERT_FALSE(report.is_discarded()) << run.output;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(report["config"]["api"], "openai");
  EXPECT_EQ(report["summary"]["completed"], 9) << report["errors"].dump(2);
  EXPECT_EQ(report["latency_ms"]["ttft"]["count"], 9);
  EXPECT_GT(report["latency_ms"]["itl"]["count"].get<int>(), 0);
  for (const nlohmann::json& request : report["requests"]) {
    EXPECT_EQ(request["output_tokens"], 6) << request.dump();  // usage.completion_tokens
    EXPECT_GT(request["prompt_tokens"].get<int>(), 0) << request.dump();
    EXPECT_EQ(request["finish_reason"], "length") << request.dump();
  }
  EXPECT_NE(run.output.find("(OpenAI API)"), std::string::npos) << run.output;

  // Errors read as for gRPC: 401 is UNAUTHENTICATED, with the server's message.
  const nlohmann::json rejected = RunLoad(
      {"--api", "openai", "--target", target, "--model", "tern-demo-llm", "--concurrency", "1", "--requests", "2",
       "--prompts", std::string(TERN_LOADTEST_PROMPTS_DIR) + "/vicuna80.csv", "--max-tokens", "2", "--api-key",
       "wrong-key-000", "--max-time", "60"},
      dir.Path("rejected.json"), &run);
  ASSERT_FALSE(rejected.is_discarded()) << run.output;
  EXPECT_EQ(run.exit_code, 1) << run.output;
  ASSERT_TRUE(rejected["errors"].contains("UNAUTHENTICATED")) << rejected["errors"].dump(2);
  EXPECT_EQ(rejected["errors"]["UNAUTHENTICATED"]["count"], 2);
  EXPECT_EQ(rejected["errors"]["UNAUTHENTICATED"]["first_message"], "HTTP 401: unknown API key");
}

TEST(TernLoadE2eTest, BadArgumentsExitTwoWithAClearMessage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--rate", "1", "--duration", "1", "--prompts", "p"}, "--model: required"},
      {{"--model", "m", "--rate", "-1", "--duration", "1", "--prompts", "p"}, "--rate: expected a positive number"},
      {{"--model", "m", "--rate", "1", "--prompts", "p"}, "--duration"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--bogus"}, "--bogus: unknown flag"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "/nonexistent/prompts.csv"},
       "/nonexistent/prompts.csv"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts",
        std::string(TERN_LOADTEST_PROMPTS_DIR) + "/vicuna80.csv", "--json", "/nonexistent/dir/out.json"},
       "--json: cannot write /nonexistent/dir/out.json"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--sot-outline-points", "3"},
       "--sot-outline-points: needs --sot-share > 0 or --decoding-mode sot"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--sot-share", "2"},
       "--sot-share: expected a fraction in [0, 1]"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--image-share", "0.5"},
       "--image-share: needs --image-model"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--image-model", "d"},
       "--image-model: needs --image-share"},
      {{"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--image-model", "d", "--image-share",
        "0.5", "--image-steps", "9:3"},
       "--image-steps: expected LO:HI"},
      {{"--rate", "1", "--duration", "1", "--image-model", "d", "--image-share", "0.5"}, "--model: required"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv = {BinaryPath("tern-load")};
    argv.insert(argv.end(), args.begin(), args.end());
    const ProcessResult result = RunProcess(argv, seconds(30));
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_NE(result.output.find(message), std::string::npos) << "expected \"" << message << "\" in "
                                                              << result.output;
  }
}

}  // namespace
}  // namespace tern::testing
