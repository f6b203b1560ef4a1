#include "scheduler/programs/sot_program.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace tern::scheduler {
namespace {

// Fills {index} and {point} of a validated pre-fill in one pass, so text
// that itself holds a placeholder stays literal.
std::string FillPointPrefill(std::string_view pattern, const runtime::SkeletonPoint& point) {
  std::string out;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern.compare(i, 7, "{index}") == 0) {
      absl::StrAppend(&out, point.index);
      i += 7;
    } else if (pattern.compare(i, 7, "{point}") == 0) {
      out += point.text;
      i += 7;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

size_t CommonPrefixLength(const std::vector<std::vector<int32_t>>& prompts) {
  size_t n = prompts.front().size();
  for (const auto& p : prompts) {
    n = std::min(n, p.size());
    n = static_cast<size_t>(std::mismatch(p.begin(), p.begin() + n, prompts.front().begin()).first - p.begin());
  }
  return n;
}

}  // namespace

SotProgram::SotProgram(const SotConfig* config, SotRequest request, std::shared_ptr<SotOutcome> outcome)
    : config_(*config), request_(std::move(request)), outcome_(std::move(outcome)) {
  CHECK(config_.tokenizer != nullptr);
  CHECK(outcome_ != nullptr);
}

absl::StatusOr<std::vector<int32_t>> SotProgram::Encode(const std::string& prompt) const {
  // A rendered chat template already holds the BOS text when the model
  // wants one; the plain-text layout gets it from the tokenizer, as a plain
  // Generate prompt does.
  return config_.tokenizer->Encode(prompt, /*add_special_tokens=*/config_.chat_template == nullptr);
}

void SotProgram::Enter(Stage stage) {
  stage_ = stage;
  stage_start_ = absl::Now();
  texts_.clear();
}

absl::StatusOr<ProgramPhase> SotProgram::Start(const EngineRequest& request, const ProgramLimits& limits) {
  original_prompt_ = request.prompt_token_ids;
  original_sampling_ = request.sampling;
  limits_ = limits;
  max_tokens_ = original_sampling_.max_tokens.value_or(1);
  if (!request_.outline.empty()) {
    std::vector<runtime::SkeletonPoint> points;
    for (size_t i = 0; i < request_.outline.size(); ++i) {
      points.push_back({static_cast<int32_t>(i + 1), std::string(runtime::StripPyWhitespace(request_.outline[i]))});
    }
    outcome_->skeleton = runtime::FormatSkeleton(points);
    return PointsPhase(std::move(points), max_tokens_);
  }
  if (!request_.automatic) return SkeletonPhase();
  if (original_sampling_.n > 1 || config_.router == SotRouterKind::kNone) {
    outcome_->decision = SotDecision::kNormal;
    outcome_->router = config_.router == SotRouterKind::kNone ? "none" : "";
    return NormalPhase(max_tokens_);
  }
  if (config_.router == SotRouterKind::kPrompt) return RoutePhase();
  CHECK(config_.trained_router != nullptr);
  const absl::Time start = absl::Now();
  const bool sot = config_.trained_router->SuitsSot(request_.question);
  outcome_->router = "trained";
  outcome_->router_time = absl::Now() - start;
  outcome_->decision = sot ? SotDecision::kSot : SotDecision::kNormal;
  return sot ? SkeletonPhase() : absl::StatusOr<ProgramPhase>(NormalPhase(max_tokens_));
}

absl::StatusOr<ProgramPhase> SotProgram::RoutePhase() {
  ASSIGN_OR_RETURN(std::string text,
                   runtime::RenderRouterPrompt(config_.chat_template, config_.templates, request_.question));
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, Encode(text));
  runtime::SamplingParams greedy;
  greedy.temperature = 0.0f;
  greedy.max_tokens = static_cast<int32_t>(
      std::min<int64_t>(config_.router_max_tokens, limits_.max_context - static_cast<int64_t>(prompt.size())));
  if (*greedy.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("the router prompt has ", prompt.size(),
                                                   " tokens; the context holds ", limits_.max_context));
  }
  outcome_->router = "prompt";
  Enter(Stage::kRoute);
  ProgramPhase phase;
  phase.branches.push_back({0, std::move(prompt), greedy});
  return phase;
}

