#include "loadtest/options.h"

#include "gtest/gtest.h"

namespace tern::loadtest {
namespace {

absl::StatusOr<LoadOptions> Parse(std::vector<std::string> args) {
  bool help = false;
  return ParseLoadOptions(args, &help);
}

// A valid open-loop command line; tests append to or edit it.
std::vector<std::string> Base() {
  return {"--model", "tiny", "--rate", "5", "--duration", "10", "--prompts", "p.txt"};
}

void ExpectError(std::vector<std::string> args, const std::string& part) {
  const absl::StatusOr<LoadOptions> o = Parse(args);
  ASSERT_FALSE(o.ok()) << "accepted: " << part;
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(o.status().message()).find(part), std::string::npos) << o.status().message();
}

TEST(OptionsTest, OpenLoopDefaults) {
  const absl::StatusOr<LoadOptions> o = Parse(Base());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, ArrivalMode::kPoisson);
  EXPECT_DOUBLE_EQ(o->rate, 5);
  EXPECT_DOUBLE_EQ(*o->duration_s, 10);
  EXPECT_FALSE(o->num_requests.has_value());
  EXPECT_DOUBLE_EQ(o->max_time_s, 70);  // duration + 60
  EXPECT_EQ(o->target, "127.0.0.1:50051");
  EXPECT_EQ(o->max_tokens, 128);
  ASSERT_EQ(o->tenants.size(), 1u);
  EXPECT_EQ(o->tenants[0].api_key, "");
  EXPECT_EQ(o->seed, 0u);
}

TEST(OptionsTest, EveryFlagParses) {
  const absl::StatusOr<LoadOptions> o = Parse(
      {"--model=m", "--target", "127.0.0.1:9", "--connections", "4", "--concurrency", "32", "--requests", "500",
       "--max-in-flight", "64", "--max-time", "30", "--timeout", "5", "--synthetic-prompt-tokens", "256",
       "--synthetic-token-range", "10:20", "--max-tokens-dist", "uniform:16:64", "--temperature", "0",
       "--ignore-eos", "--tenant-mix", "keyA:3,keyB:1", "--seed", "18446744073709551615", "--slo-ttft-ms", "500",
       "--slo-tpot-ms", "50", "--json", "out.json", "--json-requests", "--progress"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model, "m");
  EXPECT_EQ(o->target, "127.0.0.1:9");
  EXPECT_EQ(o->connections, 4);
  EXPECT_EQ(o->mode, ArrivalMode::kClosedLoop);
  EXPECT_EQ(o->concurrency, 32);
  EXPECT_EQ(*o->num_requests, 500);
  EXPECT_FALSE(o->duration_s.has_value());
  EXPECT_EQ(o->max_in_flight, 64);
  EXPECT_DOUBLE_EQ(o->max_time_s, 30);
  EXPECT_DOUBLE_EQ(o->request_timeout_s, 5);
  EXPECT_EQ(o->synthetic_prompt_tokens, 256);
  EXPECT_EQ(o->synthetic_token_lo, 10);
  EXPECT_EQ(o->synthetic_token_hi, 20);
  EXPECT_EQ(*o->max_tokens_lo, 16);
  EXPECT_EQ(*o->max_tokens_hi, 64);
  EXPECT_FLOAT_EQ(*o->temperature, 0);
  EXPECT_TRUE(o->ignore_eos);
  ASSERT_EQ(o->tenants.size(), 2u);
  EXPECT_EQ(o->tenants[0].api_key, "keyA");
  EXPECT_DOUBLE_EQ(o->tenants[0].weight, 3);
  EXPECT_EQ(o->tenants[1].api_key, "keyB");
  EXPECT_EQ(o->seed, 18446744073709551615u);
  EXPECT_DOUBLE_EQ(*o->slo.ttft_ms, 500);
  EXPECT_DOUBLE_EQ(*o->slo.tpot_ms, 50);
  EXPECT_EQ(o->json_path, "out.json");
  EXPECT_TRUE(o->json_requests);
  EXPECT_TRUE(o->force_progress);
}

TEST(OptionsTest, ConstantArrivalsAndRequestsOnlyGetDefaultMaxTime) {
  std::vector<std::string> args = {"--model", "m", "--rate", "2", "--arrival", "constant", "--requests", "9",
                                   "--prompts", "p.csv", "--prompts-format", "csv", "--api-key", "k1"};
  const absl::StatusOr<LoadOptions> o = Parse(args);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, ArrivalMode::kConstant);
  EXPECT_DOUBLE_EQ(o->max_time_s, 600);
  EXPECT_EQ(o->prompts_format, PromptFormat::kCsv);
  ASSERT_EQ(o->tenants.size(), 1u);
  EXPECT_EQ(o->tenants[0].api_key, "k1");
}

