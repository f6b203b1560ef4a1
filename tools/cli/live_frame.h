// The live Skeleton-of-Thought view on a terminal, as lines: while the
// skeleton streams, the skeleton; once points stream, one slot per point,
// each showing its number and the latest text (a finished point shows its
// beginning). When the points outnumber the terminal's rows, the view shows
// a window starting at the first unfinished point. Pure: the caller draws
// the lines (live_region.h).
#pragma once

#include <string>
#include <vector>

#include "tools/cli/stream_assembly.h"

namespace tern::cli {

struct FrameSize {
  int columns = 80;
  int rows = 24;
};

// Every line fits in `size.columns - 1` columns (ANSI dim codes aside), so
// none wraps; there are at most max(`size.rows` - 1, 3) lines, so the
// view never scrolls the terminal. `outline` labels the points of a request
// that supplied its own (no skeleton streams then).
std::vector<std::string> LiveFrame(const StreamAssembly& stream, const std::vector<std::string>& outline,
                                   FrameSize size);

// The points a (partial) skeleton lists: "1. text" lines, in order.
std::vector<std::string> SkeletonPointTexts(const std::string& skeleton);

}  // namespace tern::cli
