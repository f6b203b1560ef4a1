#include "scheduler/engine.h"

#include "absl/strings/str_cat.h"
#include "scheduler/engine_impl.h"
#include "scheduler/programs/request_program.h"

namespace tern::scheduler {

EngineRequest::EngineRequest() = default;
EngineRequest::~EngineRequest() = default;
EngineRequest::EngineRequest(EngineRequest&&) noexcept = default;
EngineRequest& EngineRequest::operator=(EngineRequest&&) noexcept = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options,
                                                       std::unique_ptr<runtime::ModelRunner> runner) {
  if (runner == nullptr) return absl::InvalidArgumentError("no model runner");
  if (options.max_num_seqs <= 0) return absl::InvalidArgumentError("max_num_seqs must be positive");
  if (options.max_num_batched_tokens <= 0) return absl::InvalidArgumentError("max_num_batched_tokens must be positive");
  if (options.max_queued_requests <= 0) return absl::InvalidArgumentError("max_queued_requests must be positive");
  if (options.stall_timeout <= absl::ZeroDuration()) return absl::InvalidArgumentError("stall_timeout must be positive");
  if (options.max_queued_requests_per_tenant < 0) {
    return absl::InvalidArgumentError("max_queued_requests_per_tenant must not be negative");
  }
  const runtime::KvCacheLayout layout = runner->kv_cache_layout();
  if (layout.num_blocks <= 0 || layout.block_size <= 0) {
    return absl::InvalidArgumentError("the model runner has an empty KV cache");
  }
  const runtime::KvCacheGroups* groups = runner->kv_cache_groups();
  const int32_t num_groups = groups != nullptr ? groups->num_groups() : 1;
  if (layout.num_groups != num_groups || layout.num_blocks < num_groups) {
    return absl::InvalidArgumentError(absl::StrCat("the model runner's KV cache of ", layout.num_blocks,
                                                   " blocks has ", layout.num_groups, " KV-cache groups; its groups say ",
                                                   num_groups));
  }
  if (runner->max_context_length() <= 1) return absl::InvalidArgumentError("the model's context is too short");
  if (runner->vocab_size() <= 0) return absl::InvalidArgumentError("the model has no vocabulary");
  auto engine = std::make_unique<EngineImpl>(options, std::move(runner));
  engine->Start();
  return engine;
}

}  // namespace tern::scheduler
