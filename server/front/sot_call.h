// The Skeleton-of-Thought side of a Generate or Chat call: whether it runs as
// a SoT program (request_program.h) and the outcome its stream reports.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/chat/chat_template.h"
#include "scheduler/programs/sot_program.h"
#include "server/models/model_registry.h"
#include "tern/v1/llm.pb.h"

namespace tern::server {

struct SotCall {
  std::unique_ptr<scheduler::SotProgram> program;   // null: plain decoding
  std::shared_ptr<scheduler::SotOutcome> outcome;   // null: plain decoding
};

// A program when the call asks for SoT (SKELETON_OF_THOUGHT, or an outline)
// or is AUTO on a model whose router can decide (not "none"; n == 1; the
// question given as text). `question` and `history`: the text to answer and
// the chat turns before it. FAILED_PRECONDITION when SoT is asked of a model
// that cannot run it (no tokenizer).
absl::StatusOr<SotCall> MakeSotCall(const ServedModel& model, tern::v1::DecodingMode mode,
                                    const tern::v1::SkeletonOfThought& sot, int32_t n, std::string question,
                                    std::vector<runtime::ChatMessage> history);

}  // namespace tern::server