absl::StatusOr<ProgramPhase> SotProgram::SkeletonPhase() {
  ASSIGN_OR_RETURN(std::string text, runtime::RenderSkeletonPrompt(config_.chat_template, config_.templates,
                                                                   request_.history, request_.question));
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, Encode(text));
  runtime::SamplingParams sampling = original_sampling_;
  sampling.n = 1;
  sampling.stop.clear();  // the request's stop strings end its answer, not the outline
  sampling.logprobs.reset();
  const int64_t room = limits_.max_context - static_cast<int64_t>(prompt.size());
  // The skeleton takes at most half of max_tokens, so the answer (points,
  // or the fallback) always keeps the other half.
  const int64_t half = std::max<int64_t>(1, max_tokens_ / 2);
  sampling.max_tokens = static_cast<int32_t>(std::min<int64_t>({config_.max_skeleton_tokens, half, room}));
  if (*sampling.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("the skeleton prompt has ", prompt.size(),
                                                   " tokens; the context holds ", limits_.max_context));
  }
  Enter(Stage::kSkeleton);
  texts_.resize(1);
  skeleton_started_ = false;
  ProgramPhase phase;
  phase.branches.push_back({0, std::move(prompt), std::move(sampling)});
  return phase;
}

absl::StatusOr<ProgramPhase> SotProgram::PointsPhase(std::vector<runtime::SkeletonPoint> points, int64_t budget) {
  const std::string skeleton = runtime::FormatSkeleton(points);
  std::vector<std::vector<int32_t>> prompts;
  for (const runtime::SkeletonPoint& point : points) {
    ASSIGN_OR_RETURN(std::string text, runtime::RenderPointPrompt(config_.chat_template, config_.templates,
                                                                  request_.history, request_.question, skeleton, point));
    ASSIGN_OR_RETURN(std::vector<int32_t> prompt, Encode(text));
    prompts.push_back(std::move(prompt));
  }
  const int64_t n = static_cast<int64_t>(points.size());
  int64_t per_point = std::min<int64_t>(request_.max_point_tokens.value_or(config_.max_point_tokens), budget / n);
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  per_point = std::min<int64_t>(per_point, limits_.max_context - static_cast<int64_t>(longest));
  if (per_point < 1) {
    if (budget / n < 1) {
      // max_tokens leaves no token per point: answer normally instead.
      outcome_->fell_back = true;
      return NormalPhase(budget);
    }
    return absl::InvalidArgumentError(absl::StrCat("a point prompt has ", longest, " tokens; the context holds ",
                                                   limits_.max_context));
  }
  // Every full block of the common prefix is shared; each point computes at
  // least its last prompt token itself.
  size_t shortest = prompts.front().size();
  for (const auto& p : prompts) shortest = std::min(shortest, p.size());
  const size_t shared = std::min(CommonPrefixLength(prompts), shortest - 1);

  ProgramPhase phase;
  phase.shared_prefix.assign(prompts.front().begin(), prompts.front().begin() + shared);
  runtime::SamplingParams sampling = original_sampling_;
  sampling.n = 1;
  sampling.max_tokens = static_cast<int32_t>(per_point);
  point_prefixes_.clear();
  for (size_t i = 0; i < points.size(); ++i) {
    phase.branches.push_back(
        {static_cast<int32_t>(i), std::vector<int32_t>(prompts[i].begin() + shared, prompts[i].end()), sampling});
    point_prefixes_.push_back(FillPointPrefill(config_.templates.point_prefill, points[i]));
  }
  Enter(Stage::kPoints);
  texts_.resize(points.size());
  held_.assign(points.size(), {});
  strip_leading_.assign(points.size(), true);
  point_done_.assign(points.size(), false);
  next_release_ = 0;
  outcome_->points = std::move(points);
  outcome_->used_sot = true;
  return phase;
}

ProgramPhase SotProgram::NormalPhase(int64_t max_tokens) {
  Enter(Stage::kNormal);
  runtime::SamplingParams sampling = original_sampling_;
  sampling.max_tokens = static_cast<int32_t>(std::max<int64_t>(1, max_tokens));
  ProgramPhase phase;
  if (sampling.n <= 1) {
    phase.branches.push_back({0, original_prompt_, sampling});
    return phase;
  }
  // n choices share all but the last prompt token, as a plain request does.
  phase.shared_prefix.assign(original_prompt_.begin(), original_prompt_.end() - 1);
  for (int32_t i = 0; i < sampling.n; ++i) phase.branches.push_back({i, {original_prompt_.back()}, sampling});
  return phase;
}

