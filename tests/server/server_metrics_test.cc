#include "server/observability/server_metrics.h"

#include "gtest/gtest.h"
#include "server/observability/logging.h"

namespace tern::server {
namespace {

TEST(ServerMetricsTest, ScrapeHasBuildInfoProcessAndRpcSeries) {
  ServerMetrics metrics;
  metrics.RecordRpc("/tern.v1.Llm/Generate", "INVALID_ARGUMENT", 0.002);
  metrics.RecordRpc("/tern.v1.Llm/Generate", "INVALID_ARGUMENT", 0.004);
  metrics.RecordHttp("/metrics", 200);
  const std::string text = metrics.Scrape();
  EXPECT_NE(text.find("# TYPE tern_build_info gauge"), std::string::npos);
  EXPECT_NE(text.find(R"(tern_grpc_requests_total{code="INVALID_ARGUMENT",method="/tern.v1.Llm/Generate"} 2)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(tern_grpc_request_duration_seconds_bucket{method="/tern.v1.Llm/Generate",le="0.0025"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(tern_http_requests_total{code="200",route="/metrics"} 1)"), std::string::npos);
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_start_time_seconds", "process_open_fds", "process_max_fds"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + name), std::string::npos) << name;
  }
}

// The tenant label takes at most max_tenant_label_values values: the first
// tenants seen keep their names, later ones share "_other", in every metric.
TEST(ServerMetricsTest, TenantLabelValuesAreCapped) {
  ServerMetrics metrics(/*max_tenant_label_values=*/2);
  for (const char* tenant : {"acme", "beta", "gamma", "delta", "acme"}) {
    metrics.requests().ObserveFinished("m", tenant, 0.5, 0.01, 4, "stop");
    metrics.requests().ObserveTimeToFirstToken("m", tenant, 0.1);
  }
  const std::string text = metrics.Scrape();
  EXPECT_NE(text.find(R"(tern_request_finished_total{model="m",outcome="stop",tenant="acme"} 2)"), std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(tern_request_finished_total{model="m",outcome="stop",tenant="beta"} 1)"), std::string::npos);
  EXPECT_NE(text.find(R"(tern_request_finished_total{model="m",outcome="stop",tenant="_other"} 2)"), std::string::npos);
  EXPECT_EQ(text.find(R"(tenant="gamma")"), std::string::npos);
  EXPECT_EQ(text.find(R"(tenant="delta")"), std::string::npos);
  EXPECT_NE(text.find(R"(tern_time_to_first_token_seconds_count{model="m",tenant="_other"} 2)"), std::string::npos);

  TenantLabels labels(1);
  EXPECT_EQ(labels.Of("x"), "x");
  EXPECT_EQ(labels.Of("y"), kOverflowTenantLabel);
  EXPECT_EQ(labels.Of("x"), "x");
}

TEST(LoggingTest, JsonEscapeKeepsLinesParseable) {
  EXPECT_EQ(JsonEscape("a\"b\\c\nd\x01"), "a\\\"b\\\\c\\nd\\u0001");
}

}  // namespace
}  // namespace tern::server
