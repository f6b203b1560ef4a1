// What tern generate/chat make of a stream: the parts, the final text, the
// summary line and the --json object.
#include "gtest/gtest.h"
#include "tools/cli/result_output.h"
#include "tools/cli/stream_assembly.h"

namespace tern::cli {
namespace {

const Clock::time_point kSent = Clock::time_point() + std::chrono::hours(1);

Clock::time_point At(int ms) { return kSent + std::chrono::milliseconds(ms); }

tern::v1::GenerateResponse Chunk(tern::v1::ChoicePart part, int index, const std::string& text, int tokens,
                                 bool last = false) {
  tern::v1::GenerateResponse r;
  r.set_request_id("req-1");
  tern::v1::Choice* c = r.add_choices();
  c->set_part(part);
  c->set_index(index);
  c->set_text(text);
  for (int i = 0; i < tokens; ++i) c->add_token_ids(100 + i);
  if (last) c->set_finish_reason(tern::v1::FINISH_REASON_LENGTH);
  return r;
}

tern::v1::GenerateResponse Last(tern::v1::DecodingMode used, bool with_report) {
  tern::v1::GenerateResponse r;
  r.set_request_id("req-1");
  r.mutable_usage()->set_prompt_tokens(11);
  r.mutable_usage()->set_completion_tokens(9);
  r.set_decoding_mode(used);
  if (with_report) {
    tern::v1::SotReport* sot = r.mutable_sot();
    sot->set_router_decision(tern::v1::ROUTER_DECISION_SKELETON_OF_THOUGHT);
    sot->set_router("trained");
    sot->set_skeleton("1. Tea\n2. Milk");
    for (int i = 0; i < 2; ++i) {
      tern::v1::SkeletonPoint* p = sot->add_points();
      p->set_number(i + 1);
      p->set_text(i == 0 ? "Tea" : "Milk");
    }
    sot->set_answer("1. Tea Steep it.\n2. Milk Add a dash.");
    sot->set_router_seconds(0.004);
    sot->set_skeleton_seconds(0.25);
    sot->set_expansion_seconds(1.5);
  }
  return r;
}

// A SoT stream: the skeleton, then two points interleaved, then the report.
StreamAssembly SotStream() {
  StreamAssembly s(kSent);
  s.Add(Chunk(tern::v1::CHOICE_PART_SKELETON, 0, "", 0), At(10));
  s.Add(Chunk(tern::v1::CHOICE_PART_SKELETON, 0, "1. Tea\n2. Milk", 4, true), At(50));
  s.Add(Chunk(tern::v1::CHOICE_PART_POINT, 1, "2. Milk Add", 1), At(60));
  s.Add(Chunk(tern::v1::CHOICE_PART_POINT, 0, "1. Tea Steep it.", 2, true), At(70));
  s.Add(Chunk(tern::v1::CHOICE_PART_POINT, 1, " a dash. ", 2, true), At(80));
  s.Add(Last(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT, true), At(90));
  s.End(At(100));
  return s;
}

TEST(StreamAssemblyTest, SortsChunksByPart) {
  const StreamAssembly s = SotStream();
  EXPECT_EQ(s.request_id(), "req-1");
  ASSERT_TRUE(s.has_skeleton());
  EXPECT_EQ(s.skeleton().text, "1. Tea\n2. Milk");
  EXPECT_TRUE(s.skeleton().finished());
  ASSERT_EQ(s.points().size(), 2u);
  EXPECT_EQ(s.points().at(1).text, "2. Milk Add a dash. ");
  EXPECT_EQ(s.points().at(1).tokens, 3);
  EXPECT_TRUE(s.answer().empty());
  EXPECT_TRUE(s.used_sot());
  EXPECT_NEAR(*s.ttft_s(), 0.050, 1e-9) << "the first chunk with text, of any part";
  EXPECT_NEAR(s.elapsed_s(), 0.100, 1e-9);
  EXPECT_EQ(s.FinalText(), "1. Tea Steep it.\n2. Milk Add a dash.");
}

TEST(StreamAssemblyTest, FinalTextWithoutAReportJoinsThePointsOrTheAnswer) {
  StreamAssembly points(kSent);
  points.Add(Chunk(tern::v1::CHOICE_PART_POINT, 1, "2. B two ", 1), At(1));
  points.Add(Chunk(tern::v1::CHOICE_PART_POINT, 0, "1. A one\n", 1), At(2));
  EXPECT_EQ(points.FinalText(), "1. A one\n2. B two");

  // A skeleton too short to expand: the answer is decoded normally.
  StreamAssembly fell_back(kSent);
  fell_back.Add(Chunk(tern::v1::CHOICE_PART_SKELETON, 0, "1. Only one", 3, true), At(1));
  fell_back.Add(Chunk(tern::v1::CHOICE_PART_ANSWER, 0, "Plain ", 1), At(2));
  fell_back.Add(Chunk(tern::v1::CHOICE_PART_ANSWER, 0, "answer.", 1, true), At(3));
  tern::v1::GenerateResponse last = Last(tern::v1::DECODING_MODE_NORMAL, false);
  last.mutable_sot()->set_fell_back(true);
  fell_back.Add(last, At(4));
  EXPECT_FALSE(fell_back.used_sot());
  EXPECT_EQ(fell_back.FinalText(), "Plain answer.");
}

TEST(ResultOutputTest, SummaryNamesDecodingRouterPointsAndUsage) {
  const std::string line = SummaryLine(SotStream());
  for (const char* part : {"decoding=skeleton_of_thought", "router=trained:skeleton_of_thought", "router_time=0.004s",
                           "points=2", "fell_back=no", "skeleton=0.25s", "expansion=1.50s", "prompt_tokens=11",
                           "completion_tokens=9", "cached_prompt_tokens=0", "ttft=0.05s", "elapsed=0.10s"}) {
    EXPECT_NE(line.find(part), std::string::npos) << part << " not in " << line;
  }
  EXPECT_EQ(line.find('\n'), std::string::npos);

  StreamAssembly normal(kSent);
  normal.Add(Chunk(tern::v1::CHOICE_PART_ANSWER, 0, "hi", 1, true), At(5));
  normal.Add(Last(tern::v1::DECODING_MODE_NORMAL, false), At(6));
  const std::string plain = SummaryLine(normal);
  EXPECT_NE(plain.find("decoding=normal"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("router"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("points"), std::string::npos) << plain;

  StreamAssembly asked(kSent);
  tern::v1::GenerateResponse not_routed = Last(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT, true);
  not_routed.mutable_sot()->set_router_decision(tern::v1::ROUTER_DECISION_NOT_ROUTED);
  asked.Add(not_routed, At(1));
  EXPECT_NE(SummaryLine(asked).find("router=not_routed"), std::string::npos) << SummaryLine(asked);

  StreamAssembly routed_normal(kSent);
  tern::v1::GenerateResponse to_normal = Last(tern::v1::DECODING_MODE_NORMAL, true);
  to_normal.mutable_sot()->set_router_decision(tern::v1::ROUTER_DECISION_NORMAL);
  routed_normal.Add(to_normal, At(1));
  const std::string normal_line = SummaryLine(routed_normal);
  EXPECT_NE(normal_line.find("decoding=normal router=trained:normal router_time="), std::string::npos) << normal_line;
  EXPECT_EQ(normal_line.find("points="), std::string::npos) << normal_line;
}

TEST(ResultOutputTest, JsonCarriesTextPartsUsageAndReport) {
  const nlohmann::json j = ResultJson(SotStream(), 0, "");
  EXPECT_EQ(j["request_id"], "req-1");
  EXPECT_EQ(j["status"], "OK");
  EXPECT_FALSE(j.contains("error"));
  EXPECT_EQ(j["decoding_mode"], "DECODING_MODE_SKELETON_OF_THOUGHT");
  EXPECT_EQ(j["text"], "1. Tea Steep it.\n2. Milk Add a dash.");
  ASSERT_EQ(j["parts"].size(), 3u);
  EXPECT_EQ(j["parts"][0]["part"], "CHOICE_PART_SKELETON");
  EXPECT_EQ(j["parts"][1]["part"], "CHOICE_PART_POINT");
  EXPECT_EQ(j["parts"][1]["index"], 0);
  EXPECT_EQ(j["parts"][2]["index"], 1);
  EXPECT_EQ(j["parts"][2]["tokens"], 3);
  EXPECT_EQ(j["parts"][2]["finish_reason"], "FINISH_REASON_LENGTH");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 11);
  EXPECT_EQ(j["usage"]["cached_prompt_tokens"], 0);
  EXPECT_EQ(j["sot"]["router"], "trained");
  EXPECT_EQ(j["sot"]["router_decision"], "ROUTER_DECISION_SKELETON_OF_THOUGHT");
  EXPECT_EQ(j["sot"]["fell_back"], false);
  EXPECT_EQ(j["sot"]["points"][1]["text"], "Milk");
  EXPECT_DOUBLE_EQ(j["sot"]["expansion_seconds"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["ttft_s"].get<double>(), 0.05);

  const nlohmann::json failed = ResultJson(StreamAssembly(kSent), 8, "queue full");
  EXPECT_EQ(failed["status"], "RESOURCE_EXHAUSTED");
  EXPECT_EQ(failed["error"], "queue full");
  EXPECT_TRUE(failed["sot"].is_null());
  EXPECT_TRUE(failed["usage"].is_null());
  EXPECT_TRUE(failed["decoding_mode"].is_null());
  EXPECT_TRUE(failed["ttft_s"].is_null());
}

}  // namespace
}  // namespace tern::cli
