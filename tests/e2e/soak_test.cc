// Soak: ternd serving a tiny model under the real tern-load, open loop at
// twice the capacity it measured, for 40 s. Afterwards ternd must be alive,
// healthy and idle; tern-load must have seen no error but the two that
// overload may bring (RESOURCE_EXHAUSTED from the bounded queue,
// DEADLINE_EXCEEDED); and ternd's resident memory must be flat: the maximum
// over the last third of the run within 15% of the maximum over the first.
//
// One ctest test (label e2e, RUN_SERIAL, under a minute on 2 cores). The long
// soak with mixed traffic (cancels, deadlines, bad inputs, tenants, SoT,
// images) and memory slopes is a benchmark: tools/soak/soak.py.
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {
namespace {

using std::chrono::seconds;

constexpr int kSoakSeconds = 40;
constexpr int kMaxNumSeqs = 16;

// VmRSS of `pid` in KiB, or -1 when it cannot be read (process gone).
int64_t ResidentKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

std::vector<std::string> LoadArgs(const DaemonProcess& daemon, const std::string& json) {
  return {BinaryPath("tern-load"), "--target", daemon.grpc_target(), "--model", "tiny-llama", "--prompts",
          std::string(TERN_LOADTEST_PROMPTS_DIR) + "/vicuna80.csv", "--max-tokens", "32", "--seed", "1",
          "--json", json};
}

TEST(SoakE2eTest, AboveCapacityForFortySecondsStaysUpWithFlatMemory) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny-llama");
  // The CPU backend's KV cache is committed page by page as blocks are first
  // written, and the prefix cache keeps every full block it ever computed
  // until the free uncached ones run out, so a large cache keeps adding
  // resident pages for as long as new text comes. A 4 MiB cache (512 blocks
  // of 16 tokens at 512 bytes a token) is written through during the
  // calibration run and the first third of the soak (about 100 requests of 3
  // or more fresh blocks each, 16 at once), so growth measured from the first
  // third to the last is the daemon's own.
  const std::string config = dir.Write("config.json", R"({
    "models": [{"name": "tiny-llama", "path": ")" + model + R"(", "maxNumSeqs": 16, "cpuKvCacheMib": 4}],
    "limits": {"maxQueuedRequests": 16}
  })");
  DaemonProcess daemon = StartOrDie({"--config", config});

  // Capacity: a closed loop of maxNumSeqs streams for 4 s.
  std::vector<std::string> calibrate = LoadArgs(daemon, dir.Path("calibrate.json"));
  calibrate.insert(calibrate.end(), {"--concurrency", std::to_string(kMaxNumSeqs), "--duration", "4"});
  const ProcessResult calibrated = RunProcess(calibrate, seconds(60));
  ASSERT_EQ(calibrated.exit_code, 0) << calibrated.output;
  const nlohmann::json capacity_report = ReadJson(dir.Path("calibrate.json"));
  ASSERT_FALSE(capacity_report.is_discarded()) << calibrated.output;
  const double capacity = capacity_report["summary"]["request_throughput"].get<double>();
  ASSERT_GT(capacity, 0.0);
  const double rate = 2 * capacity;

  // The soak: open loop (Poisson) at twice the capacity.
  std::vector<std::string> soak = LoadArgs(daemon, dir.Path("soak.json"));
  soak.insert(soak.end(), {"--rate", std::to_string(rate), "--duration", std::to_string(kSoakSeconds),
                           "--max-in-flight", "64", "--timeout", "10", "--max-time", "70"});
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ProcessResult run;
  const auto start = std::chrono::steady_clock::now();
  std::thread load([&] {
    ProcessResult result = RunProcess(soak, seconds(90));
    std::lock_guard<std::mutex> lock(mu);
    run = std::move(result);
    done = true;
    cv.notify_all();
  });
  // Resident memory every second until tern-load ends.
  std::vector<std::pair<double, int64_t>> rss;  // (seconds since start, KiB)
  {
    std::unique_lock<std::mutex> lock(mu);
    while (!cv.wait_for(lock, seconds(1), [&] { return done; })) {
      const double at = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (at <= kSoakSeconds) rss.emplace_back(at, ResidentKib(daemon.pid()));
    }
  }
  load.join();

  const nlohmann::json report = ReadJson(dir.Path("soak.json"));
  ASSERT_FALSE(report.is_discarded()) << run.output;
  EXPECT_NE(run.exit_code, 2) << run.output;
  EXPECT_NE(run.exit_code, -1) << "tern-load did not finish: " << run.output;
  const nlohmann::json& summary = report["summary"];
  EXPECT_FALSE(summary["hit_max_time"].get<bool>()) << run.output;
  EXPECT_GT(summary["completed"].get<int>(), 0);
  const std::set<std::string> acceptable = {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"};
  std::string errors;
  for (const auto& [code, entry] : report["errors"].items()) {
    errors += " " + code + "=" + std::to_string(entry["count"].get<int>());
    EXPECT_TRUE(acceptable.count(code)) << code << ": " << entry.dump();
  }
  EXPECT_FALSE(report["errors"].contains("INTERNAL"));
  EXPECT_TRUE(report["errors"].contains("RESOURCE_EXHAUSTED"))
      << "twice the capacity must overflow the bounded queue; errors:" << errors;

  // Alive, healthy, and back to idle.
  ASSERT_GT(ResidentKib(daemon.pid()), 0) << "ternd is gone: " << daemon.Output().substr(0, 4000);
  EXPECT_EQ(HttpGet(daemon.http_port(), "/healthz").status, 200);
  {
    auto health = grpc::health::v1::Health::NewStub(Connect(daemon));
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, {}, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  const auto series = [](const std::string& name) { return name + R"({model="tiny-llama"})"; };
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ScrapeMetric(daemon, series("tern_num_requests_running")) == 0.0 &&
               ScrapeMetric(daemon, series("tern_num_requests_waiting")) == 0.0 &&
               ScrapeMetric(daemon, series("tern_kv_cache_usage_ratio")) == 0.0;
      },
      seconds(5)));
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  tern::v1::GenerateRequest request;
  request.set_model("tiny-llama");
  request.set_text("Hello");
  request.mutable_sampling()->set_max_tokens(4);
  const StreamResult after = Stream(*stub, request);
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  // Log lines are "TIME LEVEL THREAD MESSAGE" with a one-letter level.
  std::istringstream log(daemon.Output());
  for (std::string line; std::getline(log, line);) {
    std::istringstream fields(line);
    std::string time, level;
    fields >> time >> level;
    EXPECT_TRUE(level != "E" && level != "C") << "ternd logged: " << line;
  }

  // Flat memory.
  ASSERT_GE(rss.size(), 30u);
  int64_t first_max = 0, last_max = 0;
  for (const auto& [at, kib] : rss) {
    ASSERT_GT(kib, 0) << "ternd exited during the soak at " << at << " s";
    if (at < kSoakSeconds / 3.0) first_max = std::max(first_max, kib);
    if (at >= kSoakSeconds * 2 / 3.0) last_max = std::max(last_max, kib);
  }
  ASSERT_GT(first_max, 0);
  ASSERT_GT(last_max, 0);
  EXPECT_LE(double(last_max), 1.15 * double(first_max))
      << "RSS grew from " << first_max << " KiB to " << last_max << " KiB";

  std::printf("soak: capacity %.2f req/s, rate %.2f req/s, sent %d, ok %d, failed %d, errors:%s\n", capacity, rate,
              summary["sent"].get<int>(), summary["completed"].get<int>(), summary["failed"].get<int>(),
              errors.c_str());
  std::printf("soak: ternd RSS max first third %lld KiB, last third %lld KiB (%+.1f%%), %zu samples\n",
              static_cast<long long>(first_max), static_cast<long long>(last_max),
              100.0 * (double(last_max) / double(first_max) - 1), rss.size());
  RecordProperty("rss_first_third_kib", std::to_string(first_max));
  RecordProperty("rss_last_third_kib", std::to_string(last_max));
}

}  // namespace
}  // namespace tern::testing
