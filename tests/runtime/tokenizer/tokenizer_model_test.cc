// Behaviour of the real Llama-2 (tokenizer.model) and Llama-3
// (tokenizer.json) tokenizers beyond the golden strings: special tokens,
// BOS/EOS configuration, decoding options, and loading errors.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/tokenizer/incremental_detokenizer.h"
#include "runtime/tokenizer/tokenizer.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Ids = std::vector<int32_t>;

const std::string kDataDir = TERN_TEST_DATA_DIR "/tokenizers";

const Tokenizer& Llama2() {
  static const Tokenizer* t = [] {
    auto loaded = Tokenizer::FromModelDirectory(kDataDir + "/llama2");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? std::move(loaded).value().release() : nullptr;
  }();
  return *t;
}

const Tokenizer& Llama3() {
  static const Tokenizer* t = [] {
    auto loaded = Tokenizer::FromModelDirectory(kDataDir + "/llama3");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? std::move(loaded).value().release() : nullptr;
  }();
  return *t;
}

// A fresh directory under the test temp dir holding copies of `files`
// from tests/data/tokenizers/<model> plus extra files written verbatim.
fs::path MakeModelDir(const std::string& name, const std::string& model, const std::vector<std::string>& files,
                      const std::vector<std::pair<std::string, std::string>>& extra) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("tern_tokenizer_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const std::string& f : files) fs::copy_file(fs::path(kDataDir) / model / f, dir / f);
  for (const auto& [file, contents] : extra) std::ofstream(dir / file, std::ios::binary) << contents;
  return dir;
}

