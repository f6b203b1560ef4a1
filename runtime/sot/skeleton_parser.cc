#include "runtime/sot/skeleton_parser.h"

#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/chat/jinja_text.h"

namespace tern::runtime {
namespace {

constexpr char32_t kInvalid = 0xFFFFFFFF;

// Decodes the UTF-8 sequence of `length` bytes at `s`; kInvalid when it is
// not a well-formed, shortest-form sequence of exactly that length.
char32_t DecodeSequence(const unsigned char* s, size_t length) {
  const unsigned char lead = s[0];
  size_t expected;
  char32_t c;
  if (lead < 0x80) {
    expected = 1;
    c = lead;
  } else if ((lead & 0xE0) == 0xC0) {
    expected = 2;
    c = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    expected = 3;
    c = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    expected = 4;
    c = lead & 0x07;
  } else {
    return kInvalid;
  }
  if (expected != length) return kInvalid;
  for (size_t i = 1; i < length; ++i) {
    if ((s[i] & 0xC0) != 0x80) return kInvalid;
    c = (c << 6) | (s[i] & 0x3F);
  }
  static constexpr char32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMinimum[length] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return kInvalid;
  return c;
}

size_t SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Length in bytes of the whitespace code point that starts `text`, or 0.
size_t LeadingSpaceLength(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t length = SequenceLength(s[0]);
  if (length > text.size()) return 0;
  const char32_t c = DecodeSequence(s, length);
  return c != kInvalid && jinja::IsPySpace(c) ? length : 0;
}

// Length in bytes of the whitespace code point that ends `text`, or 0.
size_t TrailingSpaceLength(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  // A code point is at most 4 bytes: step back over up to 3 continuation bytes.
  size_t start = text.size() - 1;
  while (start > 0 && text.size() - start < 4 && (s[start] & 0xC0) == 0x80) --start;
  const size_t length = text.size() - start;
  const char32_t c = DecodeSequence(s + start, length);
  return c != kInvalid && jinja::IsPySpace(c) ? length : 0;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads a point from one line (no "\n" in it). False when the line holds none.
bool ParseLine(std::string_view line, SkeletonPoint* point) {
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  const size_t digits_begin = i;
  int64_t value = 0;
  bool overflow = false;
  for (; i < line.size() && IsDigit(line[i]); ++i) {
    if (!overflow) {
      value = value * 10 + (line[i] - '0');
      overflow = value > std::numeric_limits<int32_t>::max();
    }
  }
  if (i == digits_begin || overflow) return false;
  if (i >= line.size() || line[i] != '.') return false;
  ++i;
  if (i < line.size() && IsDigit(line[i])) return false;  // a decimal such as 3.14
  const std::string_view text = StripPyWhitespace(line.substr(i));
  if (text.empty()) return false;
  point->index = static_cast<int32_t>(value);
  point->text = std::string(text);
  return true;
}

}  // namespace

std::string_view StripPyWhitespace(std::string_view text) {
  while (!text.empty()) {
    const size_t n = LeadingSpaceLength(text);
    if (n == 0) break;
    text.remove_prefix(n);
  }
  while (!text.empty()) {
    const size_t n = TrailingSpaceLength(text);
    if (n == 0) break;
    text.remove_suffix(n);
  }
  return text;
}

std::vector<SkeletonPoint> ParseSkeleton(std::string_view skeleton) {
  std::vector<SkeletonPoint> points;
  absl::flat_hash_set<int32_t> seen;
  size_t begin = 0;
  while (begin <= skeleton.size()) {
    size_t end = skeleton.find('\n', begin);
    if (end == std::string_view::npos) end = skeleton.size();
    SkeletonPoint point;
    if (ParseLine(skeleton.substr(begin, end - begin), &point) && seen.insert(point.index).second) {
      points.push_back(std::move(point));
    }
    begin = end + 1;
  }
  return points;
}

std::string FormatSkeleton(const std::vector<SkeletonPoint>& points) {
  std::string out;
  for (size_t i = 0; i < points.size(); ++i) {
    if (i > 0) out += '\n';
    absl::StrAppend(&out, points[i].index, ". ", points[i].text);
  }
  return out;
}

std::string JoinPoints(const std::vector<SkeletonPoint>& points,
                       const std::vector<std::string>& expansions) {
  CHECK_EQ(points.size(), expansions.size());
  std::string out;
  for (size_t i = 0; i < points.size(); ++i) {
    if (i > 0) out += '\n';
    const std::string_view expansion = StripPyWhitespace(expansions[i]);
    absl::StrAppend(&out, points[i].index, ". ", points[i].text, " ");
    out.append(expansion);
  }
  return out;
}

}  // namespace tern::runtime
