#include "loadtest/report.h"

#include "gtest/gtest.h"

namespace tern::loadtest {
namespace {

using std::chrono::milliseconds;

const Clock::time_point kStart = Clock::time_point() + std::chrono::hours(1);

// An OK request sent at `sent_ms` whose tokens came at `chunk_ms` (offsets
// from sending), one token per chunk.
RequestTrace Ok(int64_t index, int sent_ms, const std::vector<int>& chunk_ms, int tenant = 0) {
  RequestTrace t;
  t.index = index;
  t.tenant = tenant;
  t.scheduled = kStart + milliseconds(sent_ms);
  t.sent = t.scheduled;
  for (int ms : chunk_ms) t.token_chunk_times.push_back(t.sent + milliseconds(ms));
  t.done = t.sent + milliseconds(chunk_ms.empty() ? 1 : chunk_ms.back());
  t.counted_tokens = static_cast<int64_t>(chunk_ms.size());
  t.usage_completion_tokens = t.counted_tokens;
  t.usage_prompt_tokens = 7;
  t.finish_reason = 2;  // length
  t.status_code = 0;
  return t;
}

RequestTrace Failed(int64_t index, int code, const std::string& message) {
  RequestTrace t;
  t.index = index;
  t.scheduled = t.sent = kStart;
  t.done = kStart + milliseconds(3);
  t.status_code = code;
  t.status_message = message;
  return t;
}

LoadOptions Options() {
  LoadOptions o;
  o.model = "tiny";
  o.rate = 2;
  o.duration_s = 2;
  o.tenants = {{"secret-key-a", 3}, {"kb", 1}};
  o.slo.ttft_ms = 150;
  o.slo.tpot_ms = 20;
  return o;
}

std::vector<RequestTrace> Traces() {
  return {
      Ok(0, 0, {100, 110, 120}),          // TTFT 100, TPOT 10: good
      Ok(1, 500, {200, 210}, 1),          // TTFT 200: misses TTFT
      Ok(2, 1000, {50, 100, 150}),        // TPOT 50: misses TPOT
      Failed(3, 14, "no engine for tiny"),
      Failed(4, 14, "second message"),
      Failed(5, 16, "bad key"),
  };
}

TEST(ReportTest, CountsThroughputGoodputAndErrors) {
  const Report r = BuildReport(Options(), Traces(), RunEnd{2.0});
  EXPECT_EQ(r.sent, 6);
  EXPECT_EQ(r.ok, 3);
  EXPECT_EQ(r.failed, 3);
  EXPECT_EQ(r.output_tokens, 8);
  EXPECT_EQ(r.prompt_tokens, 21);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(r.output_token_throughput, 4.0);
  EXPECT_EQ(r.goodput.good_requests, 1);
  EXPECT_DOUBLE_EQ(r.goodput.requests_per_s, 0.5);
  EXPECT_EQ(r.errors.at("UNAVAILABLE"), 2);
  EXPECT_EQ(r.errors.at("UNAUTHENTICATED"), 1);
  EXPECT_EQ(r.first_error.at("UNAVAILABLE"), "no engine for tiny");
  EXPECT_EQ(r.finish_reasons.at("length"), 3);
  EXPECT_EQ(r.ttft_ms.count, 3);
  EXPECT_NEAR(r.ttft_ms.p50, 100, 1e-9);
  EXPECT_NEAR(r.ttft_ms.mean, (100 + 200 + 50) / 3.0, 1e-9);
  EXPECT_EQ(r.itl_ms.count, 2 + 1 + 2);
  EXPECT_EQ(r.tpot_ms.count, 3);
  EXPECT_NEAR(r.tpot_ms.max, 50, 1e-9);
  ASSERT_EQ(r.tenants.size(), 2u);
  EXPECT_EQ(r.tenants[0].key_hint, "...ey-a");
  EXPECT_EQ(r.tenants[1].key_hint, "**");
  EXPECT_EQ(r.tenants[0].sent, 5);
  EXPECT_EQ(r.tenants[0].ok, 2);
  EXPECT_EQ(r.tenants[1].ok, 1);
}

TEST(ReportTest, TableShowsMetricsAndErrors) {
  const LoadOptions o = Options();
  const std::string table = FormatReportTable(o, BuildReport(o, Traces(), RunEnd{2.0}));
  for (const char* part : {"TTFT", "TPOT", "ITL", "e2e", "p99", "UNAVAILABLE", "no engine for tiny",
                           "UNAUTHENTICATED", "goodput     0.500 req/s", "TTFT <= 150 ms and TPOT <= 20 ms",
                           "#0 ...ey-a", "#1 **", "1.500 req/s"}) {
    EXPECT_NE(table.find(part), std::string::npos) << part << " not in\n" << table;
  }
  EXPECT_EQ(table.find("secret-key-a"), std::string::npos) << "the table must not print API keys";
}

TEST(ReportTest, JsonCarriesSummaryLatenciesAndErrors) {
  const LoadOptions o = Options();
  const std::vector<RequestTrace> traces = Traces();
  const Report r = BuildReport(o, traces, RunEnd{2.0});
  const nlohmann::json j = ReportToJson(o, r, &traces, kStart);
  EXPECT_EQ(j["summary"]["completed"], 3);
  EXPECT_EQ(j["summary"]["failed"], 3);
  EXPECT_DOUBLE_EQ(j["summary"]["goodput"]["requests_per_s"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["latency_ms"]["ttft"]["p50"].get<double>(), 100);
  EXPECT_EQ(j["errors"]["UNAVAILABLE"]["count"], 2);
  EXPECT_EQ(j["config"]["mode"], "poisson");
  EXPECT_EQ(j["config"]["slo_ttft_ms"], 150.0);
  ASSERT_EQ(j["requests"].size(), 6u);
  EXPECT_DOUBLE_EQ(j["requests"][1]["sent_ms"].get<double>(), 500);
  EXPECT_EQ(j["requests"][3]["status"], "UNAVAILABLE");
  EXPECT_TRUE(j["requests"][3]["ttft_ms"].is_null());
  EXPECT_EQ(j.dump().find("secret-key-a"), std::string::npos) << "the JSON must not hold API keys";
  EXPECT_FALSE(ReportToJson(o, r, nullptr, kStart).contains("requests"));
}

TEST(ReportTest, EmptyRunHasNullLatencies) {
  LoadOptions o = Options();
  const Report r = BuildReport(o, {}, RunEnd{1.0, true});
  const nlohmann::json j = ReportToJson(o, r, nullptr, kStart);
  EXPECT_EQ(j["summary"]["sent"], 0);
  EXPECT_TRUE(j["summary"]["hit_max_time"].get<bool>());
  EXPECT_TRUE(j["latency_ms"]["ttft"]["p50"].is_null());
  EXPECT_NE(FormatReportTable(o, r).find("stopped by --max-time"), std::string::npos);
  const Report stopped = BuildReport(o, {}, RunEnd{1.0, false, true});
  EXPECT_TRUE(ReportToJson(o, stopped, nullptr, kStart)["summary"]["interrupted"].get<bool>());
  EXPECT_NE(FormatReportTable(o, stopped).find("(interrupted)"), std::string::npos);
}

// A request sent as Skeleton-of-Thought that the server decoded with it.
RequestTrace SotOk(int64_t index, int sent_ms, const std::vector<int>& chunk_ms, int points) {
  RequestTrace t = Ok(index, sent_ms, chunk_ms);
  t.sot_requested = true;
  t.decoding_used = 2;  // DECODING_MODE_SKELETON_OF_THOUGHT
  t.sot_report = true;
  t.sot_points = points;
  return t;
}

TEST(ReportTest, SotAndOtherRequestsAreReportedApart) {
  LoadOptions o = Options();
  o.tenants = {{"", 1}};
  o.sot_share = 0.5;
  RequestTrace fell_back = Ok(3, 0, {40, 80});
  fell_back.sot_requested = true;
  fell_back.decoding_used = 1;  // NORMAL: the skeleton had one point
  fell_back.sot_report = true;
  fell_back.sot_fell_back = true;
  RequestTrace failed = Failed(5, 8, "queue full");
  failed.sot_requested = true;
  const std::vector<RequestTrace> traces = {
      SotOk(0, 0, {20, 22, 24, 26, 28}, 4),  // TTFT 20, e2e 28, TPOT 2
      SotOk(1, 100, {30, 40, 50}, 2),        // TTFT 30, e2e 50, TPOT 10
      Ok(2, 200, {10, 60, 110}),             // TTFT 10, e2e 110, TPOT 50
      fell_back,                             // TTFT 40, e2e 80, TPOT 40
      Ok(4, 300, {10, 30, 50, 70, 90}),      // TTFT 10, e2e 90, TPOT 20
      failed,
  };
  const Report r = BuildReport(o, traces, RunEnd{1.0});
  EXPECT_TRUE(r.by_decoding);
  EXPECT_EQ(r.sot.sent, 4);
  EXPECT_EQ(r.sot.ok, 3);
  EXPECT_EQ(r.sot.failed, 1);
  EXPECT_EQ(r.sot.used_sot, 2);
  EXPECT_EQ(r.sot.fell_back, 1);
  EXPECT_EQ(r.sot.output_tokens, 5 + 3 + 2);
  EXPECT_EQ(r.sot.e2e_ms.count, 3);
  EXPECT_NEAR(r.sot.e2e_ms.p50, 50, 1e-9);
  EXPECT_NEAR(r.sot.ttft_ms.p50, 30, 1e-9);
  EXPECT_EQ(r.sot.points.count, 2);
  EXPECT_NEAR(r.sot.points.mean, 3, 1e-9);
  EXPECT_EQ(r.non_sot.sent, 2);
  EXPECT_EQ(r.non_sot.ok, 2);
  EXPECT_EQ(r.non_sot.used_sot, 0);
  EXPECT_NEAR(r.non_sot.e2e_ms.p50, 100, 1e-9);
  EXPECT_NEAR(r.non_sot.tpot_ms.p50, 35, 1e-9);
  // The whole-run figures still cover both classes.
  EXPECT_EQ(r.ok, 5);
  EXPECT_EQ(r.e2e_ms.count, 5);

  const std::string table = FormatReportTable(o, r);
  for (const char* part : {"decoding (asked)", "SoT TTFT", "SoT TPOT", "SoT e2e", "normal TTFT", "normal e2e",
                           "SoT / normal", "e2e 0.500x", "TTFT 3.000x"}) {
    EXPECT_NE(table.find(part), std::string::npos) << part << " not in\n" << table;
  }

  const nlohmann::json j = ReportToJson(o, r, &traces, kStart);
  EXPECT_EQ(j["config"]["sot_share"], 0.5);
  EXPECT_EQ(j["config"]["decoding_mode"], "normal");
  const nlohmann::json& sot = j["decoding"]["sot"];
  EXPECT_EQ(sot["decoding_mode"], "skeleton_of_thought");
  EXPECT_EQ(sot["sent"], 4);
  EXPECT_EQ(sot["completed"], 3);
  EXPECT_EQ(sot["used_sot"], 2);
  EXPECT_EQ(sot["fell_back"], 1);
  EXPECT_DOUBLE_EQ(sot["latency_ms"]["e2e"]["p50"].get<double>(), 50);
  EXPECT_DOUBLE_EQ(sot["points_per_request"]["mean"].get<double>(), 3);
  EXPECT_EQ(j["decoding"]["non_sot"]["decoding_mode"], "normal");
  EXPECT_DOUBLE_EQ(j["decoding"]["non_sot"]["latency_ms"]["tpot"]["p50"].get<double>(), 35);
  EXPECT_EQ(j["requests"][0]["decoding_asked"], "skeleton_of_thought");
  EXPECT_EQ(j["requests"][0]["decoding_used"], "skeleton_of_thought");
  EXPECT_EQ(j["requests"][0]["sot_points"], 4);
  EXPECT_EQ(j["requests"][2]["decoding_asked"], "normal");
  EXPECT_TRUE(j["requests"][5]["decoding_used"].is_null());
  EXPECT_TRUE(j["requests"][3]["sot_fell_back"].get<bool>());
}

TEST(ReportTest, PlainRunsShowNoDecodingClasses) {
  const LoadOptions o = Options();
  const Report r = BuildReport(o, Traces(), RunEnd{2.0});
  EXPECT_FALSE(r.by_decoding);
  EXPECT_EQ(r.non_sot.sent, 6);
  EXPECT_EQ(r.sot.sent, 0);
  EXPECT_EQ(FormatReportTable(o, r).find("decoding (asked)"), std::string::npos);
  EXPECT_EQ(ReportToJson(o, r, nullptr, kStart)["decoding"]["sot"]["sent"], 0);
}

TEST(ReportTest, StatusCodeNames) {
  EXPECT_EQ(StatusCodeName(0), "OK");
  EXPECT_EQ(StatusCodeName(4), "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(8), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StatusCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(-1), "UNFINISHED");
  EXPECT_EQ(StatusCodeName(42), "CODE_42");
}

}  // namespace
}  // namespace tern::loadtest
