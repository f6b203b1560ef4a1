// Unit tests of the tokenizer's parts: Unicode classes and UTF-8 repair,
// the split-regex scanners, the BPE merge loop, added-token matching, and
// the tokenizer.json / tokenizer.model loaders on small hand-built inputs.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/tokenizer/added_tokens.h"
#include "runtime/tokenizer/bpe.h"
#include "runtime/tokenizer/hf_tokenizer_json.h"
#include "runtime/tokenizer/pretokenizer.h"
#include "runtime/tokenizer/sentencepiece_model.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode.h"
#include "tests/runtime/tokenizer/byte_level_vocab.h"

namespace tern::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Split(SplitPattern p, std::string_view text) {
  std::vector<std::string_view> views;
  SplitText(p, text, &views);
  return std::vector<std::string>(views.begin(), views.end());
}

TEST(UnicodeTest, ClassifiesCodepoints) {
  EXPECT_EQ(ClassifyCodepoint('A'), CodepointClass::kLetter);
  EXPECT_EQ(ClassifyCodepoint(0xE9), CodepointClass::kLetter);     // é
  EXPECT_EQ(ClassifyCodepoint(0x4E2D), CodepointClass::kLetter);   // 中
  EXPECT_EQ(ClassifyCodepoint('7'), CodepointClass::kNumber);
  EXPECT_EQ(ClassifyCodepoint(0x0663), CodepointClass::kNumber);   // Arabic-Indic 3
  EXPECT_EQ(ClassifyCodepoint(0x2160), CodepointClass::kNumber);   // Roman numeral one (Nl)
  EXPECT_EQ(ClassifyCodepoint(0xBD), CodepointClass::kNumber);     // ½ (No)
  EXPECT_EQ(ClassifyCodepoint(0x3000), CodepointClass::kWhitespace);
  EXPECT_EQ(ClassifyCodepoint(0x85), CodepointClass::kWhitespace);
  EXPECT_EQ(ClassifyCodepoint('!'), CodepointClass::kOther);
  EXPECT_EQ(ClassifyCodepoint(0x1F600), CodepointClass::kOther);   // emoji
  EXPECT_EQ(ClassifyCodepoint(0x0301), CodepointClass::kOther);    // combining acute (Mn)
}