absl::StatusOr<std::optional<ProgramPhase>> SotProgram::Next(const std::vector<BranchResult>& results) {
  const absl::Duration took = absl::Now() - stage_start_;
  switch (stage_) {
    case Stage::kRoute: {
      outcome_->router_time = took;
      const runtime::RouterDecision reply = runtime::ParseRouterReply(texts_.empty() ? "" : texts_[0]);
      outcome_->router_recognized = reply.recognized;
      outcome_->decision = reply.use_sot ? SotDecision::kSot : SotDecision::kNormal;
      if (!reply.use_sot) return std::optional<ProgramPhase>(NormalPhase(max_tokens_));
      ASSIGN_OR_RETURN(ProgramPhase phase, SkeletonPhase());
      return std::optional<ProgramPhase>(std::move(phase));
    }
    case Stage::kSkeleton: {
      outcome_->skeleton_time = took;
      // As streamed: the pre-fill without its leading space, then the model's text.
      outcome_->skeleton = std::string(runtime::StripPyWhitespace(config_.templates.skeleton_prefill)) + texts_[0];
      const int64_t used = results.empty() ? 0 : static_cast<int64_t>(results[0].output_token_ids.size());
      const int64_t left = max_tokens_ - used;
      std::vector<runtime::SkeletonPoint> points = runtime::ParseSkeleton(outcome_->skeleton);
      if (static_cast<int32_t>(points.size()) > config_.max_points) points.resize(config_.max_points);
      if (points.size() < 2) {
        outcome_->fell_back = true;
        if (left < 1) {
          stage_ = Stage::kDone;
          return std::optional<ProgramPhase>();
        }
        return std::optional<ProgramPhase>(NormalPhase(left));
      }
      ASSIGN_OR_RETURN(ProgramPhase phase, PointsPhase(std::move(points), left));
      return std::optional<ProgramPhase>(std::move(phase));
    }
    case Stage::kPoints:
      outcome_->expansion_time = took;
      outcome_->answer = runtime::JoinPoints(outcome_->points, texts_);
      stage_ = Stage::kDone;
      return std::optional<ProgramPhase>();
    case Stage::kNormal:
    case Stage::kDone:
      stage_ = Stage::kDone;
      return std::optional<ProgramPhase>();
  }
  return absl::InternalError("unknown Skeleton-of-Thought stage");
}

std::vector<ChoiceDelta> SotProgram::Present(std::vector<ChoiceDelta> deltas, bool request_final) {
  for (ChoiceDelta& d : deltas) {
    if (d.index >= 0 && static_cast<size_t>(d.index) < texts_.size()) texts_[d.index] += d.text;
  }
  switch (stage_) {
    case Stage::kRoute:
      return {};
    case Stage::kSkeleton:
      for (ChoiceDelta& d : deltas) {
        d.part = DeltaPart::kSkeleton;
        if (!skeleton_started_) {
          d.text = std::string(runtime::StripPyWhitespace(config_.templates.skeleton_prefill)) + d.text;
          skeleton_started_ = true;
        }
      }
      return deltas;
    case Stage::kPoints:
      return PresentPoints(std::move(deltas), request_final);
    case Stage::kNormal:
    case Stage::kDone:
      // After the points phase, only held-back points remain (request_final).
      if (!held_.empty()) return PresentPoints(std::move(deltas), request_final);
      return deltas;
  }
  return deltas;
}

std::vector<ChoiceDelta> SotProgram::PresentPoints(std::vector<ChoiceDelta> deltas, bool request_final) {
  std::vector<ChoiceDelta> out;
  for (ChoiceDelta& d : deltas) {
    d.part = DeltaPart::kPoint;
    const size_t i = static_cast<size_t>(d.index);
    CHECK_LT(i, point_prefixes_.size());
    if (strip_leading_[i]) {
      // The expansion's leading whitespace is dropped, as JoinPoints drops it.
      const std::string_view text = d.text;
      const std::string_view kept = runtime::StripPyWhitespace(text);
      if (kept.empty()) {
        d.text.clear();
      } else {
        d.text = std::string(text.substr(static_cast<size_t>(kept.data() - text.data())));
        strip_leading_[i] = false;
      }
    }
    if (!point_prefixes_[i].empty()) {
      // The point's pre-fill and a space open its text, as JoinPoints joins
      // it, so a point's deltas spell its line of the answer (up to trailing
      // whitespace, which only the final answer drops).
      const std::string prefix = std::exchange(point_prefixes_[i], std::string());
      d.text = std::string(runtime::StripPyWhitespace(prefix)) + " " + d.text;
    }
    const bool done = d.finish_reason != runtime::FinishReason::kNone || d.aborted;
    if (!request_.ordered) {
      out.push_back(std::move(d));
      continue;
    }
    held_[i].push_back(std::move(d));
    if (done) point_done_[i] = true;
  }
  if (!request_.ordered) return out;
  while (next_release_ < held_.size() && (point_done_[next_release_] || request_final)) {
    for (ChoiceDelta& d : held_[next_release_]) out.push_back(std::move(d));
    held_[next_release_].clear();
    ++next_release_;
  }
  // The point now streaming may go out as it comes.
  if (next_release_ < held_.size()) {
    for (ChoiceDelta& d : held_[next_release_]) out.push_back(std::move(d));
    held_[next_release_].clear();
  }
  return out;
}

}  // namespace tern::scheduler
