#include "tools/cli/cli_options.h"

#include "gtest/gtest.h"

namespace tern::cli {
namespace {

absl::StatusOr<CliOptions> Parse(std::vector<std::string> args) {
  bool help = false;
  return ParseCliArgs(args, CliOptions(), &help);
}

void ExpectError(std::vector<std::string> args, const std::string& part) {
  const absl::StatusOr<CliOptions> o = Parse(args);
  ASSERT_FALSE(o.ok()) << "accepted: " << part;
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(o.status().message()).find(part), std::string::npos) << o.status().message();
}

TEST(CliOptionsTest, GenerateDefaultsToAutoWithoutSotOptions) {
  const absl::StatusOr<CliOptions> o = Parse({"generate", "-m", "tiny", "Hello"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, "generate");
  EXPECT_EQ(o->model, "tiny");
  EXPECT_EQ(o->args, std::vector<std::string>{"Hello"});
  EXPECT_EQ(o->mode, ModeFlag::kAuto);
  EXPECT_TRUE(o->outline.empty());
  EXPECT_FALSE(o->ordered);
  EXPECT_FALSE(o->max_point_tokens.has_value());
  EXPECT_FALSE(o->max_tokens.has_value());
  EXPECT_FALSE(o->temperature.has_value());
  EXPECT_FALSE(o->json);
  EXPECT_EQ(o->target, "localhost:50051");
}

TEST(CliOptionsTest, JsonAppliesToEveryCommand) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--json", "health"}, {"models", "--json"}, {"tokenize", "--json", "-m", "m", "x"},
        {"detokenize", "-m", "m", "--json", "1", "2"}, {"generate", "-m", "m", "--json", "x"},
        {"image", "-m", "m", "--class", "Bag", "--json"}}) {
    const absl::StatusOr<CliOptions> o = Parse(args);
    ASSERT_TRUE(o.ok()) << args[0] << ": " << o.status();
    EXPECT_TRUE(o->json) << args[0];
  }
}

