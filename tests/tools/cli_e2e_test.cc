// End-to-end: the tern binary against the real ternd serving a tiny random
// Llama on loopback, with Skeleton-of-Thought. Random weights write no
// usable skeleton, so the points come from --outline, whose lengths
// --max-point-tokens fixes.
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {
namespace {

using std::chrono::seconds;

class TernCliE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // tiny-llama3 has a chat template, which chat needs.
    daemon_ = new DaemonProcess(StartOrDie(
        {"--model", MakeTinyModel(*dir_, "tiny-llama") + "," + MakeTinyModel(*dir_, "tiny-llama3", "llama3")}));
  }
  static void TearDownTestSuite() {
    delete daemon_;
    delete dir_;
  }

  static ProcessResult Tern(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("tern"), "--target", daemon_->grpc_target()});
    return RunProcess(args, seconds(120));
  }

  static TempDir* dir_;
  static DaemonProcess* daemon_;
};

TempDir* TernCliE2eTest::dir_ = nullptr;
DaemonProcess* TernCliE2eTest::daemon_ = nullptr;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return lines;
}

// --json on the one-shot commands: one object on stdout with "status", the
// result, and "error" when the call failed; exit 0, or 1 when it failed.
TEST_F(TernCliE2eTest, OneShotCommandsPrintJsonAndExitByOutcome) {
  // The object's line (stdout and stderr are merged, in no fixed order).
  const auto json_of = [](const ProcessResult& run) {
    for (const std::string& line : Lines(run.output)) {
      if (!line.empty() && line[0] == '{') return nlohmann::json::parse(line, nullptr, false);
    }
    return nlohmann::json();
  };
  const ProcessResult health = Tern({"--json", "health"});
  EXPECT_EQ(health.exit_code, 0) << health.output;
  EXPECT_EQ(json_of(health)["status"], "OK") << health.output;
  EXPECT_EQ(json_of(health)["health"], "SERVING") << health.output;

  const ProcessResult models = Tern({"models", "--json"});
  ASSERT_EQ(models.exit_code, 0) << models.output;
  const nlohmann::json listed = json_of(models);
  ASSERT_EQ(listed["models"].size(), 2u) << models.output;
  EXPECT_EQ(listed["models"][0]["name"], "tiny-llama") << models.output;
  EXPECT_GT(listed["models"][0]["context_length"].get<int>(), 0) << models.output;

  const ProcessResult tokens = Tern({"tokenize", "--json", "-m", "tiny-llama", "Hello there"});
  ASSERT_EQ(tokens.exit_code, 0) << tokens.output;
  const nlohmann::json ids = json_of(tokens)["ids"];
  ASSERT_TRUE(ids.is_array() && !ids.empty()) << tokens.output;
  std::vector<std::string> detokenize = {"detokenize", "--json", "-m", "tiny-llama"};
  for (const auto& id : ids) detokenize.push_back(std::to_string(id.get<int>()));
  const ProcessResult text = Tern(detokenize);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(json_of(text)["text"].get<std::string>().find("Hello there"), std::string::npos) << text.output;

  // A failed call: its code and message in the object (the usual line goes to stderr), exit 1.
  const ProcessResult missing = Tern({"tokenize", "--json", "-m", "no-such-model", "x"});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_EQ(json_of(missing)["status"], "NOT_FOUND") << missing.output;
  EXPECT_TRUE(json_of(missing)["error"].is_string()) << missing.output;
  // Nobody listening: UNAVAILABLE, not serving, exit 1; bad usage stays 2.
  const ProcessResult down = RunProcess({BinaryPath("tern"), "--target", "127.0.0.1:1", "--timeout", "5",
                                         "--json", "health"}, seconds(30));
  EXPECT_EQ(down.exit_code, 1) << down.output;
  EXPECT_EQ(json_of(down)["status"], "UNAVAILABLE") << down.output;
  EXPECT_EQ(json_of(down)["health"], "NOT_SERVING") << down.output;
  EXPECT_EQ(Tern({"tokenize", "--json"}).exit_code, 2);
}

