#include "tools/cli/stream_assembly.h"

#include "absl/strings/ascii.h"

namespace tern::cli {

std::string TrimPointText(const std::string& text) { return std::string(absl::StripTrailingAsciiWhitespace(text)); }

void StreamAssembly::Add(const tern::v1::GenerateResponse& response, Clock::time_point now) {
  elapsed_s_ = std::chrono::duration<double>(now - sent_).count();
  if (!response.request_id().empty()) request_id_ = response.request_id();
  for (const tern::v1::Choice& choice : response.choices()) {
    PartText* part = nullptr;
    switch (choice.part()) {
      case tern::v1::CHOICE_PART_SKELETON:
        part = &skeleton_;
        has_skeleton_ = true;
        break;
      case tern::v1::CHOICE_PART_POINT:
        part = &points_[choice.index()];
        break;
      default:  // CHOICE_PART_ANSWER, or a part this client does not know: show it as answer text
        part = &answer_[choice.index()];
        break;
    }
    part->text += choice.text();
    part->tokens += choice.token_ids_size();
    if (choice.finish_reason() != tern::v1::FINISH_REASON_UNSPECIFIED) part->finish = choice.finish_reason();
    if (!ttft_s_.has_value() && (!choice.text().empty() || choice.token_ids_size() > 0)) ttft_s_ = elapsed_s_;
  }
  if (response.has_usage()) {
    has_usage_ = true;
    usage_ = response.usage();
  }
  if (response.decoding_mode() != tern::v1::DECODING_MODE_AUTO) decoding_used_ = response.decoding_mode();
  if (response.has_sot()) {
    has_sot_ = true;
    sot_ = response.sot();
  }
}

std::string StreamAssembly::FinalText() const {
  if (used_sot() && has_sot_ && !sot_.answer().empty()) return sot_.answer();
  std::string out;
  if (!answer_.empty()) {
    for (const auto& [index, part] : answer_) {
      if (!out.empty()) out += '\n';
      out += part.text;
    }
    return out;
  }
  for (const auto& [index, part] : points_) {
    if (!out.empty()) out += '\n';
    out += TrimPointText(part.text);
  }
  return out;
}

}  // namespace tern::cli
