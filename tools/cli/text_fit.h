// Fitting model text into one terminal line: control characters made
// harmless, and the text cut to a number of columns at a code point
// boundary. Column widths are estimated per code point (East Asian wide and
// emoji ranges take 2, combining marks 0, everything else 1), which is close
// enough to keep a line from wrapping when a small margin is left. Pure.
#pragma once

#include <string>
#include <string_view>

namespace tern::cli {

// One line of text: tabs, CR and LF become spaces, and every other control
// character (C0, DEL, C1; ESC above all) and invalid UTF-8 byte becomes '?',
// so model output cannot move the cursor or switch terminal modes.
std::string OneLine(std::string_view text);

// The estimated columns of a UTF-8 text produced by OneLine.
int DisplayColumns(std::string_view text);

// The longest prefix of `text` that fits `columns`; "…" ends it when it was cut.
std::string FitHead(std::string_view text, int columns);

// "…" and the longest suffix of `text` that fits the rest of `columns`
// (the text itself when it fits).
std::string FitTail(std::string_view text, int columns);

}  // namespace tern::cli
