// The one-line progress indicator on stderr, rewritten in place with "\r"
// and an erase-to-end-of-line escape. Single-threaded: the dispatcher only.
#pragma once

#include <cstdio>
#include <optional>
#include <string>

#include "loadtest/runner.h"

namespace tern::loadtest {

// "[ 12.3/30 s] sent 120 | in flight 10 | ok 108 | failed 2 | 8.8 req/s | 350.2 tok/s";
// the "/30" is the --duration when there is one.
std::string FormatProgress(const RunProgress& p, std::optional<double> duration_s);

class ProgressLine {
 public:
  // Writes to `out` only when `enabled`.
  ProgressLine(std::FILE* out, bool enabled, std::optional<double> duration_s)
      : out_(out), enabled_(enabled), duration_s_(duration_s) {}
  void Update(const RunProgress& p);
  // Ends the line so later output starts on a fresh one.
  void Finish();

 private:
  std::FILE* out_;
  bool enabled_;
  std::optional<double> duration_s_;
  bool wrote_ = false;
};

}  // namespace tern::loadtest
