#include "loadtest/request_builder.h"

#include "gtest/gtest.h"

namespace tern::loadtest {
namespace {

LoadOptions Options() {
  LoadOptions o;
  o.model = "tiny";
  o.seed = 7;
  o.tenants = {{"", 1}};
  return o;
}

PlannedRequest Planned(bool sot) {
  PlannedRequest r;
  r.index = 3;
  r.prompt = 1;
  r.max_tokens = 40;
  r.sot = sot;
  return r;
}

const std::vector<std::string> kPrompts = {"zero", "one"};

TEST(RequestBuilderTest, NormalRequestCarriesNoSotOptions) {
  LoadOptions o = Options();
  o.temperature = 0.5f;
  const tern::v1::GenerateRequest r = BuildGenerateRequest(o, Planned(false), kPrompts);
  EXPECT_EQ(r.model(), "tiny");
  EXPECT_EQ(r.text(), "one");
  EXPECT_EQ(r.request_id(), "tern-load-7-3");
  EXPECT_EQ(r.sampling().max_tokens(), 40);
  EXPECT_FLOAT_EQ(r.sampling().temperature(), 0.5f);
  EXPECT_FALSE(r.sampling().ignore_eos());
  EXPECT_EQ(r.decoding_mode(), tern::v1::DECODING_MODE_NORMAL);
  EXPECT_FALSE(r.has_sot());
}

TEST(RequestBuilderTest, SotRequestsCarryTheSyntheticOutlineAndIgnoreEos) {
  LoadOptions o = Options();
  o.decoding_mode = DecodingChoice::kAuto;
  o.sot_share = 0.5;
  o.sot_outline_points = 3;
  o.sot_point_tokens = 12;
  const tern::v1::GenerateRequest sot = BuildGenerateRequest(o, Planned(true), kPrompts);
  EXPECT_EQ(sot.decoding_mode(), tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
  ASSERT_EQ(sot.sot().outline_size(), 3);
  EXPECT_EQ(sot.sot().outline(0), "Part 1");
  EXPECT_EQ(sot.sot().outline(2), "Part 3");
  EXPECT_EQ(sot.sot().max_point_tokens(), 12);
  EXPECT_FALSE(sot.sot().ordered());
  EXPECT_TRUE(sot.sampling().ignore_eos());
  // The rest go as --decoding-mode: AUTO with the point budget, never an
  // outline (an outline would force SoT).
  const tern::v1::GenerateRequest rest = BuildGenerateRequest(o, Planned(false), kPrompts);
  EXPECT_EQ(rest.decoding_mode(), tern::v1::DECODING_MODE_AUTO);
  EXPECT_EQ(rest.sot().outline_size(), 0);
  EXPECT_EQ(rest.sot().max_point_tokens(), 12);
  EXPECT_FALSE(rest.sampling().ignore_eos());
}

TEST(RequestBuilderTest, SyntheticPromptsGoAsTokenIds) {
  LoadOptions o = Options();
  o.synthetic_prompt_tokens = 3;
  PlannedRequest p = Planned(false);
  p.prompt = -1;
  p.token_ids = {5, 6, 7};
  const tern::v1::GenerateRequest r = BuildGenerateRequest(o, p, {});
  ASSERT_TRUE(r.has_token_ids());
  EXPECT_EQ(r.token_ids().ids_size(), 3);
  EXPECT_EQ(SyntheticOutline(2), (std::vector<std::string>{"Part 1", "Part 2"}));
}

}  // namespace
}  // namespace tern::loadtest
