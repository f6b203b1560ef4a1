// NormalizeNfc against Python's unicodedata.normalize("NFC") (the cases in
// tests/data/unicode/nfc_cases.txt, written by tools/gen_unicode_nfc_tables.py
// --test-cases), plus ill-formed input and the tokenizer's NFC normalizer.
#include "runtime/tokenizer/unicode_nfc.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/tokenizer/hf_tokenizer_json.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode.h"
#include "runtime/tokenizer/unicode_nfc_tables.h"
#include "tests/runtime/tokenizer/byte_level_vocab.h"

namespace tern::runtime {
namespace {

std::string Utf8(const std::string& hex_code_points) {
  std::istringstream in(hex_code_points);
  std::string out, item;
  while (in >> item) AppendUtf8(char32_t(std::stoul(item, nullptr, 16)), &out);
  return out;
}

std::string Nfc(std::string_view text) {
  std::string out;
  AppendNfc(text, &out);
  return out;
}

TEST(UnicodeNfcTest, MatchesPythonOnEveryCase) {
  std::ifstream file(std::string(TERN_TEST_DATA_DIR) + "/unicode/nfc_cases.txt");
  ASSERT_TRUE(file.good());
  std::string line;
  int cases = 0, failures = 0;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t semicolon = line.find(';');
    ASSERT_NE(semicolon, std::string::npos) << line;
    const std::string input = Utf8(line.substr(0, semicolon));
    const std::string expected = Utf8(line.substr(semicolon + 1));
    ++cases;
    if (Nfc(input) != expected && ++failures <= 10) ADD_FAILURE() << "NFC(" << line.substr(0, semicolon) << ")";
    // NFC is idempotent, and text it leaves alone passes the quick check or is already NFC.
    EXPECT_EQ(Nfc(expected), expected) << line;
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(cases, 5000);
}

TEST(UnicodeNfcTest, ComposesReordersAndKeepsExclusions) {
  EXPECT_EQ(Nfc("e\xCC\x81"), "\xC3\xA9");                       // e + U+0301 -> U+00E9
  EXPECT_EQ(Nfc("\xE2\x84\xAB"), "\xC3\x85");                     // U+212B ANGSTROM SIGN -> U+00C5
  EXPECT_EQ(Nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");     // U+0958 is excluded: stays decomposed
  EXPECT_EQ(Nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo G A G -> U+AC01
  // q + dot above (230) + dot below (220): reordered, nothing composes.
  EXPECT_EQ(Nfc("q\xCC\x87\xCC\xA3"), "q\xCC\xA3\xCC\x87");
  // s + dot above + dot below: U+1E69 (s with dot below and dot above).
  EXPECT_EQ(Nfc("s\xCC\x87\xCC\xA3"), "\xE1\xB9\xA9");
}

TEST(UnicodeNfcTest, IllFormedBytesPassThroughAndBlock) {
  EXPECT_EQ(Nfc("a\xFF\xCC\x81"), "a\xFF\xCC\x81");  // the stray byte sits between a and U+0301
  EXPECT_EQ(Nfc("\xCC"), "\xCC");                    // a truncated sequence
  EXPECT_EQ(Nfc(""), "");
}

TEST(UnicodeNfcTest, QuickCheckSkipsTextBelowU0300) {
  EXPECT_FALSE(MayChangeUnderNfc("plain ASCII and Latin-1: \xC3\xA9\xC3\xB1"));
  EXPECT_TRUE(MayChangeUnderNfc("e\xCC\x81"));
  EXPECT_TRUE(MayChangeUnderNfc("\xE4\xB8\xAD"));  // CJK: may be examined, stays the same
  EXPECT_EQ(Nfc("\xE4\xB8\xAD\xE6\x96\x87"), "\xE4\xB8\xAD\xE6\x96\x87");
  EXPECT_STREQ(kUnicodeNfcTablesVersion, "14.0.0");
}

TEST(UnicodeNfcTest, TokenizerJsonNfcNormalizerAppliesToPlainText) {
  // A byte-level tokenizer with "é" (C3 A9) as one token.
  nlohmann::json vocab = testing::ByteLevelAlphabetVocab();
  vocab["\xC3\x83\xC2\xA9"] = 256;  // "Ã©": bytes C3 A9 in GPT-2's byte alphabet
  const nlohmann::json json = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xC3\x83 \xC2\xA9"}}}},
      {"added_tokens", {{{"id", 257}, {"content", "<|x|>"}, {"special", true}, {"normalized", false}}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
  };
  auto spec = ParseHfTokenizerJson(json.dump());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->nfc);
  auto tokenizer = Tokenizer::Create(*std::move(spec));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const Tokenizer& t = **tokenizer;
  EXPECT_THAT(t.Encode("\xC3\xA9", false), ::testing::ElementsAre(256));
  // Decomposed input (e + U+0301) encodes as the composed character, around
  // an added token too.
  EXPECT_EQ(t.Encode("e\xCC\x81<|x|>e\xCC\x81", false), t.Encode("\xC3\xA9<|x|>\xC3\xA9", false));
  EXPECT_EQ(*t.Decode(t.Encode("e\xCC\x81", false), true), "\xC3\xA9");
}

}  // namespace
}  // namespace tern::runtime
