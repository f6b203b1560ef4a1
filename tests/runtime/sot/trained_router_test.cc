// The trained SoT-R router (runtime/sot/trained_router.h): the shipped
// models/sot-router/router.json scored in C++ against the reference scores of
// tools/sot/train_router.py (tests/data/sot/router_scores.json, written by
// tools/sot/eval_router.py --write-fixture) and against the Vicuna-80 figures
// tools/sot/eval_router.py reported (models/sot-router/eval.json); malformed
// files are precise errors.
#include "runtime/sot/trained_router.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/base/delimited_text.h"
#include "tests/test_files.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

const std::string kRouterPath = std::string(TERN_MODELS_DIR) + "/sot-router/router.json";
const std::string kEvalPath = std::string(TERN_MODELS_DIR) + "/sot-router/eval.json";
const std::string kFixturePath = std::string(TERN_TEST_DATA_DIR) + "/sot/router_scores.json";
const std::string kVicunaPath = std::string(TERN_TEST_DATA_DIR) + "/sot/vicuna/router.csv";

std::unique_ptr<TrainedRouter> LoadShipped() {
  auto router = TrainedRouter::Load(kRouterPath);
  EXPECT_TRUE(router.ok()) << router.status();
  return router.ok() ? std::move(*router) : nullptr;
}

// `label;request` rows after the header, labels 0 or 1.
std::vector<std::pair<int, std::string>> ParseRouterCsv(const std::string& text) {
  std::vector<std::pair<int, std::string>> rows;
  auto records = SplitDelimitedText(text, ';');
  EXPECT_TRUE(records.ok()) << records.status();
  if (!records.ok() || records->empty()) return rows;
  EXPECT_EQ((*records)[0], (std::vector<std::string>{"label", "request"}));
  for (size_t r = 1; r < records->size(); ++r) {
    const std::vector<std::string>& record = (*records)[r];
    EXPECT_EQ(record.size(), 2u) << "record " << r;
    if (record.size() != 2) continue;
    EXPECT_TRUE(record[0] == "0" || record[0] == "1") << "record " << r;
    rows.emplace_back(record[0] == "1" ? 1 : 0, record[1]);
  }
  return rows;
}

TEST(TrainedRouterTest, MatchesPythonReferenceScores) {
  auto router = LoadShipped();
  ASSERT_NE(router, nullptr);
  const json fixture = json::parse(test_data::ReadTestFile(kFixturePath));
  const json& cases = fixture.at("cases");
  ASSERT_GE(cases.size(), 30u);
  bool saw_empty = false, saw_unicode = false, saw_long = false;
  for (const json& c : cases) {
    const std::string question = c.at("question").get<std::string>();
    saw_empty |= question.empty();
    saw_long |= question.size() > 10000;
    for (unsigned char ch : question) saw_unicode |= ch >= 0x80;
    const double score = router->Score(question);
    EXPECT_NEAR(score, c.at("score").get<double>(), 1e-9)
        << "question: " << question.substr(0, 120)
        << "\n(after retraining, rerun tools/sot/eval_router.py --write-fixture " << kFixturePath << ")";
    EXPECT_EQ(router->SuitsSot(question), c.at("suits_sot").get<bool>()) << question.substr(0, 120);
  }
  EXPECT_TRUE(saw_empty);
  EXPECT_TRUE(saw_unicode);
  EXPECT_TRUE(saw_long);
}

TEST(TrainedRouterTest, Vicuna80AccuracyEqualsThePythonEvaluation) {
  auto router = LoadShipped();
  ASSERT_NE(router, nullptr);
  const auto rows = ParseRouterCsv(test_data::ReadTestFile(kVicunaPath));
  ASSERT_EQ(rows.size(), 80u);
  const json report = json::parse(test_data::ReadTestFile(kEvalPath));
  EXPECT_EQ(report.at("data").get<std::string>(), "tests/data/sot/vicuna/router.csv");
  EXPECT_EQ(report.at("threshold").get<double>(), router->threshold());
  const json& scores = report.at("scores");
  ASSERT_EQ(scores.size(), rows.size());
  int tp = 0, fp = 0, fn = 0, tn = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const double score = router->Score(rows[i].second);
    EXPECT_NEAR(score, scores[i].get<double>(), 5e-7) << rows[i].second;  // eval.json rounds to 6 places
    const bool sot = router->SuitsSot(rows[i].second);
    tp += sot && rows[i].first == 1;
    fp += sot && rows[i].first == 0;
    fn += !sot && rows[i].first == 1;
    tn += !sot && rows[i].first == 0;
  }
  const json& figures = report.at("results").at("trained_router");
  EXPECT_EQ(tp, figures.at("tp").get<int>());
  EXPECT_EQ(fp, figures.at("fp").get<int>());
  EXPECT_EQ(fn, figures.at("fn").get<int>());
  EXPECT_EQ(tn, figures.at("tn").get<int>());
  EXPECT_NEAR(static_cast<double>(tp + tn) / rows.size(), figures.at("accuracy").get<double>(), 1e-6);
}

