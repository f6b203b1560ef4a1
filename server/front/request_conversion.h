// tern.v1 requests -> native engine requests, for every transport (the
// OpenAI-compatible API converts its JSON into tern.v1 requests first). Runs
// after validation, so it only maps fields; the one place where proto
// sampling fields meet runtime::SamplingParams.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/engine.h"
#include "server/models/model_registry.h"
#include "tern/v1/llm.pb.h"

namespace tern::server {

runtime::SamplingParams ToSamplingParams(const tern::v1::SamplingParams& proto);

// The prompt's token ids: the given ids, or the text encoded with the
// model's tokenizer (with BOS as tokenizer_config.json says).
// FAILED_PRECONDITION for text on a model without a tokenizer.
absl::StatusOr<std::vector<int32_t>> PromptTokens(const tern::v1::GenerateRequest& request, const ServedModel& model);

// The chat prompt: messages rendered with the model's chat template, then
// encoded without adding special tokens (the template writes them).
absl::StatusOr<std::vector<int32_t>> ChatPromptTokens(const tern::v1::ChatRequest& request, const ServedModel& model);

// Fills the envelope: id, tenant, priority (request's + tenant's, clamped to
// [-200, 200]), arrival (now), and the call's deadline (InfiniteFuture: none).
scheduler::EngineRequest MakeEngineRequest(const std::string& request_id, const scheduler::Tenant& tenant,
                                           int32_t priority, std::vector<int32_t> prompt,
                                           runtime::SamplingParams sampling, absl::Time deadline);

}  // namespace tern::server
