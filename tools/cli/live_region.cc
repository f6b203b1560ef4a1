#include "tools/cli/live_region.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace tern::cli {

std::string LiveRegion::MoveToTop() const {
  // Cursor to column 0, up over the block, erase from there to the end of the screen.
  return height_ > 0 ? absl::StrCat("\r\x1b[", height_, "A\x1b[J") : std::string();
}

void LiveRegion::Draw(const std::vector<std::string>& lines) {
  // One write per frame, so the terminal never shows half a redraw.
  std::string frame = MoveToTop();
  for (const std::string& line : lines) absl::StrAppend(&frame, line, "\n");
  std::fwrite(frame.data(), 1, frame.size(), out_);
  std::fflush(out_);
  height_ = static_cast<int>(lines.size());
}

void LiveRegion::Clear() {
  if (height_ == 0) return;
  const std::string erase = MoveToTop();
  std::fwrite(erase.data(), 1, erase.size(), out_);
  std::fflush(out_);
  height_ = 0;
}

std::optional<FrameSize> TerminalSize(int fd) {
  struct winsize size = {};
  if (ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0 || size.ws_row == 0) return std::nullopt;
  return FrameSize{size.ws_col, size.ws_row};
}

}  // namespace tern::cli
