#include "runtime/tokenizer/unicode.h"

#include <algorithm>

namespace tern::runtime {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

// Unicode's White_Space property (PropList.txt); it is stable and small, so
// it is listed here instead of in the generated tables.
bool IsWhiteSpace(char32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// The allowed range of the second byte after `lead` (Unicode Table 3-7);
// later continuation bytes are always 0x80..0xBF.
struct Utf8Lead {
  int continuation_count;  // 0 when `lead` cannot start a sequence
  unsigned char second_min;
  unsigned char second_max;
};

Utf8Lead ClassifyLead(unsigned char lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {1, 0x80, 0xBF};
  if (lead == 0xE0) return {2, 0xA0, 0xBF};
  if (lead == 0xED) return {2, 0x80, 0x9F};
  if (lead >= 0xE1 && lead <= 0xEF) return {2, 0x80, 0xBF};
  if (lead == 0xF0) return {3, 0x90, 0xBF};
  if (lead >= 0xF1 && lead <= 0xF3) return {3, 0x80, 0xBF};
  if (lead == 0xF4) return {3, 0x80, 0x8F};
  return {0, 0, 0};
}

// Length of the longest valid prefix of the sequence at bytes[pos]
// (1..4), and whether it is a complete code point. An invalid lead byte
// gives {1, false}; running out of input gives {n, false} with
// `truncated` set.
struct SequenceScan {
  int length;
  bool complete;
  bool truncated;
};

SequenceScan ScanSequence(std::string_view bytes, size_t pos) {
  const auto lead = static_cast<unsigned char>(bytes[pos]);
  if (lead < 0x80) return {1, true, false};
  const Utf8Lead info = ClassifyLead(lead);
  if (info.continuation_count == 0) return {1, false, false};
  int length = 1;
  for (int i = 0; i < info.continuation_count; ++i) {
    if (pos + length >= bytes.size()) return {length, false, true};
    const auto byte = static_cast<unsigned char>(bytes[pos + length]);
    const unsigned char lo = i == 0 ? info.second_min : 0x80;
    const unsigned char hi = i == 0 ? info.second_max : 0xBF;
    if (byte < lo || byte > hi) return {length, false, false};
    ++length;
  }
  return {length, true, false};
}

}  // namespace

DecodedCodepoint DecodeUtf8(std::string_view text, size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  if (lead < 0x80) return {lead, 1, true};
  const SequenceScan scan = ScanSequence(text, pos);
  if (!scan.complete) return {kReplacement, 1, false};
  char32_t cp = lead & (0x7F >> scan.length);
  for (int i = 1; i < scan.length; ++i) {
    cp = (cp << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  }
  return {cp, scan.length, true};
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

CodepointClass ClassifyCodepoint(char32_t cp) {
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CodepointClass::kLetter;
    if (cp >= '0' && cp <= '9') return CodepointClass::kNumber;
    return IsWhiteSpace(cp) ? CodepointClass::kWhitespace : CodepointClass::kOther;
  }
  if (IsWhiteSpace(cp)) return CodepointClass::kWhitespace;
  const UnicodeRange* begin = kUnicodeClassRanges;
  const UnicodeRange* end = kUnicodeClassRanges + kUnicodeClassRangeCount;
  // First range whose last code point is >= cp.
  const UnicodeRange* it = std::lower_bound(
      begin, end, cp, [](const UnicodeRange& r, char32_t value) { return r.last < value; });
  if (it != end && it->first <= cp) return it->cls;
  return CodepointClass::kOther;
}

size_t AppendUtf8Lossy(std::string_view bytes, bool at_end, std::string* out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    // Copy runs of ASCII at once; they are the common case.
    size_t ascii_end = pos;
    while (ascii_end < bytes.size() && static_cast<unsigned char>(bytes[ascii_end]) < 0x80) {
      ++ascii_end;
    }
    out->append(bytes.data() + pos, ascii_end - pos);
    pos = ascii_end;
    if (pos == bytes.size()) break;
    const SequenceScan scan = ScanSequence(bytes, pos);
    if (scan.complete) {
      out->append(bytes.data() + pos, scan.length);
    } else if (scan.truncated && !at_end) {
      return pos;
    } else {
      AppendUtf8(kReplacement, out);
    }
    pos += scan.length;
  }
  return pos;
}

}  // namespace tern::runtime
