// LiveRegion: a block of lines at the bottom of a terminal that is redrawn
// in place (ANSI cursor-up and erase-below). The caller keeps every line
// shorter than the terminal's width and the block shorter than its height
// (live_frame.h does), so the cursor lands back on the block's first line.
// Single-threaded.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "tools/cli/live_frame.h"

namespace tern::cli {

class LiveRegion {
 public:
  // `out` is a terminal; borrowed.
  explicit LiveRegion(std::FILE* out) : out_(out) {}

  // Replaces the block drawn last (if any) with `lines`.
  void Draw(const std::vector<std::string>& lines);
  // Erases the block; the cursor is left where it began.
  void Clear();
  bool empty() const { return height_ == 0; }

 private:
  std::string MoveToTop() const;

  std::FILE* out_;
  int height_ = 0;  // lines drawn last; the cursor is at the start of the line below them
};

// The terminal's size, when `fd` is one.
std::optional<FrameSize> TerminalSize(int fd);

}  // namespace tern::cli
