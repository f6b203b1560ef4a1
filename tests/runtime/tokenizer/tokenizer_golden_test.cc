// Peer test: tern's tokenizers against the token ids that the reference
// Hugging Face tokenizers give for llama.cpp's 46 vocabulary test strings
// (tests/data/tokenizers/*/ggml-vocab-*.gguf.{inp,out}), plus round-trip
// and incremental-detokenization properties on seeded random Unicode text.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_files.h"
#include "runtime/tokenizer/incremental_detokenizer.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode.h"

namespace tern::runtime {
namespace {

const std::string kDataDir = TERN_TEST_DATA_DIR "/tokenizers";

std::string ReadAll(const std::string& path) { return tern::test_data::ReadTestFile(path); }

// The .inp file holds the inputs, each followed by "\n__ggml_vocab_test__\n"
// (llama.cpp's test-tokenizer-0 layout); inputs may be empty or contain
// newlines.
std::vector<std::string> ReadInputs(const std::string& path) {
  const std::string raw = ReadAll(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t pos = 0;
  while (pos < raw.size()) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  return inputs;
}

// One line of space-separated ids per input, without BOS.
std::vector<std::vector<int32_t>> ReadGoldenIds(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<int32_t>> all;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::vector<int32_t> ids;
    int32_t id;
    while (s >> id) ids.push_back(id);
    all.push_back(ids);
  }
  return all;
}

struct GoldenCase {
  const char* name;
  const char* dir;
  const char* stem;
};

class TokenizerGoldenTest : public ::testing::TestWithParam<GoldenCase> {
 protected:
  static const Tokenizer& Load(const std::string& dir) {
    static auto* cache = new std::map<std::string, std::unique_ptr<Tokenizer>>();
    auto& slot = (*cache)[dir];
    if (!slot) {
      auto t = Tokenizer::FromModelDirectory(kDataDir + "/" + dir);
      EXPECT_TRUE(t.ok()) << t.status();
      if (t.ok()) slot = std::move(t).value();
    }
    return *slot;
  }
  const Tokenizer& tokenizer() { return Load(GetParam().dir); }
  std::string Path(const char* ext) {
    return kDataDir + "/" + GetParam().dir + "/" + GetParam().stem + ext;
  }
};

TEST_P(TokenizerGoldenTest, Matches46GoldenStrings) {
  const std::vector<std::string> inputs = ReadInputs(Path(".inp"));
  const std::vector<std::vector<int32_t>> golden = ReadGoldenIds(Path(".out"));
  ASSERT_EQ(inputs.size(), 46u);
  ASSERT_EQ(golden.size(), 46u);
  int passed = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t> ids = tokenizer().Encode(inputs[i], /*add_special_tokens=*/false);
    EXPECT_EQ(ids, golden[i]) << "case " << i << ": \"" << inputs[i] << "\"";
    passed += ids == golden[i];
  }
  std::cout << GetParam().name << ": " << passed << "/" << inputs.size() << " golden cases match\n";
}

TEST_P(TokenizerGoldenTest, DecodeInvertsGoldenIds) {
  const std::vector<std::string> inputs = ReadInputs(Path(".inp"));
  const std::vector<std::vector<int32_t>> golden = ReadGoldenIds(Path(".out"));
  ASSERT_EQ(inputs.size(), golden.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const absl::StatusOr<std::string> text = tokenizer().Decode(golden[i], /*skip_special_tokens=*/true);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, inputs[i]) << "case " << i;
  }
}