TEST(TrainedRouterTest, TokenizesAsciiCaseInsensitivelyAndSplitsOnEveryOtherByte) {
  auto router = LoadShipped();
  ASSERT_NE(router, nullptr);
  const double plain = router->Score("how can i improve my time management skills");
  EXPECT_EQ(router->Score("HOW can I improve my TIME-management skills?!"), plain);
  EXPECT_EQ(router->Score("  how\tcan\ni\r\nimprove my time, management skills  "), plain);
  // Bytes >= 0x80 separate tokens, whether or not they are valid UTF-8.
  EXPECT_EQ(router->Score("how\xff" "can\xc3\xa9i\x80improve my time management skills"), plain);
  // Repeated features count once.
  EXPECT_EQ(router->Score("how can i improve my time management skills how can i"),
            router->Score("how can i improve my time management skills"));
  EXPECT_EQ(router->Score(std::string_view("how\0can", 7)), router->Score("how can"));
}

TEST(TrainedRouterTest, ScoresAreProbabilitiesAndTheDecisionUsesTheThreshold) {
  auto router = LoadShipped();
  ASSERT_NE(router, nullptr);
  EXPECT_GT(router->threshold(), 0.0);
  EXPECT_LT(router->threshold(), 1.0);
  EXPECT_GT(router->num_features(), 100u);
  for (const std::string& q : std::vector<std::string>{"", "x", "What are the main differences between Python "
                                                       "and JavaScript?", "Solve 3x + 10 = 5(x - 2)",
                                                       std::string(100000, 'z')}) {
    const double score = router->Score(q);
    EXPECT_GE(score, 0.0);
    EXPECT_LE(score, 1.0);
    EXPECT_EQ(router->SuitsSot(q), score >= router->threshold());
  }
}

