#include "tools/cli/stream_printer.h"

#include "tools/cli/result_output.h"
#include "tools/cli/rpc_util.h"

namespace tern::cli {

StreamPrinter::StreamPrinter(const Console& console, bool json, std::vector<std::string> outline,
                             Clock::time_point sent)
    : console_(console), json_(json), outline_(std::move(outline)), stream_(sent), region_(console.out) {}

void StreamPrinter::OnMessage(const tern::v1::GenerateResponse& response, Clock::time_point now) {
  stream_.Add(response, now);
  if (json_) return;
  bool sot_text = false;
  bool point_finished = false;
  for (const tern::v1::Choice& choice : response.choices()) {
    if (choice.part() == tern::v1::CHOICE_PART_SKELETON || choice.part() == tern::v1::CHOICE_PART_POINT) {
      sot_text = sot_text || !choice.text().empty();
      point_finished = point_finished || choice.finish_reason() != tern::v1::FINISH_REASON_UNSPECIFIED;
      continue;
    }
    if (choice.text().empty()) continue;
    // Plain answer text (normal decoding, or the fallback after a skeleton
    // too short to expand): straight to stdout, the live view gone first.
    region_.Clear();
    std::fwrite(choice.text().data(), 1, choice.text().size(), console_.out);
    streamed_answer_ = true;
  }
  if (streamed_answer_) {
    std::fflush(console_.out);
    return;
  }
  if (!console_.out_is_tty || !(sot_text || point_finished)) return;
  if (!drawn_ || point_finished || now - last_draw_ >= console_.redraw_every) Redraw(now);
}

void StreamPrinter::Redraw(Clock::time_point now) {
  region_.Draw(LiveFrame(stream_, outline_, console_.terminal_size()));
  drawn_ = true;
  last_draw_ = now;
}

int StreamPrinter::Finish(const grpc::Status& status, Clock::time_point now) {
  stream_.End(now);
  region_.Clear();
  if (json_) {
    const std::string line = ResultJson(stream_, status.error_code(), status.error_message()).dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), console_.out);
    std::fflush(console_.out);
  }
  if (!status.ok()) {
    if (streamed_answer_ && !json_) std::fputc('\n', console_.out);  // the error gets a line of its own
    std::fflush(console_.out);
    return ReportError(status, console_.err);
  }
  if (!json_) {
    // The answer streamed already: end its line. Else (Skeleton-of-Thought)
    // write it whole now.
    const std::string text = streamed_answer_ ? "\n" : stream_.FinalText() + "\n";
    std::fwrite(text.data(), 1, text.size(), console_.out);
    std::fflush(console_.out);
  }
  if (console_.err_is_tty || stream_.has_sot()) {
    std::fprintf(console_.err, "%s\n", SummaryLine(stream_).c_str());
    std::fflush(console_.err);
  }
  return 0;
}

}  // namespace tern::cli