TEST(UnicodeTest, RepairsIllFormedUtf8LikeFromUtf8Lossy) {
  const std::string fffd = "\xEF\xBF\xBD";
  auto lossy = [](std::string_view s, bool at_end, size_t* consumed) {
    std::string out;
    *consumed = AppendUtf8Lossy(s, at_end, &out);
    return out;
  };
  size_t consumed = 0;
  EXPECT_EQ(lossy("a\xE4\xBD", false, &consumed), "a");
  EXPECT_EQ(consumed, 1u);
  EXPECT_EQ(lossy("a\xE4\xBD", true, &consumed), "a" + fffd);
  EXPECT_EQ(lossy("\xE0\x80", true, &consumed), fffd + fffd);       // overlong lead: two subparts
  EXPECT_EQ(lossy("\xF0\x9F\x98" "A", false, &consumed), fffd + "A");  // one maximal subpart
  EXPECT_EQ(lossy("\xED\xA0\x80", true, &consumed), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(lossy("\xF0\x9F\x98\x80", false, &consumed), "\xF0\x9F\x98\x80");
  EXPECT_EQ(lossy("\xFF", false, &consumed), fffd);
}

TEST(PretokenizerTest, Llama3SplitsLikeItsRegex) {
  EXPECT_THAT(Split(SplitPattern::kLlama3, "I'M 12345  ok!!\n\n  x"),
              ElementsAre("I", "'M", " ", "123", "45", " ", " ok", "!!\n\n", " ", " x"));
  EXPECT_THAT(Split(SplitPattern::kLlama3, "Hello world\n \n\t end \n"),
              ElementsAre("Hello", " world", "\n \n", "\t", " end", " \n"));
  EXPECT_THAT(Split(SplitPattern::kLlama3, "\xC3\x84pfel \xE4\xB8\xAD\xE6\x96\x87 \xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4"),
              ElementsAre("\xC3\x84pfel", " \xE4\xB8\xAD\xE6\x96\x87", " ", "\xD9\xA1\xD9\xA2\xD9\xA3",
                          "\xD9\xA4"));
  EXPECT_THAT(Split(SplitPattern::kLlama3, "(ok)'x"), ElementsAre("(ok", ")'", "x"));
  EXPECT_THAT(Split(SplitPattern::kLlama3, ""), ElementsAre());
}

TEST(PretokenizerTest, Gpt2AndQwen2SplitLikeTheirRegexes) {
  EXPECT_THAT(Split(SplitPattern::kGpt2, "I'M 12345  ok!!\n\n  x"),
              ElementsAre("I", "'", "M", " 12345", " ", " ok", "!!", "\n\n ", " x"));
  EXPECT_THAT(Split(SplitPattern::kGpt2, "it's  "), ElementsAre("it", "'s", "  "));
  EXPECT_THAT(Split(SplitPattern::kQwen2, "x 1234"), ElementsAre("x", " ", "1", "2", "3", "4"));
}

TEST(PretokenizerTest, RecognisesRegexStrings) {
  for (SplitPattern p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    EXPECT_EQ(*SplitPatternFromRegex(std::string(SplitPatternRegex(p))), p);
  }
  EXPECT_EQ(SplitPatternFromRegex("\\d+").status().code(), absl::StatusCode::kUnimplemented);
}

TEST(BpeMergesTest, AppliesLowestRankThenLeftmost) {
  // ids: a=0 b=1 c=2 ab=3 bc=4 ba=5 abc=6
  BpeMerges lowest({{1, 0, 5, 0}, {0, 1, 3, 1}}, {});
  std::vector<int32_t> ids = {0, 1, 0};  // "aba": (b,a) has the lower rank
  lowest.Apply(&ids);
  EXPECT_THAT(ids, ElementsAre(0, 5));

  BpeMerges tie({{0, 1, 3, 0}, {1, 2, 4, 0}, {3, 2, 6, 1}}, {});
  ids = {0, 1, 2};  // "abc": equal ranks, the leftmost pair merges first
  tie.Apply(&ids);
  EXPECT_THAT(ids, ElementsAre(6));
  ids = {2, 0, 1, 2, 0, 1};
  tie.Apply(&ids);
  EXPECT_THAT(ids, ElementsAre(2, 6, 3));
}

TEST(BpeMergesTest, SplitsUnusedPiecesBack) {
  std::vector<bool> unused(7, false);
  unused[3] = true;  // "ab" is unused
  BpeMerges merges({{0, 1, 3, 0}}, unused);
  std::vector<int32_t> ids = {0, 1, 2};
  merges.Apply(&ids);
  EXPECT_THAT(ids, ElementsAre(0, 1, 2));
}

TEST(AddedTokenMatcherTest, TakesLongestMatchAndStripsWhitespace) {
  AddedTokenMatcher m({{10, "<a>", true}, {11, "<a><b>", true}, {12, "[X]", false, false, true, true},
                       {13, "cat", false, /*single_word=*/true}});
  std::vector<AddedTokenMatcher::Segment> s;
  m.Split("x<a><b>y<a> cat concat  [X]  z", &s);
  std::vector<std::pair<std::string, int32_t>> got;
  for (const auto& seg : s) got.emplace_back(std::string(seg.text), seg.token_id);
  EXPECT_THAT(got, ElementsAre(std::make_pair("x", -1), std::make_pair("<a><b>", 11), std::make_pair("y", -1),
                               std::make_pair("<a>", 10), std::make_pair(" ", -1), std::make_pair("cat", 13),
                               std::make_pair(" concat", -1), std::make_pair("[X]", 12), std::make_pair("z", -1)));
}

// A byte-level tokenizer.json: the 256 byte characters plus a few merges.
nlohmann::json ByteLevelJson() {
  nlohmann::json vocab = testing::ByteLevelAlphabetVocab();
  int id = 256;
  vocab["\xC4\xA0h"] = id++;    // "Ġh"  256
  vocab["\xC4\xA0hi"] = id++;   // "Ġhi" 257
  vocab["hi"] = id++;           // 258
  return {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xC4\xA0 h", "\xC4\xA0h i", "h i"}}}},
      {"added_tokens", {{{"id", 259}, {"content", "<|end|>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<|end|>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
        {"special_tokens", {{"<|end|>", {{"id", "<|end|>"}, {"ids", {259}}}}}}}},
  };
}

TEST(HfTokenizerJsonTest, BuildsByteLevelTokenizer) {
  auto spec = ParseHfTokenizerJson(ByteLevelJson().dump());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->split, SplitPattern::kGpt2);
  EXPECT_EQ(spec->prefix_ids, std::vector<int32_t>{259});
  auto t = Tokenizer::Create(*std::move(spec));
  ASSERT_TRUE(t.ok()) << t.status();
  // "hi hi<|end|>\n": "hi" | " hi" | <|end|> | "\n"
  const std::vector<int32_t> ids = (*t)->Encode("hi hi<|end|>\n", true);
  EXPECT_THAT(ids, ElementsAre(259, 258, 257, 259, 10));  // byte 0x0A has id 10 here
  EXPECT_EQ(*(*t)->Decode(ids, true), "hi hi\n");
  EXPECT_EQ(*(*t)->Decode(ids, false), "<|end|>hi hi<|end|>\n");
}

// A Llama-2 style tokenizer.json: Prepend + Replace normalizer, byte fallback.
nlohmann::json SentencePieceStyleJson() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  int id = 3;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = id++;
  }
  for (const char* p : {"\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "\xE2\x96\x81hi"}) vocab[p] = id++;
  return {
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xE2\x96\x81 h", "\xE2\x96\x81h i"}},
        {"byte_fallback", true}, {"fuse_unk", true}, {"unk_token", "<unk>"}}},
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
  };
}

