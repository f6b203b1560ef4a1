#include "tools/cli/text_fit.h"

#include <cstdint>
#include <vector>

namespace tern::cli {
namespace {

constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // U+2026, one column

// Decodes the code point at text[*i] and advances *i; -1 for an invalid or
// truncated sequence (one byte consumed).
int32_t NextCodePoint(std::string_view text, size_t* i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = byte(*i);
  int length = 0;
  int32_t cp = 0;
  if (lead < 0x80) {
    ++*i;
    return lead;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    cp = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    cp = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    cp = lead & 0x07;
  } else {
    ++*i;
    return -1;
  }
  if (*i + length > text.size()) {
    ++*i;
    return -1;
  }
  for (int k = 1; k < length; ++k) {
    if ((byte(*i + k) & 0xC0) != 0x80) {
      ++*i;
      return -1;
    }
    cp = (cp << 6) | (byte(*i + k) & 0x3F);
  }
  static constexpr int32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++*i;
    return -1;
  }
  *i += length;
  return cp;
}

int CodePointColumns(int32_t cp) {
  if ((cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0xFE00 && cp <= 0xFE0F)) return 0;
  if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
      (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
      (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1FAFF) || (cp >= 0x20000 && cp <= 0x3FFFD)) {
    return 2;
  }
  return 1;
}

// The code points of `text` as (byte offset, columns), plus a sentinel at the end.
struct Glyph {
  size_t offset;
  int columns;
};

std::vector<Glyph> Glyphs(std::string_view text) {
  std::vector<Glyph> glyphs;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    const int32_t cp = NextCodePoint(text, &i);
    glyphs.push_back({start, cp < 0 ? 1 : CodePointColumns(cp)});
  }
  glyphs.push_back({text.size(), 0});
  return glyphs;
}

}  // namespace

std::string OneLine(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    const int32_t cp = NextCodePoint(text, &i);
    if (cp == '\t' || cp == '\n' || cp == '\r') {
      out += ' ';
    } else if (cp < 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      out += '?';
    } else {
      out.append(text.substr(start, i - start));
    }
  }
  return out;
}

int DisplayColumns(std::string_view text) {
  int columns = 0;
  for (const Glyph& g : Glyphs(text)) columns += g.columns;
  return columns;
}

std::string FitHead(std::string_view text, int columns) {
  if (columns <= 0) return "";
  if (DisplayColumns(text) <= columns) return std::string(text);
  const std::vector<Glyph> glyphs = Glyphs(text);
  int used = 0;
  size_t end = 0;
  for (size_t k = 0; k + 1 < glyphs.size(); ++k) {
    if (used + glyphs[k].columns > columns - 1) break;
    used += glyphs[k].columns;
    end = glyphs[k + 1].offset;
  }
  return std::string(text.substr(0, end)) + std::string(kEllipsis);
}

std::string FitTail(std::string_view text, int columns) {
  if (columns <= 0) return "";
  if (DisplayColumns(text) <= columns) return std::string(text);
  const std::vector<Glyph> glyphs = Glyphs(text);
  int used = 0;
  size_t begin = text.size();
  for (size_t k = glyphs.size() - 1; k-- > 0;) {
    if (used + glyphs[k].columns > columns - 1) break;
    used += glyphs[k].columns;
    begin = glyphs[k].offset;
  }
  return std::string(kEllipsis) + std::string(text.substr(begin));
}

}  // namespace tern::cli
