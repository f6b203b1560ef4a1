#include "server/front/sot_call.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace tern::server {

absl::StatusOr<SotCall> MakeSotCall(const ServedModel& model, tern::v1::DecodingMode mode,
                                    const tern::v1::SkeletonOfThought& sot, int32_t n, std::string question,
                                    std::vector<runtime::ChatMessage> history) {
  SotCall call;
  if (mode == tern::v1::DECODING_MODE_NORMAL) return call;
  const bool explicit_sot = mode == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT || sot.outline_size() > 0;
  if (model.sot == nullptr) {
    if (!explicit_sot) return call;
    return absl::FailedPreconditionError(absl::StrCat(
        "model \"", model.info.name(), "\" has no tokenizer, which Skeleton-of-Thought needs for its prompts"));
  }
  if (!explicit_sot &&
      (model.sot->config.router == scheduler::SotRouterKind::kNone || n > 1 || question.empty())) {
    return call;  // AUTO with nothing to decide: plain decoding
  }
  scheduler::SotRequest request;
  request.automatic = !explicit_sot;
  request.question = std::move(question);
  request.history = std::move(history);
  request.outline.assign(sot.outline().begin(), sot.outline().end());
  request.ordered = sot.ordered();
  if (sot.has_max_point_tokens()) request.max_point_tokens = sot.max_point_tokens();
  call.outcome = std::make_shared<scheduler::SotOutcome>();
  call.program = std::make_unique<scheduler::SotProgram>(&model.sot->config, std::move(request), call.outcome);
  return call;
}

}  // namespace tern::server
