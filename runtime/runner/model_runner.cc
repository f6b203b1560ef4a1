#include "runtime/runner/model_runner.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace tern::runtime {

absl::Status ModelRunner::Launch(const StepPlan& plan) {
  CHECK(!launched_.has_value()) << "a step was launched and not collected";
  absl::StatusOr<const StepPlan*> resolved = ResolveLastSamples(plan);
  if (!resolved.ok()) {
    launched_ = resolved.status();
    return resolved.status();
  }
  launched_ = Execute(**resolved);
  return launched_->status();
}

absl::StatusOr<StepResult> ModelRunner::Collect() {
  CHECK(launched_.has_value()) << "Collect without a launched step";
  absl::StatusOr<StepResult> result = std::move(*launched_);
  launched_.reset();
  if (result.ok()) RememberSamples(*result);
  return result;
}

absl::StatusOr<const StepPlan*> ModelRunner::ResolveLastSamples(const StepPlan& plan) {
  size_t from_last = 0;
  for (const SequenceStep& s : plan.sequences) from_last += s.input_from_last_sample ? 1 : 0;
  if (from_last == 0) return &plan;
  resolved_ = plan;
  resolved_tokens_.assign(from_last, 0);  // no reallocation below: the spans point into it
  size_t next = 0;
  for (SequenceStep& s : resolved_.sequences) {
    if (!s.input_from_last_sample) continue;
    if (s.token_ids.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, " takes its input from the last sample but computes ",
                                                     s.token_ids.size(), " tokens"));
    }
    auto it = last_samples_.find(s.seq_id);
    if (it == last_samples_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s.seq_id, " takes its input from the last sample, and the last step sampled none for it"));
    }
    // A row that could not be sampled fails its request when the collected
    // step is applied, and the engine discards this row's output: any token
    // in the vocabulary does (0 is in every one).
    resolved_tokens_[next] = it->second >= 0 ? it->second : 0;
    s.token_ids = absl::MakeConstSpan(&resolved_tokens_[next], 1);
    s.input_from_last_sample = false;
    ++next;
  }
  return &resolved_;
}

void ModelRunner::RememberSamples(const StepResult& result) {
  last_samples_.clear();
  for (const SequenceOutput& out : result.outputs) last_samples_[out.seq_id] = out.token.ok() ? out.token->token_id : -1;
}

}  // namespace tern::runtime
