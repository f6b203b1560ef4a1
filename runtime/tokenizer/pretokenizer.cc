#include "runtime/tokenizer/pretokenizer.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/unicode.h"

namespace tern::runtime {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The text decoded once into code points so the scanners can look ahead
// by characters; offsets[i] is the byte offset of character i and
// offsets[size] == text.size().
struct CharView {
  std::vector<char32_t> cps;
  std::vector<CodepointClass> classes;
  std::vector<uint32_t> offsets;

  explicit CharView(std::string_view text) {
    cps.reserve(text.size());
    classes.reserve(text.size());
    offsets.reserve(text.size() + 1);
    size_t pos = 0;
    while (pos < text.size()) {
      const DecodedCodepoint d = DecodeUtf8(text, pos);
      cps.push_back(d.cp);
      classes.push_back(d.valid ? ClassifyCodepoint(d.cp) : CodepointClass::kOther);
      offsets.push_back(static_cast<uint32_t>(pos));
      pos += d.length;
    }
    offsets.push_back(static_cast<uint32_t>(pos));
  }
  size_t size() const { return cps.size(); }
  bool Is(size_t i, CodepointClass c) const { return i < cps.size() && classes[i] == c; }
  bool IsNewline(size_t i) const { return i < cps.size() && (cps[i] == '\r' || cps[i] == '\n'); }
};

char32_t AsciiLower(char32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

// Length in characters of a contraction 's 't 're 've 'm 'll 'd at i, or 0.
size_t MatchContraction(const CharView& v, size_t i, bool ignore_case) {
  if (v.cps[i] != '\'' || i + 1 >= v.size()) return 0;
  auto at = [&](size_t k) { return ignore_case ? AsciiLower(v.cps[k]) : v.cps[k]; };
  const char32_t c1 = at(i + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (i + 2 >= v.size()) return 0;
  const char32_t c2 = at(i + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

size_t SkipClass(const CharView& v, size_t i, CodepointClass c) {
  while (v.Is(i, c)) ++i;
  return i;
}

// \s+(?!\S) then \s+ for the whitespace run starting at i (shared tail of
// every pattern): the run minus its last character when a non-space
// follows and the run is longer than one character.
size_t MatchTrailingWhitespace(const CharView& v, size_t i) {
  const size_t run_end = SkipClass(v, i, CodepointClass::kWhitespace);
  if (run_end < v.size() && run_end - i > 1) return run_end - 1;
  return run_end;
}

// End (exclusive, in characters) of the GPT-2 piece starting at i.
size_t NextGpt2(const CharView& v, size_t i) {
  if (const size_t n = MatchContraction(v, i, /*ignore_case=*/false)) return i + n;
  const size_t after_space = v.cps[i] == ' ' ? i + 1 : i;
  for (CodepointClass c : {CodepointClass::kLetter, CodepointClass::kNumber, CodepointClass::kOther}) {
    if (v.Is(after_space, c)) return SkipClass(v, after_space, c);
  }
  return MatchTrailingWhitespace(v, i);
}

// End of the Llama-3 (max_digits 3) or Qwen2 (1) piece starting at i.
size_t NextLlama3(const CharView& v, size_t i, size_t max_digits) {
  if (const size_t n = MatchContraction(v, i, /*ignore_case=*/true)) return i + n;
  const CodepointClass c = v.classes[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c == CodepointClass::kLetter) return SkipClass(v, i, CodepointClass::kLetter);
  if (c != CodepointClass::kNumber && !v.IsNewline(i) && v.Is(i + 1, CodepointClass::kLetter)) {
    return SkipClass(v, i + 1, CodepointClass::kLetter);
  }
  // \p{N}{1,max_digits}
  if (c == CodepointClass::kNumber) {
    size_t end = i;
    while (end - i < max_digits && v.Is(end, CodepointClass::kNumber)) ++end;
    return end;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t after_space = v.cps[i] == ' ' ? i + 1 : i;
  if (v.Is(after_space, CodepointClass::kOther)) {
    size_t end = SkipClass(v, after_space, CodepointClass::kOther);
    while (v.IsNewline(end)) ++end;
    return end;
  }
  // \s*[\r\n]+ : through the last newline of the whitespace run.
  const size_t run_end = SkipClass(v, i, CodepointClass::kWhitespace);
  for (size_t k = run_end; k > i; --k) {
    if (v.IsNewline(k - 1)) return k;
  }
  return MatchTrailingWhitespace(v, i);
}

}  // namespace

absl::StatusOr<SplitPattern> SplitPatternFromRegex(const std::string& regex) {
  for (SplitPattern p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    if (regex == SplitPatternRegex(p)) return p;
  }
  return absl::UnimplementedError(absl::StrCat(
      "pre-tokenizer regex is not one tern implements (GPT-2, Llama-3, Qwen2): \"", regex, "\""));
}

std::string_view SplitPatternRegex(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::kGpt2:
      return kGpt2Regex;
    case SplitPattern::kLlama3:
      return kLlama3Regex;
    case SplitPattern::kQwen2:
      return kQwen2Regex;
  }
  return {};
}

void SplitText(SplitPattern pattern, std::string_view text, std::vector<std::string_view>* pieces) {
  if (text.empty()) return;
  const CharView v(text);
  size_t i = 0;
  while (i < v.size()) {
    size_t end = 0;
    switch (pattern) {
      case SplitPattern::kGpt2:
        end = NextGpt2(v, i);
        break;
      case SplitPattern::kLlama3:
        end = NextLlama3(v, i, 3);
        break;
      case SplitPattern::kQwen2:
        end = NextLlama3(v, i, 1);
        break;
    }
    if (end <= i) end = i + 1;  // Every alternative failed; cannot happen, but never loop.
    pieces->push_back(text.substr(v.offsets[i], v.offsets[end] - v.offsets[i]));
    i = end;
  }
}

}  // namespace tern::runtime
