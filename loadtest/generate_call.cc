#include "loadtest/generate_call.h"

namespace tern::loadtest {

GenerateCall::GenerateCall(RequestTrace trace, tern::v1::GenerateRequest request, const std::string& api_key,
                           std::chrono::milliseconds timeout, tern::v1::Llm::StubInterface* stub, CallSink* sink)
    : LoadCall(std::move(trace)), request_(std::move(request)), timeout_(timeout), stub_(stub), sink_(sink) {
  if (!api_key.empty()) context_.AddMetadata("authorization", "Bearer " + api_key);
}

void GenerateCall::Start() {
  context_.set_deadline(std::chrono::system_clock::now() + timeout_);
  trace_.sent = Clock::now();
  stub_->async()->Generate(&context_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void GenerateCall::OnReadDone(bool ok) {
  if (!ok) return;  // end of stream or failure: OnDone follows with the status
  const Clock::time_point now = Clock::now();
  bool carries_tokens = false;
  for (const tern::v1::Choice& choice : response_.choices()) {
    trace_.counted_tokens += choice.token_ids_size();
    if (choice.token_ids_size() > 0 || !choice.text().empty()) carries_tokens = true;
    if (choice.finish_reason() != tern::v1::FINISH_REASON_UNSPECIFIED) {
      trace_.finish_reason = choice.finish_reason();
    }
  }
  if (carries_tokens) trace_.token_chunk_times.push_back(now);
  if (response_.decoding_mode() != tern::v1::DECODING_MODE_AUTO) trace_.decoding_used = response_.decoding_mode();
  if (response_.has_sot()) {
    const tern::v1::SotReport& sot = response_.sot();
    trace_.sot_report = true;
    trace_.router_decision = sot.router_decision();
    trace_.sot_fell_back = sot.fell_back();
    trace_.sot_points = sot.points_size();
  }
  if (response_.has_usage()) {
    trace_.usage_completion_tokens = response_.usage().completion_tokens();
    trace_.usage_prompt_tokens = response_.usage().prompt_tokens();
  }
  response_.Clear();
  StartRead(&response_);
}

void GenerateCall::OnDone(const grpc::Status& status) {
  trace_.done = Clock::now();
  trace_.status_code = static_cast<int>(status.error_code());
  trace_.status_message = status.error_message();
  sink_->OnCallDone(this);  // last action: the owner may delete `this` now
}

}  // namespace tern::loadtest
