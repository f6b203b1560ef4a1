#include "loadtest/progress.h"

#include "absl/strings/str_format.h"

namespace tern::loadtest {

std::string FormatProgress(const RunProgress& p, std::optional<double> duration_s) {
  const std::string clock = duration_s.has_value() ? absl::StrFormat("%5.1f/%g s", p.elapsed_s, *duration_s)
                                                   : absl::StrFormat("%5.1f s", p.elapsed_s);
  const double rate = p.elapsed_s > 0 ? static_cast<double>(p.ok) / p.elapsed_s : 0;
  const double tokens = p.elapsed_s > 0 ? static_cast<double>(p.output_tokens) / p.elapsed_s : 0;
  return absl::StrFormat("[%s] sent %d | in flight %d | ok %d | failed %d | %.1f req/s | %.1f tok/s", clock,
                         p.sent, p.in_flight, p.ok, p.failed, rate, tokens);
}

void ProgressLine::Update(const RunProgress& p) {
  if (!enabled_) return;
  std::fprintf(out_, "\r%s\x1b[K", FormatProgress(p, duration_s_).c_str());
  std::fflush(out_);
  wrote_ = true;
}

void ProgressLine::Finish() {
  if (!enabled_ || !wrote_) return;
  std::fputc('\n', out_);
  std::fflush(out_);
}

}  // namespace tern::loadtest