TEST(HfTokenizerJsonTest, BuildsSentencePieceStyleTokenizer) {
  auto spec = ParseHfTokenizerJson(SentencePieceStyleJson().dump());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model, TokenizerSpec::Model::kSentencePieceBpe);
  auto t = Tokenizer::Create(*std::move(spec));
  ASSERT_TRUE(t.ok()) << t.status();
  const int32_t h_word = 262, hi_word = 263;
  // "é" is not in the vocab: bytes C3 A9 via byte fallback.
  const std::vector<int32_t> ids = (*t)->Encode("hi h\xC3\xA9 hi", false);
  EXPECT_THAT(ids, ElementsAre(hi_word, h_word, 3 + 0xC3, 3 + 0xA9, hi_word));
  EXPECT_EQ(*(*t)->Decode(ids, true), "hi h\xC3\xA9 hi");
}

TEST(HfTokenizerJsonTest, RejectsMalformedAndUnsupportedFiles) {
  EXPECT_EQ(ParseHfTokenizerJson("not json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseHfTokenizerJson("[1, 2]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseHfTokenizerJson("{}").status().code(), absl::StatusCode::kInvalidArgument);

  nlohmann::json j = ByteLevelJson();
  j["model"]["merges"].push_back("h zzz");
  auto bad_merge = ParseHfTokenizerJson(j.dump());
  EXPECT_EQ(bad_merge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_merge.status().message()), HasSubstr("model.merges"));

  j = ByteLevelJson();
  j["model"]["vocab"]["x"] = "seven";
  EXPECT_EQ(ParseHfTokenizerJson(j.dump()).status().code(), absl::StatusCode::kInvalidArgument);

  j = ByteLevelJson();
  j["model"]["type"] = "WordPiece";
  EXPECT_EQ(ParseHfTokenizerJson(j.dump()).status().code(), absl::StatusCode::kUnimplemented);

  j = ByteLevelJson();
  j["normalizer"] = {{"type", "NFKC"}};  // NFC is implemented (unicode_nfc_test), NFKC is not
  EXPECT_EQ(ParseHfTokenizerJson(j.dump()).status().code(), absl::StatusCode::kUnimplemented);

  j = ByteLevelJson();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\d+"}}}, {"behavior", "Isolated"}};
  EXPECT_EQ(ParseHfTokenizerJson(j.dump()).status().code(), absl::StatusCode::kUnimplemented);

  j = ByteLevelJson();
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = nullptr;
  EXPECT_EQ(ParseHfTokenizerJson(j.dump()).status().code(), absl::StatusCode::kUnimplemented);

  j = ByteLevelJson();
  j["added_tokens"][0]["id"] = "259";
  EXPECT_EQ(ParseHfTokenizerJson(j.dump()).status().code(), absl::StatusCode::kInvalidArgument);

  // Pieces are indexed by id: an id far past the vocabulary would size the
  // tables by it (gigabytes from a small file), so it is refused by name.
  j = ByteLevelJson();
  j["model"]["vocab"]["far"] = int64_t(1) << 29;
  auto far_piece = ParseHfTokenizerJson(j.dump());
  EXPECT_EQ(far_piece.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(far_piece.status().message()), HasSubstr("\"far\" has an invalid id"));
  j = ByteLevelJson();
  j["added_tokens"][0]["id"] = kMaxVocabularySize;
  EXPECT_EQ(ParseHfTokenizerJson(j.dump()).status().code(), absl::StatusCode::kInvalidArgument);
  j["added_tokens"][0]["id"] = kMaxVocabularySize - 1;  // the last id accepted
  EXPECT_TRUE(ParseHfTokenizerJson(j.dump()).ok());
}