TEST(OptionsTest, ImageFlags) {
  const absl::StatusOr<LoadOptions> mixed =
      Parse({"--model", "m", "--rate", "2", "--duration", "5", "--prompts", "p.csv", "--image-model", "dit",
             "--image-share", "0.3", "--image-steps", "10:30", "--image-classes", "4", "--image-guidance", "2.5"});
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(mixed->image_model, "dit");
  EXPECT_DOUBLE_EQ(mixed->image_share, 0.3);
  EXPECT_EQ(mixed->image_steps_lo, 10);
  EXPECT_EQ(mixed->image_steps_hi, 30);
  EXPECT_EQ(mixed->image_classes, 4);
  EXPECT_FLOAT_EQ(*mixed->image_guidance, 2.5f);
  // Images only: no LLM model and no prompts needed.
  const absl::StatusOr<LoadOptions> only =
      Parse({"--concurrency", "16", "--requests", "64", "--image-model", "dit", "--image-share", "1", "--image-steps", "20"});
  ASSERT_TRUE(only.ok()) << only.status();
  EXPECT_EQ(only->image_steps_lo, 20);
  EXPECT_EQ(only->image_steps_hi, 20);
  ExpectError({"--api", "openai", "--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--image-model",
               "d", "--image-share", "1"},
              "--image-model: needs --api grpc");
  ExpectError({"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--image-model", "d",
               "--image-share", "0.5", "--image-steps", "0"},
              "--image-steps: expected an integer in [1, 1000]");
  ExpectError({"--model", "m", "--rate", "1", "--duration", "1", "--image-model", "d", "--image-share", "0.5"},
              "--prompts FILE or --synthetic-prompt-tokens");
}

TEST(OptionsTest, HelpIsNotAnError) {
  bool help = false;
  EXPECT_TRUE(ParseLoadOptions({"--help"}, &help).ok());
  EXPECT_TRUE(help);
}

TEST(OptionsTest, TlsFlags) {
  auto args = Base();
  args.insert(args.end(), {"--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "c.key"});
  const absl::StatusOr<LoadOptions> o = Parse(args);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->tls_ca, "ca.pem");
  EXPECT_EQ(o->tls_cert, "c.pem");
  EXPECT_EQ(o->tls_key, "c.key");
  auto cert_alone = Base();
  cert_alone.insert(cert_alone.end(), {"--tls-cert", "c.pem"});
  ExpectError(cert_alone, "--tls-key go together");
  std::vector<std::string> openai = {"--api", "openai", "--model", "m", "--rate", "1", "--duration", "1",
                                     "--prompts", "p", "--tls-ca", "ca.pem"};
  ExpectError(openai, "TLS applies to --api grpc");
}

TEST(OptionsTest, RejectsMissingOrContradictoryFlags) {
  ExpectError({"--rate", "5", "--duration", "10", "--prompts", "p"}, "--model");
  ExpectError({"--model", "m", "--duration", "10", "--prompts", "p"}, "--rate");
  ExpectError({"--model", "m", "--rate", "1", "--concurrency", "2", "--duration", "1", "--prompts", "p"},
              "exactly one of --rate");
  ExpectError({"--model", "m", "--rate", "1", "--prompts", "p"}, "--duration");
  ExpectError({"--model", "m", "--rate", "1", "--duration", "1"}, "--prompts");
  ExpectError({"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--synthetic-prompt-tokens", "8"},
              "exactly one of --prompts");
  ExpectError({"--model", "m", "--concurrency", "4", "--arrival", "poisson", "--duration", "1", "--prompts", "p"},
              "--arrival");
  ExpectError({"--model", "m", "--concurrency", "40", "--max-in-flight", "8", "--duration", "1", "--prompts", "p"},
              "--max-in-flight");
  auto both_lengths = Base();
  both_lengths.insert(both_lengths.end(), {"--max-tokens", "5", "--max-tokens-dist", "uniform:1:2"});
  ExpectError(both_lengths, "--max-tokens");
  auto both_keys = Base();
  both_keys.insert(both_keys.end(), {"--api-key", "a", "--tenant-mix", "b:1"});
  ExpectError(both_keys, "--api-key");
  auto json_requests = Base();
  json_requests.push_back("--json-requests");
  ExpectError(json_requests, "--json-requests");
}

TEST(OptionsTest, RejectsMalformedValues) {
  const auto with = [](std::vector<std::string> extra) {
    std::vector<std::string> args = Base();
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  ExpectError({"--model", "m", "--rate", "0", "--duration", "1", "--prompts", "p"}, "--rate");
  ExpectError({"--model", "m", "--rate", "-3", "--duration", "1", "--prompts", "p"}, "--rate");
  ExpectError({"--model", "m", "--rate", "fast", "--duration", "1", "--prompts", "p"}, "--rate");
  ExpectError({"--model", "m", "--rate", "inf", "--duration", "1", "--prompts", "p"}, "--rate");
  ExpectError({"--model", "m", "--rate", "1", "--duration", "1", "--prompts", "p", "--arrival", "burst"},
              "--arrival");
  ExpectError(with({"--max-tokens", "0"}), "--max-tokens");
  ExpectError(with({"--max-tokens", "12x"}), "--max-tokens");
  ExpectError(with({"--max-tokens-dist", "normal:1:5"}), "--max-tokens-dist");
  ExpectError(with({"--max-tokens-dist", "uniform:9:5"}), "--max-tokens-dist");
  ExpectError(with({"--max-tokens-dist", "uniform:0:5"}), "--max-tokens-dist");
  ExpectError(with({"--max-tokens-dist", "uniform:5"}), "--max-tokens-dist");
  ExpectError(with({"--connections", "0"}), "--connections");
  ExpectError(with({"--temperature", "-1"}), "--temperature");
  ExpectError(with({"--seed", "-1"}), "--seed");
  ExpectError(with({"--slo-ttft-ms", "0"}), "--slo-ttft-ms");
  ExpectError(with({"--prompts-format", "xml"}), "--prompts-format");
  ExpectError(with({"--tenant-mix", "a:0"}), "--tenant-mix");
  ExpectError(with({"--tenant-mix", "a:1,a:2"}), "twice");
  ExpectError(with({"--tenant-mix", ":2"}), "empty API key");
  ExpectError(with({"--synthetic-token-range", "1:2"}), "--synthetic-prompt-tokens");
  ExpectError(with({"--no-such-flag", "1"}), "--no-such-flag");
  ExpectError(with({"stray"}), "stray");
  ExpectError(with({"--max-tokens"}), "needs a value");
  ExpectError(with({"--rate", "7"}), "more than once");
  ExpectError(with({"--ignore-eos=yes"}), "takes no value");
}

TEST(OptionsTest, DecodingDefaultsToNormalWithoutSot) {
  const absl::StatusOr<LoadOptions> o = Parse(Base());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->decoding_mode, DecodingChoice::kNormal);
  EXPECT_DOUBLE_EQ(o->sot_share, 0);
  EXPECT_EQ(o->sot_outline_points, 0);
  EXPECT_FALSE(o->sot_point_tokens.has_value());
}

TEST(OptionsTest, SotFlagsParse) {
  auto args = Base();
  args.insert(args.end(), {"--decoding-mode", "auto", "--sot-share=0.25", "--sot-outline-points", "4",
                           "--sot-point-tokens", "32"});
  const absl::StatusOr<LoadOptions> o = Parse(args);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->decoding_mode, DecodingChoice::kAuto);
  EXPECT_DOUBLE_EQ(o->sot_share, 0.25);
  EXPECT_EQ(o->sot_outline_points, 4);
  EXPECT_EQ(o->sot_point_tokens.value_or(-1), 32);

  auto all_sot = Base();
  all_sot.insert(all_sot.end(), {"--decoding-mode", "sot", "--sot-outline-points", "2"});
  const absl::StatusOr<LoadOptions> sot = Parse(all_sot);
  ASSERT_TRUE(sot.ok()) << sot.status();
  EXPECT_EQ(sot->decoding_mode, DecodingChoice::kSot);

  // AUTO requests may run SoT, so a point budget alone is fine there.
  auto auto_points = Base();
  auto_points.insert(auto_points.end(), {"--decoding-mode", "auto", "--sot-point-tokens", "8"});
  EXPECT_TRUE(Parse(auto_points).ok());
  EXPECT_STREQ(DecodingChoiceName(DecodingChoice::kSot), "skeleton_of_thought");
}

