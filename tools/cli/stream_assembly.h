// StreamAssembly: what one Generate or Chat stream has said so far, sorted
// by part (Choice.part): the plain answer per choice, the Skeleton-of-Thought
// skeleton and each point, plus what the last message reports (usage, the
// decoding used, the SotReport). Displays and the JSON output read it.
// Single-threaded: fed one message at a time by the thread reading the stream.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "tern/v1/llm.pb.h"

namespace tern::cli {

using Clock = std::chrono::steady_clock;

// The text of one choice of one part, as streamed so far.
struct PartText {
  std::string text;
  int tokens = 0;                                                   // token ids received
  tern::v1::FinishReason finish = tern::v1::FINISH_REASON_UNSPECIFIED;  // set on its last chunk
  bool finished() const { return finish != tern::v1::FINISH_REASON_UNSPECIFIED; }
};

class StreamAssembly {
 public:
  // `sent`: when the call was started (TTFT and elapsed time count from it).
  explicit StreamAssembly(Clock::time_point sent) : sent_(sent) {}

  // Adds one message received at `now`.
  void Add(const tern::v1::GenerateResponse& response, Clock::time_point now);
  // The call's final status arrived at `now`.
  void End(Clock::time_point now) { elapsed_s_ = std::chrono::duration<double>(now - sent_).count(); }

  const std::string& request_id() const { return request_id_; }
  // CHOICE_PART_ANSWER, by choice index.
  const std::map<int, PartText>& answer() const { return answer_; }
  // CHOICE_PART_SKELETON (index 0); empty text when none came.
  const PartText& skeleton() const { return skeleton_; }
  bool has_skeleton() const { return has_skeleton_; }
  // CHOICE_PART_POINT, by 0-based point index.
  const std::map<int, PartText>& points() const { return points_; }

  bool has_usage() const { return has_usage_; }
  const tern::v1::Usage& usage() const { return usage_; }
  // The decoding the server reports it used; AUTO until it says.
  tern::v1::DecodingMode decoding_used() const { return decoding_used_; }
  bool has_sot() const { return has_sot_; }
  const tern::v1::SotReport& sot() const { return sot_; }
  bool used_sot() const { return decoding_used_ == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT; }

  // Seconds from sending to the first chunk with text or tokens of any part.
  std::optional<double> ttft_s() const { return ttft_s_; }
  // Seconds from sending to the last message added, or to End.
  double elapsed_s() const { return elapsed_s_; }

  // The finished answer: the SotReport's joined answer when points were
  // expanded; else the answer parts (choices joined by a newline); else the
  // points seen, one line each (a stream that ended before its report).
  std::string FinalText() const;

 private:
  Clock::time_point sent_;
  std::string request_id_;
  std::map<int, PartText> answer_;
  PartText skeleton_;
  bool has_skeleton_ = false;
  std::map<int, PartText> points_;
  bool has_usage_ = false;
  tern::v1::Usage usage_;
  tern::v1::DecodingMode decoding_used_ = tern::v1::DECODING_MODE_AUTO;
  bool has_sot_ = false;
  tern::v1::SotReport sot_;
  std::optional<double> ttft_s_;
  double elapsed_s_ = 0;
};

// A point's streamed text without the trailing whitespace the final answer
// drops ("<n>. <point> <expansion>").
std::string TrimPointText(const std::string& text);

}  // namespace tern::cli
