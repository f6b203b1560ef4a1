// RequestProgram: a request that runs as phases on one engine. Each phase is
// one group of sequences sharing a prompt prefix (scheduler.h: AddGroup),
// admitted, scheduled and preempted as a gang; when every sequence of a phase
// has finished, the program looks at what they wrote and names the next
// phase, or ends the request. Skeleton-of-Thought is one (skeleton, then its
// points in parallel); n-best or speculative branches fit the same shape.
//
// The engine owns the program from Submit to OnDone. Thread: every method is
// called on the engine thread, one at a time, and must be quick (host work
// only: parsing, rendering, tokenizing; no waiting).
//
// Usage accounting: the engine adds every phase's prompt and output tokens to
// the request's usage. Cancel and deadlines abort the running phase; the
// program is then asked only to Present the last output (request_final).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/sampling/stop_checker.h"
#include "scheduler/engine.h"
#include "scheduler/scheduler.h"

namespace tern::scheduler {

// One phase: sequences whose prompts are shared_prefix + each branch's suffix.
struct ProgramPhase {
  std::vector<int32_t> shared_prefix;
  std::vector<BranchSpec> branches;  // >= 1; each suffix non-empty, sampling.max_tokens set
};

// How one sequence of a finished phase ended.
struct BranchResult {
  int32_t index = 0;
  int32_t num_prompt_tokens = 0;
  std::vector<int32_t> output_token_ids;
  runtime::FinishReason finish_reason = runtime::FinishReason::kNone;
};

// What the engine can hold, for a program sizing its phases.
struct ProgramLimits {
  int64_t max_context = 0;  // tokens per sequence (prompt + output)
  int64_t kv_tokens = 0;    // KV cache capacity in tokens
};

class RequestProgram {
 public:
  virtual ~RequestProgram() = default;
  // The first phase. `request` is the validated request as submitted
  // (max_tokens set); its prompt and sampling are the program's input.
  // An error fails the request with that status.
  virtual absl::StatusOr<ProgramPhase> Start(const EngineRequest& request, const ProgramLimits& limits) = 0;
  // Every sequence of the current phase finished (none aborted). The next
  // phase, or nullopt when the request is complete.
  virtual absl::StatusOr<std::optional<ProgramPhase>> Next(const std::vector<BranchResult>& results) = 0;
  // The current phase's new output, rewritten for the client: labelled
  // (ChoiceDelta::part), held back or dropped. `request_final`: nothing
  // follows (the program completed, or the request was cancelled, expired or
  // failed): release whatever is held back.
  virtual std::vector<ChoiceDelta> Present(std::vector<ChoiceDelta> deltas, bool request_final) = 0;
};

}  // namespace tern::scheduler