TEST(OptionsTest, RejectsBadOrContradictorySotFlags) {
  const auto with = [](std::vector<std::string> extra) {
    std::vector<std::string> args = Base();
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  ExpectError(with({"--decoding-mode", "skeleton"}), "--decoding-mode");
  ExpectError(with({"--sot-share", "1.5"}), "--sot-share");
  ExpectError(with({"--sot-share", "-0.1"}), "--sot-share");
  ExpectError(with({"--sot-share", "nan"}), "--sot-share");
  ExpectError(with({"--decoding-mode", "sot", "--sot-share", "0.5"}), "--sot-share");
  ExpectError(with({"--sot-share", "0.5", "--sot-outline-points", "0"}), "--sot-outline-points");
  ExpectError(with({"--sot-share", "0.5", "--sot-outline-points", "65"}), "--sot-outline-points");
  ExpectError(with({"--sot-share", "0.5", "--sot-point-tokens", "4097"}), "--sot-point-tokens");
  ExpectError(with({"--sot-outline-points", "4"}), "needs --sot-share");
  ExpectError(with({"--sot-share", "0", "--sot-outline-points", "4"}), "needs --sot-share");
  ExpectError(with({"--sot-point-tokens", "16"}), "needs --sot-share");
}

TEST(OptionsTest, TenantMixWeightDefaultsToOne) {
  const absl::StatusOr<std::vector<TenantWeight>> mix = ParseTenantMix("a,b:2.5");
  ASSERT_TRUE(mix.ok()) << mix.status();
  ASSERT_EQ(mix->size(), 2u);
  EXPECT_DOUBLE_EQ((*mix)[0].weight, 1);
  EXPECT_DOUBLE_EQ((*mix)[1].weight, 2.5);
}

}  // namespace
}  // namespace tern::loadtest