// Minimal protobuf writer for hand-built ModelProto bytes.
class ProtoWriter {
 public:
  ProtoWriter& Varint(int field, uint64_t v) {
    Tag(field, 0);
    Raw(v);
    return *this;
  }
  ProtoWriter& Bytes(int field, const std::string& s) {
    Tag(field, 2);
    Raw(s.size());
    out_ += s;
    return *this;
  }
  ProtoWriter& Float(int field, float f) {
    Tag(field, 5);
    char b[4];
    std::memcpy(b, &f, 4);
    out_.append(b, 4);
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  void Tag(int field, int type) { Raw((static_cast<uint64_t>(field) << 3) | type); }
  void Raw(uint64_t v) {
    do {
      out_.push_back(static_cast<char>((v & 0x7F) | (v > 0x7F ? 0x80 : 0)));
      v >>= 7;
    } while (v);
  }
  std::string out_;
};

std::string SentencePieceModelBytes(int model_type) {
  ProtoWriter model;
  auto piece = [&](const std::string& text, float score, int type) {
    model.Bytes(1, ProtoWriter().Bytes(1, text).Float(2, score).Varint(3, type).str());
  };
  piece("<unk>", 0, 2);
  piece("<s>", 0, 3);
  piece("</s>", 0, 3);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    piece(name, 0, 6);
  }
  // 259.. : "▁", "a", "b", "▁a" (score -1), "ab" (score -2), "▁ab" (-3)
  piece("\xE2\x96\x81", -10, 1);
  piece("a", -10, 1);
  piece("b", -10, 1);
  piece("\xE2\x96\x81" "a", -1, 1);
  piece("ab", -2, 1);
  piece("\xE2\x96\x81" "ab", -3, 1);
  model.Bytes(2, ProtoWriter()
                     .Varint(3, model_type)
                     .Varint(35, 1)
                     .Varint(40, 0)
                     .Varint(41, 1)
                     .Varint(42, 2)
                     .Varint(43, static_cast<uint64_t>(-1))  // pad_id -1: a 10-byte varint
                     .str());
  model.Bytes(3, ProtoWriter().Bytes(1, "identity").Varint(3, 1).Varint(4, 0).str());
  return model.str();
}

TEST(SentencePieceModelTest, ParsesWireFormatAndMergesByScore) {
  auto spec = ParseSentencePieceModel(SentencePieceModelBytes(/*BPE=*/2));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->pieces.size(), 265u);
  EXPECT_EQ(spec->bos_id, 1);
  EXPECT_EQ(spec->prefix_ids, std::vector<int32_t>{1});
  auto t = Tokenizer::Create(*std::move(spec));
  ASSERT_TRUE(t.ok()) << t.status();
  // "ab": "▁a" (score -1) merges before "ab" (-2), then "▁a"+"b" -> "▁ab".
  EXPECT_THAT((*t)->Encode("ab", false), ElementsAre(264));
  // "bab ": b | ▁ab | ▁ ; "c" is not a piece: byte fallback.
  EXPECT_THAT((*t)->Encode("b ab c", true), ElementsAre(1, 259 + 0, 261, 264, 259, 3 + 'c'));
  EXPECT_EQ(*(*t)->Decode((*t)->Encode("b ab c", true), true), "b ab c");
}

TEST(SentencePieceModelTest, RejectsUnsupportedAndMalformedModels) {
  EXPECT_EQ(ParseSentencePieceModel(SentencePieceModelBytes(/*UNIGRAM=*/1)).status().code(),
            absl::StatusCode::kUnimplemented);
  const std::string good = SentencePieceModelBytes(2);
  EXPECT_EQ(ParseSentencePieceModel(good.substr(0, good.size() - 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSentencePieceModel("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSentencePieceModel("\x0B\x00").status().code(), absl::StatusCode::kInvalidArgument);  // group
  EXPECT_EQ(ParseSentencePieceModel(std::string(12, '\xFF')).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tern::runtime