TEST(TrainedRouterTest, ConcurrentScoresEqualSerialOnes) {
  auto router = LoadShipped();
  ASSERT_NE(router, nullptr);
  const auto rows = ParseRouterCsv(test_data::ReadTestFile(kVicunaPath));
  std::vector<double> serial;
  for (const auto& [label, question] : rows) serial.push_back(router->Score(question));
  std::vector<std::vector<double>> parallel(4);
  std::vector<std::thread> threads;
  for (auto& out : parallel) {
    threads.emplace_back([&router, &rows, &out] {
      for (int repeat = 0; repeat < 20; ++repeat) {
        out.clear();
        for (const auto& [label, question] : rows) out.push_back(router->Score(question));
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& out : parallel) EXPECT_EQ(out, serial);
}

// A small valid router.json, for breaking one field at a time.
json SmallRouter() {
  return json::parse(R"({
    "format": "tern-sot-router", "version": 1,
    "features": {"tokenizer": "ascii-alnum-lower-v1", "orders": [1, 2], "bos": "<s>", "value": "l2"},
    "bias": -0.5, "threshold": 0.5,
    "weights": {"how": 1.0, "<s> how": 0.5, "how to": -0.25, "solve": -2.0}
  })");
}

class MalformedRouterTest : public ::testing::Test {
 protected:
  // Writes `text` to a fresh file and loads it.
  absl::StatusOr<std::unique_ptr<TrainedRouter>> LoadText(const std::string& text) {
    path_ = (std::filesystem::path(::testing::TempDir()) /
             (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ".json"))
                .string();
    std::ofstream(path_, std::ios::binary) << text;
    return TrainedRouter::Load(path_);
  }

  // Expects INVALID_ARGUMENT naming the file and `field`.
  void ExpectInvalid(const std::string& text, const std::string& field) {
    auto router = LoadText(text);
    ASSERT_FALSE(router.ok()) << "loaded: " << text;
    EXPECT_EQ(router.status().code(), absl::StatusCode::kInvalidArgument) << router.status();
    const std::string message(router.status().message());
    EXPECT_NE(message.find(path_), std::string::npos) << message;
    EXPECT_NE(message.find(field), std::string::npos) << "no \"" << field << "\" in " << message;
  }

  std::string path_;
};

TEST_F(MalformedRouterTest, SmallRouterLoadsAndScoresByTheRule) {
  auto router = LoadText(SmallRouter().dump());
  ASSERT_TRUE(router.ok()) << router.status();
  // "how to solve": how, solve, <s> how, how to -> k = 4, s = 1 - 2 + 0.5 - 0.25.
  const double z = -0.5 + (1.0 + 0.5 - 0.25 - 2.0) / 2.0;
  EXPECT_NEAR((*router)->Score("How to solve"), 1.0 / (1.0 + std::exp(-z)), 1e-15);
  EXPECT_NEAR((*router)->Score(""), 1.0 / (1.0 + std::exp(0.5)), 1e-15);
  // A "how" that does not lead the question misses the "<s> how" feature.
  EXPECT_NEAR((*router)->Score("so how"), 1.0 / (1.0 + std::exp(-(-0.5 + 1.0))), 1e-15);
}

TEST_F(MalformedRouterTest, TruncatedJson) {
  const std::string text = SmallRouter().dump();
  ExpectInvalid(text.substr(0, text.size() / 2), "not valid JSON");
}

TEST_F(MalformedRouterTest, NotAnObject) { ExpectInvalid("[1, 2]", "(root)"); }

TEST_F(MalformedRouterTest, WrongFormatOrVersion) {
  json doc = SmallRouter();
  doc["format"] = "something-else";
  ExpectInvalid(doc.dump(), "format");
  doc = SmallRouter();
  doc["version"] = 2;
  ExpectInvalid(doc.dump(), "version");
  doc["version"] = "1";
  ExpectInvalid(doc.dump(), "version");
}

TEST_F(MalformedRouterTest, NanOrInfiniteWeight) {
  // JSON has no NaN literal: a writer that emits one makes an invalid file.
  std::string text = SmallRouter().dump();
  const std::string from = "\"solve\":-2.0";
  ASSERT_NE(text.find(from), std::string::npos) << text;
  ExpectInvalid(std::string(text).replace(text.find(from), from.size(), "\"solve\":NaN"), "not valid JSON");
  json doc = SmallRouter();
  doc["weights"]["solve"] = std::numeric_limits<double>::quiet_NaN();  // dumped as null
  ExpectInvalid(doc.dump(), "weights[\"solve\"]");
  ExpectInvalid(std::string(text).replace(text.find(from), from.size(), "\"solve\":1e999"), "1e999");
  doc = SmallRouter();
  doc["weights"]["solve"] = "2";
  ExpectInvalid(doc.dump(), "weights[\"solve\"]");
}

TEST_F(MalformedRouterTest, MissingOrBadThreshold) {
  json doc = SmallRouter();
  doc.erase("threshold");
  ExpectInvalid(doc.dump(), "threshold: missing");
  for (const json& bad : {json(1.5), json(-0.1), json("0.5"), json(nullptr)}) {
    doc["threshold"] = bad;
    ExpectInvalid(doc.dump(), "threshold");
  }
}

TEST_F(MalformedRouterTest, MissingOrMistypedFields) {
  for (const char* field : {"format", "version", "features", "bias", "weights"}) {
    json doc = SmallRouter();
    doc.erase(field);
    ExpectInvalid(doc.dump(), std::string(field) + ": missing");
  }
  for (const char* field : {"tokenizer", "orders", "bos", "value"}) {
    json doc = SmallRouter();
    doc["features"].erase(field);
    ExpectInvalid(doc.dump(), std::string("features.") + field + ": missing");
  }
  json doc = SmallRouter();
  doc["features"]["tokenizer"] = "wordpiece";
  ExpectInvalid(doc.dump(), "features.tokenizer");
  doc = SmallRouter();
  doc["features"]["value"] = "tfidf";
  ExpectInvalid(doc.dump(), "features.value");
  doc = SmallRouter();
  doc["bias"] = "zero";
  ExpectInvalid(doc.dump(), "bias");
  doc = SmallRouter();
  doc["weights"] = json::object();
  ExpectInvalid(doc.dump(), "weights");
}

TEST_F(MalformedRouterTest, BadOrdersOrFeatureKeys) {
  for (const json& orders : {json::array(), json::array({2, 1}), json::array({1, 1}),
                           json::array({0}), json::array({4}), json::array({1.5}), json(1)}) {
    json doc = SmallRouter();
    doc["features"]["orders"] = orders;
    ExpectInvalid(doc.dump(), "features.orders");
  }
  for (const std::string key : {"How", "how  to", "how to be", "<s>", "a-b", ""}) {
    json doc = SmallRouter();
    doc["weights"][key] = 1.0;
    ExpectInvalid(doc.dump(), "weights[" + json(key).dump() + "]");
  }
  json doc = SmallRouter();
  doc["features"]["bos"] = nullptr;  // then "<s> how" is no feature
  ExpectInvalid(doc.dump(), "weights[\"<s> how\"]");
}

TEST(TrainedRouterLoadTest, MissingFileIsNotFound) {
  auto router = TrainedRouter::Load("/nonexistent/router.json");
  ASSERT_FALSE(router.ok());
  EXPECT_EQ(router.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(router.status().message().find("/nonexistent/router.json"), std::string::npos) << router.status();
}

}  // namespace
}  // namespace tern::runtime