TEST_F(TernCliE2eTest, OutlineExpandsEveryPointAsJson) {
  const ProcessResult run = Tern({"generate", "-m", "tiny-llama", "--outline", "Water; Leaves", "--outline", "Time",
                                  "--max-point-tokens", "4", "--temperature", "0", "--json", "How do I make tea?"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  // stdout's JSON line, then the summary on stderr (the test merges them).
  const std::vector<std::string> lines = Lines(run.output);
  ASSERT_EQ(lines.size(), 2u) << run.output;
  const nlohmann::json j = nlohmann::json::parse(lines[0], nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << lines[0];
  EXPECT_EQ(j["status"], "OK");
  EXPECT_EQ(j["decoding_mode"], "DECODING_MODE_SKELETON_OF_THOUGHT") << j.dump(2);
  EXPECT_EQ(j["sot"]["router_decision"], "ROUTER_DECISION_NOT_ROUTED");
  EXPECT_FALSE(j["sot"]["fell_back"].get<bool>());
  ASSERT_EQ(j["sot"]["points"].size(), 3u) << j.dump(2);
  const std::vector<std::string> labels = {"1. Water ", "2. Leaves ", "3. Time "};
  int points = 0;
  for (const nlohmann::json& part : j["parts"]) {
    if (part["part"] != "CHOICE_PART_POINT") continue;
    const int index = part["index"].get<int>();
    ASSERT_GE(index, 0);
    ASSERT_LT(index, 3);
    EXPECT_EQ(part["text"].get<std::string>().rfind(labels[index], 0), 0u) << part.dump();
    EXPECT_EQ(part["tokens"], 4) << part.dump();
    ++points;
  }
  EXPECT_EQ(points, 3) << j.dump(2);
  EXPECT_EQ(j["text"], j["sot"]["answer"]);
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_NE(lines[1].find("tern: decoding=skeleton_of_thought router=not_routed points=3 fell_back=no"),
            std::string::npos)
      << lines[1];
  EXPECT_NE(lines[1].find("completion_tokens=12"), std::string::npos) << lines[1];
}

TEST_F(TernCliE2eTest, OutlineOnAPipePrintsTheJoinedAnswerThenTheSummary) {
  const std::vector<std::string> args = {"chat", "-m", "tiny-llama3", "--outline", "Water;Leaves", "--ordered",
                                         "--max-point-tokens", "3", "--temperature", "0", "Tea?"};
  const ProcessResult run = Tern(args);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::vector<std::string> with_json = args;
  with_json.push_back("--json");
  const ProcessResult json_run = Tern(with_json);
  ASSERT_EQ(json_run.exit_code, 0) << json_run.output;
  const nlohmann::json j = nlohmann::json::parse(Lines(json_run.output).at(0), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json_run.output;
  // Greedy: the same answer both times, printed whole, then the summary.
  const std::string answer = j["text"].get<std::string>();
  EXPECT_EQ(answer.rfind("1. Water ", 0), 0u) << answer;
  EXPECT_EQ(run.output.rfind(answer + "\ntern: decoding=skeleton_of_thought", 0), 0u) << run.output;
}

TEST_F(TernCliE2eTest, SotModeEndsOkAndSaysWhatItDid) {
  // The model writes the skeleton itself; from random weights it may be too
  // short to expand, and then the request falls back to normal decoding.
  const ProcessResult run =
      Tern({"generate", "-m", "tiny-llama", "--mode", "sot", "--max-tokens", "24", "--temperature", "0", "Tea?"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("tern: decoding="), std::string::npos) << run.output;
  EXPECT_NE(run.output.find(" fell_back="), std::string::npos) << run.output;
}

TEST_F(TernCliE2eTest, NormalModeOnAPipeIsTheTextAlone) {
  const ProcessResult run = Tern({"generate", "-m", "tiny-llama", "--mode", "normal", "--max-tokens", "6",
                                  "--temperature", "0", "--json", "Hello"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::vector<std::string> lines = Lines(run.output);
  ASSERT_EQ(lines.size(), 1u) << "no summary without Skeleton-of-Thought on a pipe: " << run.output;
  const nlohmann::json j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["decoding_mode"], "DECODING_MODE_NORMAL");
  EXPECT_TRUE(j["sot"].is_null());
  const ProcessResult text = Tern({"generate", "-m", "tiny-llama", "--mode", "normal", "--max-tokens", "6",
                                   "--temperature", "0", "Hello"});
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_EQ(text.output, j["text"].get<std::string>() + "\n");
}

TEST_F(TernCliE2eTest, ServerRejectionsExitOne) {
  const ProcessResult unknown = Tern({"generate", "-m", "nope", "--mode", "sot", "x"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_NE(unknown.output.find("tern: NOT_FOUND"), std::string::npos) << unknown.output;
  const ProcessResult json = Tern({"chat", "-m", "nope", "--json", "x"});
  EXPECT_EQ(json.exit_code, 1) << json.output;
  const nlohmann::json j = nlohmann::json::parse(Lines(json.output).at(0), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json.output;
  EXPECT_EQ(j["status"], "NOT_FOUND");
  EXPECT_FALSE(j["error"].get<std::string>().empty());
}

}  // namespace
}  // namespace tern::testing
