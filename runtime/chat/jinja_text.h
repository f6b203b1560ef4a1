// Python str semantics over UTF-8 std::string, for the Jinja interpreter.
//
// Jinja runs on Python, so a template's string operations (len, slicing,
// strip, split, repr, float formatting) work on Unicode code points and follow
// Python's rules. These helpers reproduce those rules on UTF-8 bytes so that a
// rendered prompt matches the reference renderer byte for byte.
//
// Invalid UTF-8 decodes to U+FFFD. Case mapping (upper, lower, title,
// capitalize) covers ASCII letters only; other characters pass through.
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::runtime::jinja {

std::u32string DecodeUtf8(std::string_view text);
std::string EncodeUtf8(std::u32string_view code_points);
// Number of code points (Python len()).
int64_t CodePointCount(std::string_view text);

// Python str.isspace() for one code point.
bool IsPySpace(char32_t c);

// str.strip / lstrip / rstrip. Without `chars`, strips Python whitespace;
// with it, strips any code point found in `chars`.
std::string PyStrip(std::string_view text, const std::optional<std::string>& chars, bool left,
                    bool right);

// str.split(sep, maxsplit). Without `sep`, splits on runs of whitespace and
// drops empty pieces. maxsplit < 0 means no limit. An empty `sep` is invalid
// in Python; callers must reject it first.
std::vector<std::string> PySplit(std::string_view text, const std::optional<std::string>& sep,
                                 int64_t maxsplit);

// str.replace(old, new, count); count < 0 replaces all.
std::string PyReplace(std::string_view text, std::string_view old_text, std::string_view new_text,
                      int64_t count);

std::string AsciiUpper(std::string_view text);
std::string AsciiLower(std::string_view text);
// str.capitalize(): first character upper, the rest lower.
std::string PyCapitalize(std::string_view text);
// str.title(): each run of letters starts upper and continues lower.
std::string PyTitle(std::string_view text);

// repr() of a str: quoted with ' (or " when the text holds ' but no "), with
// Python's escapes for backslash, the quote, and non-printable characters.
std::string PyStringRepr(std::string_view text);

// repr() of a float: the shortest text that round-trips, in Python's layout
// ("1.0", "0.1", "1e+20", "1.5e-05", "inf", "nan").
std::string FormatPyFloat(double value);

// Python's str.splitlines() without keepends.
std::vector<std::string> PySplitLines(std::string_view text);

}  // namespace tern::runtime::jinja