// Random strings mixing ASCII words, whitespace runs, digits, accented
// Latin, CJK, emoji and arbitrary code points of every plane.
std::string RandomUnicode(std::mt19937& rng, bool exclude_space_marker) {
  static const char32_t kPicks[] = {' ', ' ', '\n', '\t', '\r', '\'', 's', '!', '3', 0xA0, 0x3000, 0x2028};
  std::uniform_int_distribution<int> kind_dist(0, 7), len_dist(0, 40);
  std::string out;
  const int length = len_dist(rng);
  for (int i = 0; i < length; ++i) {
    char32_t cp = 0;
    switch (kind_dist(rng)) {
      case 0: cp = std::uniform_int_distribution<char32_t>('a', 'z')(rng); break;
      case 1: cp = std::uniform_int_distribution<char32_t>(0x20, 0x7E)(rng); break;
      case 2: cp = kPicks[std::uniform_int_distribution<int>(0, std::size(kPicks) - 1)(rng)]; break;
      case 3: cp = std::uniform_int_distribution<char32_t>(0xC0, 0x24F)(rng); break;
      case 4: cp = std::uniform_int_distribution<char32_t>(0x4E00, 0x9FFF)(rng); break;
      case 5: cp = std::uniform_int_distribution<char32_t>(0x1F300, 0x1FAFF)(rng); break;
      case 6: cp = std::uniform_int_distribution<char32_t>(0x1, 0xFFFF)(rng); break;
      default: cp = std::uniform_int_distribution<char32_t>(0x10000, 0x10FFFF)(rng); break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';                    // surrogates are not characters
    if (exclude_space_marker && cp == 0x2581) cp = 'y';            // SentencePiece decodes U+2581 as ' '
    AppendUtf8(cp, &out);
  }
  return out;
}

TEST_P(TokenizerGoldenTest, RoundTripsRandomUnicode) {
  std::mt19937 rng(20240611);
  for (int i = 0; i < 300; ++i) {
    const std::string text = RandomUnicode(rng, /*exclude_space_marker=*/true);
    const std::vector<int32_t> ids = tokenizer().Encode(text, /*add_special_tokens=*/true);
    const absl::StatusOr<std::string> decoded = tokenizer().Decode(ids, /*skip_special_tokens=*/true);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_EQ(*decoded, text) << "string " << i;
  }
}

void ExpectIncrementalMatchesDecode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                                    bool skip_special_tokens) {
  IncrementalDetokenizer detok(tokenizer, {.skip_special_tokens = skip_special_tokens});
  std::string streamed;
  for (int32_t id : ids) {
    const absl::StatusOr<std::string> piece = detok.Push(id);
    ASSERT_TRUE(piece.ok()) << piece.status();
    // Every emitted piece is complete UTF-8 on its own.
    std::string repaired;
    AppendUtf8Lossy(*piece, /*at_end=*/true, &repaired);
    ASSERT_EQ(repaired, *piece);
    ASSERT_LE(detok.pending_bytes(), 3u);
    streamed += *piece;
  }
  streamed += detok.Finish();
  const absl::StatusOr<std::string> full = tokenizer.Decode(ids, skip_special_tokens);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(streamed, *full);
}

TEST_P(TokenizerGoldenTest, IncrementalDetokenizationEqualsFullDecode) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    const std::string text = RandomUnicode(rng, /*exclude_space_marker=*/false);
    ExpectIncrementalMatchesDecode(tokenizer(), tokenizer().Encode(text, true), /*skip_special_tokens=*/true);
    ExpectIncrementalMatchesDecode(tokenizer(), tokenizer().Encode(text, true), /*skip_special_tokens=*/false);
  }
  // Arbitrary id sequences, which split and break UTF-8 sequences at will.
  std::uniform_int_distribution<int32_t> any_id(0, tokenizer().vocab_size() - 1);
  std::uniform_int_distribution<int32_t> low_id(0, 600);  // byte tokens and short pieces
  for (int i = 0; i < 200; ++i) {
    std::vector<int32_t> ids(std::uniform_int_distribution<int>(0, 30)(rng));
    for (int32_t& id : ids) id = (rng() % 2) ? any_id(rng) : low_id(rng);
    ExpectIncrementalMatchesDecode(tokenizer(), ids, /*skip_special_tokens=*/i % 2 == 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, TokenizerGoldenTest,
    ::testing::Values(GoldenCase{"llama2", "llama2", "ggml-vocab-llama-spm.gguf"},
                      GoldenCase{"llama3", "llama3", "ggml-vocab-llama-bpe.gguf"}),
    [](const ::testing::TestParamInfo<GoldenCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace tern::runtime
