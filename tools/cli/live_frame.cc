#include "tools/cli/live_frame.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/cli/text_fit.h"

namespace tern::cli {
namespace {

constexpr absl::string_view kDim = "\x1b[2m";
constexpr absl::string_view kReset = "\x1b[0m";
constexpr absl::string_view kDone = "\xE2\x9C\x93 ";    // "✓ "
constexpr absl::string_view kActive = "\xE2\x80\xBA ";  // "› "
constexpr absl::string_view kPending = "  ";
constexpr int kMarkerColumns = 2;

std::string Dim(absl::string_view text) { return absl::StrCat(kDim, text, kReset); }

// One point's slot. `label`: its text from the skeleton or the outline.
std::string Slot(int index, const PartText* part, const std::string& label, int columns) {
  const std::string number = absl::StrCat(index + 1, ". ");
  const int room = columns - kMarkerColumns;
  if (part == nullptr || part->text.empty()) {
    return Dim(absl::StrCat(kPending, FitHead(OneLine(number + label), room)));
  }
  std::string text = OneLine(TrimPointText(part->text));
  if (part->finished()) return absl::StrCat(kDone, FitHead(text, room));
  // The number stays; the newest text shows after it.
  if (absl::StartsWith(text, number)) text.erase(0, number.size());
  return absl::StrCat(kActive, number, FitTail(text, room - static_cast<int>(number.size())));
}

}  // namespace

std::vector<std::string> SkeletonPointTexts(const std::string& skeleton) {
  std::vector<std::string> points;
  for (absl::string_view line : absl::StrSplit(skeleton, '\n')) {
    line = absl::StripLeadingAsciiWhitespace(line);
    size_t digits = 0;
    while (digits < line.size() && absl::ascii_isdigit(static_cast<unsigned char>(line[digits]))) ++digits;
    if (digits == 0 || digits >= line.size() || line[digits] != '.') continue;
    points.emplace_back(absl::StripAsciiWhitespace(line.substr(digits + 1)));
  }
  return points;
}

std::vector<std::string> LiveFrame(const StreamAssembly& stream, const std::vector<std::string>& outline,
                                   FrameSize size) {
  const int columns = std::max(size.columns - 1, 8);
  const int max_lines = std::max(size.rows - 1, 2);
  std::vector<std::string> lines;
  const std::map<int, PartText>& points = stream.points();
  if (points.empty()) {
    // The skeleton as it streams: its newest lines when it outgrows the view.
    lines.push_back(Dim(FitHead("writing the skeleton", columns)));
    std::vector<std::string> skeleton = absl::StrSplit(stream.skeleton().text, '\n');
    const size_t keep = static_cast<size_t>(max_lines - 1);
    const size_t first = skeleton.size() > keep ? skeleton.size() - keep : 0;
    for (size_t i = first; i < skeleton.size(); ++i) {
      const std::string line = OneLine(skeleton[i]);
      lines.push_back(i + 1 == skeleton.size() ? FitTail(line, columns) : FitHead(line, columns));
    }
    return lines;
  }
  std::vector<std::string> labels = outline.empty() ? SkeletonPointTexts(stream.skeleton().text) : outline;
  const int slots = std::max(static_cast<int>(labels.size()), points.rbegin()->first + 1);
  labels.resize(slots);
  int done = 0;
  for (const auto& [index, part] : points) done += part.finished();
  lines.push_back(Dim(FitHead(absl::StrCat(done, " of ", slots, " points done"), columns)));
  // Too many points for the view: a window that starts at the first
  // unfinished point (ordered points finish one after another), and how
  // many come after it.
  const int shown = slots + 1 <= max_lines ? slots : std::max(max_lines - 2, 1);
  int first = 0;
  while (first < slots) {
    const auto it = points.find(first);
    if (it == points.end() || !it->second.finished()) break;
    ++first;
  }
  first = std::min(first, slots - shown);
  for (int i = first; i < first + shown; ++i) {
    const auto it = points.find(i);
    lines.push_back(Slot(i, it == points.end() ? nullptr : &it->second, labels[i], columns));
  }
  if (first + shown < slots) {
    lines.push_back(Dim(FitHead(absl::StrCat("  ... and ", slots - first - shown, " more"), columns)));
  }
  return lines;
}

}  // namespace tern::cli
