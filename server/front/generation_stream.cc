#include "server/front/generation_stream.h"

#include <variant>

#include "absl/strings/str_cat.h"

namespace tern::server {
namespace {

tern::v1::FinishReason ToProto(const scheduler::ChoiceDelta& delta) {
  if (delta.aborted) return tern::v1::FINISH_REASON_ABORT;
  switch (delta.finish_reason) {
    case runtime::FinishReason::kStop: return tern::v1::FINISH_REASON_STOP;
    case runtime::FinishReason::kLength: return tern::v1::FINISH_REASON_LENGTH;
    case runtime::FinishReason::kNone: break;
  }
  return tern::v1::FINISH_REASON_UNSPECIFIED;
}

void SetLogprob(const runtime::Tokenizer* tokenizer, int32_t id, float logprob, tern::v1::TokenLogprob* out) {
  out->set_token_id(id);
  out->set_logprob(logprob);
  if (tokenizer != nullptr) {
    if (auto piece = tokenizer->IdToPiece(id); piece.ok()) out->set_token(std::string(*piece));
  }
}

tern::v1::ChoicePart ToProto(scheduler::DeltaPart part) {
  switch (part) {
    case scheduler::DeltaPart::kSkeleton: return tern::v1::CHOICE_PART_SKELETON;
    case scheduler::DeltaPart::kPoint: return tern::v1::CHOICE_PART_POINT;
    case scheduler::DeltaPart::kAnswer: break;
  }
  return tern::v1::CHOICE_PART_ANSWER;
}

}  // namespace

GenerationStream::GenerationStream(std::string request_id, tern::v1::DecodingMode mode,
                                   const runtime::Tokenizer* tokenizer, StreamObservation observation,
                                   std::shared_ptr<const scheduler::SotOutcome> sot)
    : request_id_(std::move(request_id)),
      mode_(mode),
      tokenizer_(tokenizer),
      sot_(std::move(sot)),
      observation_(std::move(observation)) {}

void GenerationStream::FillSotReport(tern::v1::GenerateResponse* last) const {
  const scheduler::SotOutcome& o = *sot_;
  last->set_decoding_mode(o.used_sot ? tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT : tern::v1::DECODING_MODE_NORMAL);
  tern::v1::SotReport* report = last->mutable_sot();
  switch (o.decision) {
    case scheduler::SotDecision::kNotRouted: report->set_router_decision(tern::v1::ROUTER_DECISION_NOT_ROUTED); break;
    case scheduler::SotDecision::kSot: report->set_router_decision(tern::v1::ROUTER_DECISION_SKELETON_OF_THOUGHT); break;
    case scheduler::SotDecision::kNormal: report->set_router_decision(tern::v1::ROUTER_DECISION_NORMAL); break;
  }
  report->set_router(o.router);
  report->set_fell_back(o.fell_back);
  report->set_skeleton(o.skeleton);
  for (const auto& point : o.points) {
    auto* p = report->add_points();
    p->set_number(point.index);
    p->set_text(point.text);
  }
  report->set_answer(o.answer);
  report->set_router_seconds(absl::ToDoubleSeconds(o.router_time));
  report->set_skeleton_seconds(absl::ToDoubleSeconds(o.skeleton_time));
  report->set_expansion_seconds(absl::ToDoubleSeconds(o.expansion_time));
}

void GenerationStream::ObserveChunk(int tokens, const std::vector<scheduler::ChoiceDelta>& deltas) {
  for (const auto& delta : deltas) {
    if (delta.aborted) outcome_ = "abort";
    else if (delta.finish_reason == runtime::FinishReason::kLength && outcome_ != "abort") outcome_ = "length";
  }
  if (tokens == 0 || observation_.metrics == nullptr) return;
  const auto now = std::chrono::steady_clock::now();
  if (!first_token_.has_value()) {
    first_token_ = now;
    observation_.metrics->ObserveTimeToFirstToken(observation_.model, observation_.tenant,
                                                  std::chrono::duration<double>(now - observation_.arrival).count());
  } else {
    observation_.metrics->ObserveInterTokenLatency(observation_.model, observation_.tenant,
                                                   std::chrono::duration<double>(now - *last_token_).count());
  }
  last_token_ = now;
}

void GenerationStream::ObserveDone(const absl::Status& status, const scheduler::RequestUsage& usage) {
  if (observation_.metrics == nullptr) return;
  const auto now = std::chrono::steady_clock::now();
  const double e2e = std::chrono::duration<double>(now - observation_.arrival).count();
  double tpot = 0;
  if (first_token_.has_value() && usage.completion_tokens > 1) {
    tpot = std::chrono::duration<double>(now - *first_token_).count() / (usage.completion_tokens - 1);
  }
  const std::string outcome = status.ok() ? outcome_ : absl::StatusCodeToString(status.code());
  if (usage.prompt_tokens > 0) {
    const double queue = absl::ToDoubleSeconds(usage.queue_time);
    double prefill = -1, decode = -1;
    if (first_token_.has_value()) {
      prefill = std::chrono::duration<double>(*first_token_ - observation_.arrival).count() - queue;
      decode = std::chrono::duration<double>(now - *first_token_).count();
    }
    observation_.metrics->ObserveAdmission(observation_.model, observation_.tenant, queue, prefill, decode,
                                           usage.prompt_tokens);
  }
  observation_.metrics->ObserveFinished(observation_.model, observation_.tenant, e2e, tpot, usage.completion_tokens,
                                        outcome);
  if (sot_ != nullptr && status.ok()) {
    const scheduler::SotOutcome& o = *sot_;
    const std::string decision = o.fell_back ? "fallback" : (o.used_sot ? "sot" : "normal");
    observation_.metrics->ObserveSot(
        observation_.model, observation_.tenant, decision, o.used_sot ? static_cast<int>(o.points.size()) : 0,
        o.skeleton_time > absl::ZeroDuration() ? absl::ToDoubleSeconds(o.skeleton_time) : -1,
        o.used_sot ? absl::ToDoubleSeconds(o.expansion_time) : -1, o.router, absl::ToDoubleSeconds(o.router_time));
  }
}

void GenerationStream::OnDeltas(const std::vector<scheduler::ChoiceDelta>& deltas) {
  tern::v1::GenerateResponse response;
  response.set_request_id(request_id_);
  if (sot_ == nullptr) response.set_decoding_mode(mode_);  // SoT: known on the last message
  int tokens = 0;
  for (const auto& delta : deltas) tokens += int(delta.token_ids.size());
  ObserveChunk(tokens, deltas);
  for (const auto& delta : deltas) {
    auto* choice = response.add_choices();
    choice->set_index(delta.index);
    choice->set_part(ToProto(delta.part));
    choice->set_text(delta.text);
    for (int32_t id : delta.token_ids) choice->add_token_ids(id);
    for (const auto& sampled : delta.logprobs) {
      auto* lp = choice->add_logprobs();
      if (sampled.logprob.has_value()) SetLogprob(tokenizer_, sampled.token_id, *sampled.logprob, lp->mutable_sampled());
      for (const auto& alt : sampled.top_logprobs) SetLogprob(tokenizer_, alt.token_id, alt.logprob, lp->add_top());
    }
    choice->set_finish_reason(ToProto(delta));
    if (const auto* text = std::get_if<std::string>(&delta.stop_reason)) choice->set_stop_reason(*text);
    if (const auto* id = std::get_if<int32_t>(&delta.stop_reason)) {
      std::string piece = absl::StrCat(*id);
      if (tokenizer_ != nullptr) {
        if (auto p = tokenizer_->IdToPiece(*id); p.ok()) piece = std::string(*p);
      }
      choice->set_stop_reason(piece);
    }
  }
  writes_.Push(std::move(response));
}

void GenerationStream::OnDone(const absl::Status& status, const scheduler::RequestUsage& usage) {
  ObserveDone(status, usage);
  if (!status.ok()) {
    writes_.EndDroppingPending(status);  // after an error only the status goes out
    return;
  }
  tern::v1::GenerateResponse last;
  last.set_request_id(request_id_);
  last.set_decoding_mode(mode_);
  last.mutable_usage()->set_prompt_tokens(usage.prompt_tokens);
  last.mutable_usage()->set_completion_tokens(usage.completion_tokens);
  last.mutable_usage()->set_cached_prompt_tokens(usage.cached_prompt_tokens);
  if (sot_ != nullptr) FillSotReport(&last);
  writes_.Push(std::move(last));
  writes_.End(status);
}

}  // namespace tern::server
