// StreamPrinter: how generate and chat show a stream.
//
//   plain      answer text (normal decoding) is written as it arrives; the
//              Skeleton-of-Thought answer, which streams as interleaved
//              points, is written once, joined, when the stream ends.
//   live       (stdout is a terminal) as plain, but while the skeleton and
//              the points stream, a live view (live_frame.h) is redrawn in
//              place at most every `redraw_every`; it is erased before the
//              final answer is written.
//   json       nothing while streaming; one JSON object (result_output.h)
//              on one line at the end, also for a failed call.
//
// At the end a summary line goes to stderr when stderr is a terminal or the
// stream carried a SotReport, so a pipe of plain normal decoding carries the
// text alone. Single-threaded: the thread reading the stream calls it.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "tools/cli/live_frame.h"
#include "tools/cli/live_region.h"
#include "tools/cli/stream_assembly.h"
#include "tern/v1/llm.pb.h"

namespace tern::cli {

// Where output goes and what it is.
struct Console {
  std::FILE* out = stdout;
  std::FILE* err = stderr;
  bool out_is_tty = false;                 // draw the live view
  bool err_is_tty = false;                 // the summary comes after every stream
  std::function<FrameSize()> terminal_size = [] { return FrameSize{}; };  // read before each redraw
  std::chrono::milliseconds redraw_every{50};
};

class StreamPrinter {
 public:
  // `json`: print the JSON object instead of text. `outline`: the points the
  // request supplied (labels for the live view). `sent`: when the call started.
  StreamPrinter(const Console& console, bool json, std::vector<std::string> outline, Clock::time_point sent);

  void OnMessage(const tern::v1::GenerateResponse& response, Clock::time_point now);
  // The call ended with `status` at `now`. Returns the exit status: 0, or 1
  // after printing the failed status to stderr.
  int Finish(const grpc::Status& status, Clock::time_point now);

  const StreamAssembly& stream() const { return stream_; }

 private:
  void Redraw(Clock::time_point now);

  Console console_;
  bool json_;
  std::vector<std::string> outline_;
  StreamAssembly stream_;
  LiveRegion region_;
  bool streamed_answer_ = false;   // answer text went to stdout as it came
  bool drawn_ = false;             // the live view was drawn at least once
  Clock::time_point last_draw_;
};

}  // namespace tern::cli
