// Skeleton-of-Thought: reading the points out of a decoded skeleton, and
// joining the expanded points into the final answer.
//
// The skeleton is the text the model wrote in the skeleton phase, with the
// pre-filled start (" 1." by default) in front of it, e.g.
// " 1. Freshly roasted beans.\n2. Grind just before brewing.\n".
//
// Point lines. A line (text between "\n"s) holds a point when, after optional
// spaces and tabs, it starts with
//   <ASCII digits> "." <optional whitespace> <text>
// The text runs to the end of the line and is trimmed of Python whitespace
// (str.strip(): ASCII blanks, the "\r" of a CRLF, NBSP, U+3000, ...). Rules:
//   - Only the start of a line counts. A number inside a line ("see step 2.
//     next") starts nothing, so prose before or after the list is ignored.
//     (The paper's regular expression matches a number anywhere, but its
//     lazy match swallows the rest of the line, so it too takes at most one
//     point per line; it differs only on prose lines that hold "N.".)
//   - Only "N." marks a point, as in the paper: "1)", "1 .", "(1)", "**1.**"
//     and "-" bullets do not.
//   - A digit right after the dot makes a decimal ("3.14 m"), not a point.
//   - Empty text ("2." alone, or only blanks) is not a point and does not
//     claim its number; a later "2. text" still does.
//   - The number is read in decimal, leading zeros allowed ("07." is 7);
//     one above INT32_MAX is not a point (no overflow, whatever its length).
//   - The first occurrence of each number wins; later ones are dropped.
//   - Points keep the order of their first occurrence (not sorted), as the
//     paper's scheduler keeps them.
//   - Text bytes pass through unchanged: UTF-8 is never split, invalid UTF-8
//     is kept as it is.
// Parsing takes time linear in the input.
//
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tern::runtime {

struct SkeletonPoint {
  int32_t index = 0;  // the number the model wrote, >= 0
  std::string text;   // trimmed, never empty, no "\n"

  friend bool operator==(const SkeletonPoint&, const SkeletonPoint&) = default;
};

// The points of `skeleton`, by the rules above. Empty when there is none.
std::vector<SkeletonPoint> ParseSkeleton(std::string_view skeleton);

// The canonical text of a skeleton: "<index>. <text>" per point, joined with
// "\n", no trailing newline. Point prompts quote the skeleton in this form,
// so the same points always give the same bytes.
// ParseSkeleton(FormatSkeleton(p)) == p for every ParseSkeleton result p.
std::string FormatSkeleton(const std::vector<SkeletonPoint>& points);

// The final answer, joined as the paper's batched scheduler joins it: for
// point i, "<index>. <text>" + " " + expansions[i] stripped of Python
// whitespace at both ends; the points joined with "\n". The space is added
// even when the expansion is empty or starts with punctuation, as upstream.
// `expansions[i]` is what the model wrote after point i's pre-filled
// "<index>. <text>". CHECK-fails when the sizes differ (a caller bug).
std::string JoinPoints(const std::vector<SkeletonPoint>& points,
                       const std::vector<std::string>& expansions);

// Python's str.strip() on UTF-8 bytes: removes leading and trailing code
// points for which str.isspace() is true; everything else, invalid UTF-8
// included, is kept byte for byte.
std::string_view StripPyWhitespace(std::string_view text);

}  // namespace tern::runtime