TEST(Llama2TokenizerTest, LoadsSentencePieceModel) {
  const Tokenizer& t = Llama2();
  EXPECT_EQ(t.model(), TokenizerSpec::Model::kSentencePieceBpe);
  EXPECT_EQ(t.vocab_size(), 32000);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(*t.IdToPiece(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(*t.IdToPiece(13), "<0x0A>");
  EXPECT_EQ(t.PieceToId("<s>"), 1);
  EXPECT_TRUE(t.IsSpecial(0));
  EXPECT_TRUE(t.IsSpecial(2));
  EXPECT_FALSE(t.IsSpecial(15043));
  EXPECT_FALSE(t.IdToPiece(32000).ok());
}

TEST(Llama2TokenizerTest, AddsBosByDefault) {
  EXPECT_EQ(Llama2().Encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(Llama2().Encode("", true), (std::vector<int32_t>{1}));
}

TEST(Llama2TokenizerTest, MatchesSpecialTokensInText) {
  // <s> is a control piece: one id, and the text after it gets no prefix space.
  EXPECT_EQ(Llama2().Encode("<s>Hello", false), (std::vector<int32_t>{1, 10994}));
  // Without special-token parsing "<s>" is text, as in SentencePiece.
  EXPECT_EQ(Llama2().Encode("<s>", false, /*parse_special_tokens=*/false),
            (std::vector<int32_t>{529, 29879, 29958}));
  EXPECT_EQ(*Llama2().Decode(Ids{1, 15043, 2}, /*skip_special_tokens=*/true), "Hello");
  EXPECT_EQ(*Llama2().Decode(Ids{1, 15043, 2}, /*skip_special_tokens=*/false), "<s> Hello</s>");
}

TEST(Llama2TokenizerTest, DecodesBytesAndRepairsBrokenUtf8) {
  // "你" is <0xE4><0xBD><0xA0> in byte fallback.
  EXPECT_EQ(*Llama2().Decode(Ids{231, 192, 163}, true), "\xE4\xBD\xA0");
  EXPECT_EQ(*Llama2().Decode(Ids{231, 192}, true), "\xEF\xBF\xBD");
  EXPECT_FALSE(Llama2().Decode(Ids{-1}, true).ok());
  EXPECT_FALSE(Llama2().Decode(Ids{32000}, true).ok());
}

TEST(Llama2TokenizerTest, IncrementalKeepsSpaceWhenContinuingAPrompt) {
  IncrementalDetokenizer fresh(Llama2(), {});
  EXPECT_EQ(*fresh.Push(15043), "Hello");
  EXPECT_EQ(*fresh.Push(3186), " world");
  IncrementalDetokenizer continuing(Llama2(), {.at_sequence_start = false});
  EXPECT_EQ(*continuing.Push(3186), " world");
}

TEST(Llama2TokenizerTest, IncrementalHoldsBackPartialCharacters) {
  IncrementalDetokenizer d(Llama2(), {});
  EXPECT_EQ(*d.Push(231), "");
  EXPECT_EQ(d.pending_bytes(), 1u);
  EXPECT_EQ(*d.Push(192), "");
  EXPECT_EQ(*d.Push(163), "\xE4\xBD\xA0");
  EXPECT_EQ(d.pending_bytes(), 0u);
  EXPECT_EQ(*d.Push(231), "");
  EXPECT_EQ(d.Finish(), "\xEF\xBF\xBD");
  EXPECT_FALSE(d.Push(40000).ok());
}

TEST(Llama2TokenizerTest, TokenizerConfigControlsBosAndEos) {
  const fs::path dir = MakeModelDir("llama2_config", "llama2", {"tokenizer.model"},
                                    {{"tokenizer_config.json",
                                      R"({"add_bos_token": false, "add_eos_token": true,
                                          "bos_token": {"content": "<s>"}, "eos_token": "</s>"})"}});
  auto t = Tokenizer::FromModelDirectory(dir.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Encode("Hello", true), (std::vector<int32_t>{15043, 2}));
}

TEST(Llama3TokenizerTest, LoadsTokenizerJsonAndConfig) {
  const Tokenizer& t = Llama3();
  EXPECT_EQ(t.model(), TokenizerSpec::Model::kByteLevelBpe);
  EXPECT_EQ(t.vocab_size(), 128256);
  EXPECT_EQ(t.bos_id(), 128000);
  EXPECT_EQ(t.eos_ids(), std::vector<int32_t>{128001});
  EXPECT_TRUE(t.IsSpecial(128009));
  EXPECT_EQ(*t.IdToPiece(128009), "<|eot_id|>");
  EXPECT_EQ(t.PieceToId("<|eot_id|>"), 128009);
}

TEST(Llama3TokenizerTest, MatchesSpecialTokensBeforeBpe) {
  const std::vector<int32_t> ids = Llama3().Encode("<|begin_of_text|>Hello<|eot_id|> world", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{128000, 9906, 128009, 1917}));
  EXPECT_EQ(*Llama3().Decode(ids, /*skip_special_tokens=*/true), "Hello world");
  EXPECT_EQ(*Llama3().Decode(ids, /*skip_special_tokens=*/false), "<|begin_of_text|>Hello<|eot_id|> world");
  const std::vector<int32_t> plain = Llama3().Encode("<|eot_id|>", false, /*parse_special_tokens=*/false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(*Llama3().Decode(plain, true), "<|eot_id|>");
}

TEST(Llama3TokenizerTest, GenerationConfigAddsEosIdsAndConfigAddsBos) {
  const fs::path dir = MakeModelDir(
      "llama3_generation", "llama3", {"tokenizer.json"},
      {{"tokenizer_config.json", R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                     "add_bos_token": true})"},
       {"generation_config.json", R"({"bos_token_id": 128000, "eos_token_id": [128001, 128009]})"}});
  auto t = Tokenizer::FromModelDirectory(dir.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->eos_ids(), (std::vector<int32_t>{128009, 128001}));
  EXPECT_TRUE((*t)->IsEos(128001));
  EXPECT_EQ((*t)->Encode("Hello", true), (std::vector<int32_t>{128000, 9906}));
}

TEST(TokenizerThreadTest, ConstMethodsAreSafeToCallConcurrently) {
  const std::vector<std::string> texts = {"Hello world", " \xE4\xBD\xA0\xE5\xA5\xBD <|eot_id|> 3333",
                                          "It's 12:00\n\n\tok", "<s>[INST] hi [/INST]"};
  for (const Tokenizer* t : {&Llama2(), &Llama3()}) {
    std::vector<std::vector<int32_t>> expected;
    for (const std::string& text : texts) expected.push_back(t->Encode(text, true));
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; ++k) {
      threads.emplace_back([&, k] {
        for (int iter = 0; iter < 200; ++iter) {
          const size_t i = (iter + k) % texts.size();
          const std::vector<int32_t> ids = t->Encode(texts[i], true);
          mismatches[k] += ids != expected[i] || !t->Decode(ids, false).ok();
        }
      });
    }
    for (std::thread& th : threads) th.join();
    EXPECT_EQ(mismatches, std::vector<int>(4, 0));
  }
}

TEST(TokenizerLoadTest, ReportsMissingAndMalformedFiles) {
  auto missing = Tokenizer::FromModelDirectory("/nonexistent/tern/model");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  const fs::path bad_json = MakeModelDir("bad_json", "llama3", {}, {{"tokenizer.json", "{\"model\": "}});
  auto json_error = Tokenizer::FromModelDirectory(bad_json.string());
  EXPECT_EQ(json_error.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(json_error.status().message()), HasSubstr("tokenizer.json"));

  const fs::path bad_config = MakeModelDir("bad_config", "llama2", {"tokenizer.model"},
                                           {{"tokenizer_config.json", R"({"bos_token": "<nope>"})"}});
  auto config_error = Tokenizer::FromModelDirectory(bad_config.string());
  EXPECT_EQ(config_error.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config_error.status().message()), HasSubstr("bos_token"));
}

// Truncated or corrupted tokenizer.model bytes give an error or a usable
// tokenizer, never a crash.
TEST(TokenizerLoadTest, SurvivesCorruptedSentencePieceModels) {
  std::ifstream in(kDataDir + "/llama2/tokenizer.model", std::ios::binary);
  const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(original.size(), 1000u);
  std::mt19937 rng(99);
  int errors = 0;
  for (int i = 0; i < 40; ++i) {
    std::string bytes = original;
    if (i % 2 == 0) {
      bytes.resize(rng() % bytes.size());
    } else {
      for (int k = 0; k < 8; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    const fs::path dir = MakeModelDir("corrupt", "llama2", {}, {{"tokenizer.model", bytes}});
    auto t = Tokenizer::FromModelDirectory(dir.string());
    if (!t.ok()) {
      ++errors;
      continue;
    }
    const std::vector<int32_t> ids = (*t)->Encode("Hello, world! \xE4\xBD\xA0", true);
    EXPECT_TRUE((*t)->Decode(ids, false).ok());
  }
  EXPECT_GT(errors, 10);
}

}  // namespace
}  // namespace tern::runtime