TEST(CliOptionsTest, SotFlagsParseAndOutlinesAddUp) {
  const absl::StatusOr<CliOptions> o =
      Parse({"--target=h:1", "chat", "--mode", "sot", "--outline", " a; b ;c", "--outline=d", "--ordered",
             "--max-point-tokens", "64", "--max-tokens=300", "--temperature", "0", "--json", "-m", "tiny", "Why?"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->target, "h:1");
  EXPECT_EQ(o->command, "chat");
  EXPECT_EQ(o->mode, ModeFlag::kSot);
  EXPECT_EQ(o->outline, (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_TRUE(o->ordered);
  EXPECT_EQ(o->max_point_tokens.value_or(-1), 64);
  EXPECT_EQ(o->max_tokens.value_or(-1), 300);
  EXPECT_EQ(o->temperature.value_or(-1), 0);
  EXPECT_TRUE(o->json);
  EXPECT_EQ(Parse({"generate", "--mode", "normal", "-m", "m", "x"})->mode, ModeFlag::kNormal);
}

TEST(CliOptionsTest, DefaultsFromTheEnvironmentYieldToFlags) {
  CliOptions defaults;
  defaults.target = "env:1";
  defaults.api_key = "env-key";
  bool help = false;
  const absl::StatusOr<CliOptions> o = ParseCliArgs({"--api-key", "flag-key", "models"}, defaults, &help);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->target, "env:1");
  EXPECT_EQ(o->api_key, "flag-key");
}

TEST(CliOptionsTest, TlsFlags) {
  const absl::StatusOr<CliOptions> o =
      Parse({"--tls-ca", "ca.pem", "--tls-cert=c.pem", "--tls-key", "c.key", "health"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->tls());
  EXPECT_EQ(o->tls_ca, "ca.pem");
  EXPECT_EQ(o->tls_cert, "c.pem");
  EXPECT_EQ(o->tls_key, "c.key");
  EXPECT_FALSE(Parse({"health"})->tls());
  ExpectError({"--tls-cert", "c.pem", "health"}, "--tls-cert and --tls-key go together");
}

TEST(CliOptionsTest, HelpIsNotAnError) {
  bool help = false;
  EXPECT_TRUE(ParseCliArgs({"generate", "--help"}, CliOptions(), &help).ok());
  EXPECT_TRUE(help);
  EXPECT_NE(std::string(CliUsage()).find("--mode auto|sot|normal"), std::string::npos);
}

TEST(CliOptionsTest, RejectsBadValuesAndMisplacedFlags) {
  ExpectError({}, "no command");
  ExpectError({"generate", "--mode", "fast", "x"}, "--mode");
  ExpectError({"generate", "--outline", "a;;b", "x"}, "empty point");
  ExpectError({"generate", "--outline", ";", "x"}, "empty point");
  ExpectError({"generate", "--max-point-tokens", "0", "x"}, "--max-point-tokens");
  ExpectError({"generate", "--max-point-tokens", "4097", "x"}, "--max-point-tokens");
  ExpectError({"generate", "--max-tokens", "12x", "x"}, "--max-tokens");
  ExpectError({"generate", "--temperature", "-1", "x"}, "--temperature");
  ExpectError({"--timeout", "0", "health"}, "--timeout");
  ExpectError({"generate", "--ordered=yes", "x"}, "takes no value");
  ExpectError({"generate", "--json=1", "x"}, "takes no value");
  ExpectError({"generate", "--max-tokens"}, "needs a value");
  ExpectError({"generate", "--bogus", "x"}, "unknown flag --bogus");
  ExpectError({"generate", "--mode", "normal", "--outline", "a;b", "x"}, "--outline");
  ExpectError({"generate", "--ordered", "--mode", "normal", "x"}, "--ordered");
  ExpectError({"generate", "--max-point-tokens", "8", "--mode=normal", "x"}, "--max-point-tokens");
  ExpectError({"models", "--mode", "sot"}, "--mode applies to generate and chat only");
  ExpectError({"generate", "--system", "s", "-m", "m", "x"}, "--system applies to chat only");
}

TEST(CliOptionsTest, ImageOptions) {
  const absl::StatusOr<CliOptions> o =
      Parse({"image", "-m", "tern-demo-dit", "--class", "Sneaker", "-o", "out.png", "--steps", "20", "--guidance",
             "1.5", "--sampler", "dpm++2m", "--seed", "18446744073709551615", "--count", "3", "--json"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->command, "image");
  EXPECT_EQ(o->class_name, "Sneaker");
  EXPECT_FALSE(o->class_label.has_value());
  EXPECT_EQ(o->output, "out.png");
  EXPECT_EQ(o->steps, 20);
  EXPECT_EQ(o->guidance, 1.5f);
  EXPECT_EQ(o->sampler, "dpm++2m");
  EXPECT_EQ(o->seed, 18446744073709551615ull);
  EXPECT_EQ(o->count, 3);
  EXPECT_TRUE(o->json);

  const absl::StatusOr<CliOptions> label = Parse({"image", "-m", "m", "--class-label", "7"});
  ASSERT_TRUE(label.ok()) << label.status();
  EXPECT_EQ(label->class_label, 7);
  EXPECT_EQ(label->output, "image.png");
  EXPECT_EQ(label->count, 1);
  const absl::StatusOr<CliOptions> prompt = Parse({"image", "-m", "m", "a red fox"});
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(prompt->args, (std::vector<std::string>{"a red fox"}));
}

TEST(CliOptionsTest, ImageErrors) {
  ExpectError({"image", "-m", "m"}, "exactly one of --class NAME, --class-label N or a text prompt");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--class-label", "3"}, "exactly one of");
  ExpectError({"image", "-m", "m", "--class", "Bag", "a prompt"}, "exactly one of");
  ExpectError({"image", "-m", "m", "two", "prompts"}, "image takes one prompt; quote it");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--steps", "0"}, "--steps: expected an integer in [1, 1000]");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--steps", "1001"}, "--steps");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--count", "17"}, "--count: expected an integer in [1, 16]");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--guidance", "nan"}, "--guidance");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--guidance", "-1"}, "--guidance");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--sampler", "heun"}, "expected ddim, dpm++2m, euler or schedule");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--seed", "-3"}, "--seed");
  ExpectError({"image", "-m", "m", "--class", "Bag", "-o", ""}, "empty file name");
  ExpectError({"image", "-m", "m", "--class", "Bag", "--max-tokens", "3"}, "--max-tokens applies to generate and chat only");
  ExpectError({"generate", "-m", "m", "--steps", "3", "x"}, "--steps applies to image only");
}

TEST(CliOptionsTest, NegativeNumbersArePositional) {
  const absl::StatusOr<CliOptions> o = Parse({"detokenize", "-m", "m", "5", "-1"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->args, (std::vector<std::string>{"5", "-1"}));
}

}  // namespace
}  // namespace tern::cli
