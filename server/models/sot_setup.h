// Skeleton-of-Thought settings of a served model, from its config
// (tern.v1.SotModelConfig) and the server's trained router file.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "runtime/chat/chat_template.h"
#include "runtime/sot/trained_router.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/programs/sot_program.h"
#include "tern/v1/config.pb.h"

namespace tern::server {

struct ServedSot {
  std::unique_ptr<runtime::TrainedRouter> trained_router;  // null unless the router is "trained"
  scheduler::SotConfig config;  // config.trained_router borrows trained_router
};

// Builds a model's SoT settings. `tokenizer` is required (a model without
// one cannot run SoT: the caller skips it); `chat` may be null. Errors
// (INVALID_ARGUMENT / NOT_FOUND) name the field or file: an unknown router,
// "trained" without a router file, a router file that does not load, limits
// out of range, prompt overrides that break the placeholder rules.
absl::StatusOr<std::unique_ptr<ServedSot>> MakeServedSot(const tern::v1::ServerConfig& server,
                                                         const tern::v1::ModelConfig& model,
                                                         const runtime::Tokenizer* tokenizer,
                                                         const runtime::ChatTemplateConfig* chat);

}  // namespace tern::server
