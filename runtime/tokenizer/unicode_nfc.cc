#include "runtime/tokenizer/unicode_nfc.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "runtime/tokenizer/unicode.h"
#include "runtime/tokenizer/unicode_nfc_tables.h"

namespace tern::runtime {
namespace {

// Hangul syllables compose and decompose by arithmetic (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28;
constexpr int kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// An ill-formed input byte b travels as kRawByte + b: outside Unicode, class
// 0, no decomposition, no composition.
constexpr char32_t kRawByte = 0x110000;

uint8_t CombiningClass(char32_t cp) {
  const CombiningClassEntry* end = kCombiningClasses + kCombiningClassCount;
  const CombiningClassEntry* it =
      std::lower_bound(kCombiningClasses, end, cp, [](const CombiningClassEntry& e, char32_t c) { return e.cp < c; });
  return it != end && it->cp == cp ? it->ccc : 0;
}

void Decompose(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const int s = int(cp - kSBase);
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  const CanonicalDecomposition* end = kCanonicalDecompositions + kCanonicalDecompositionCount;
  const CanonicalDecomposition* it = std::lower_bound(
      kCanonicalDecompositions, end, cp, [](const CanonicalDecomposition& e, char32_t c) { return e.cp < c; });
  if (it == end || it->cp != cp) {
    out->push_back(cp);
    return;
  }
  Decompose(it->first, out);
  if (it->second != 0) Decompose(it->second, out);
}

// The primary composite of first + second, or 0.
char32_t Compose(char32_t first, char32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  const CanonicalComposition* end = kCanonicalCompositions + kCanonicalCompositionCount;
  const CanonicalComposition* it =
      std::lower_bound(kCanonicalCompositions, end, std::pair(first, second),
                       [](const CanonicalComposition& e, const std::pair<char32_t, char32_t>& key) {
                         return e.first != key.first ? e.first < key.first : e.second < key.second;
                       });
  return it != end && it->first == first && it->second == second ? it->composite : 0;
}

}  // namespace

bool MayChangeUnderNfc(std::string_view text) {
  // UTF-8 lead bytes of U+0300 and above start at 0xCC.
  return std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) >= 0xCC; });
}

void AppendNfc(std::string_view text, std::string* out) {
  // 1. Full canonical decomposition.
  std::vector<char32_t> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const DecodedCodepoint d = DecodeUtf8(text, pos);
    if (d.valid) {
      Decompose(d.cp, &cps);
    } else {
      cps.push_back(kRawByte + static_cast<unsigned char>(text[pos]));
    }
    pos += size_t(d.length);
  }
  // 2. Canonical ordering: each run of non-starters sorted stably by class.
  std::vector<uint8_t> ccc(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) ccc[i] = cps[i] >= kRawByte ? 0 : CombiningClass(cps[i]);
  for (size_t i = 1; i < cps.size(); ++i) {
    for (size_t j = i; j > 0 && ccc[j] != 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(cps[j], cps[j - 1]);
      std::swap(ccc[j], ccc[j - 1]);
    }
  }
  // 3. Canonical composition: each character joins the last starter unless
  // something between them blocks it (a class of 0 or not below its own).
  size_t kept = 0;
  std::optional<size_t> starter;
  uint8_t last_ccc = 0;  // class of the last character kept after the starter
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const uint8_t cls = ccc[i];
    if (starter.has_value() && c < kRawByte && cps[*starter] < kRawByte) {
      const bool adjacent = *starter + 1 == kept;
      if (adjacent || (last_ccc != 0 && last_ccc < cls)) {
        if (const char32_t composite = Compose(cps[*starter], c); composite != 0) {
          cps[*starter] = composite;
          continue;
        }
      }
    }
    if (cls == 0) {
      starter = kept;
      last_ccc = 0;
    } else {
      last_ccc = cls;
    }
    cps[kept] = c;
    ccc[kept] = cls;
    ++kept;
  }
  for (size_t i = 0; i < kept; ++i) {
    if (cps[i] >= kRawByte) {
      out->push_back(static_cast<char>(cps[i] - kRawByte));
    } else {
      AppendUtf8(cps[i], out);
    }
  }
}

}  // namespace tern::runtime
