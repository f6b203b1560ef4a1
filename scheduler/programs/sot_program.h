// SotProgram: Skeleton-of-Thought as a request program (request_program.h).
//
// Phases:
//   route    (AUTO with the prompting router only) the served model answers
//            the A/B/C router question greedily; nothing is streamed.
//   skeleton the model writes a numbered outline after the pre-filled " 1."
//            (streamed as DeltaPart::kSkeleton, index 0, beginning "1.").
//   points   one sequence per point, all sharing the KV of their common
//            token prefix (template, instructions, question, skeleton) as a
//            gang; point i streams as DeltaPart::kPoint, index i (0-based,
//            in skeleton order), beginning with its pre-fill "<n>. <text>".
//   normal   the original prompt, decoded plainly (DeltaPart::kAnswer): when
//            routed so, or as the fallback when the skeleton has fewer than
//            two points (nothing is lost: the answer is decoded normally).
// A supplied outline skips the route and skeleton phases.
//
// Budgets: the request's max_tokens bounds the skeleton and the points
// together: the skeleton gets min(max_skeleton_tokens, max_tokens / 2); each of N
// points gets min(max_point_tokens, (max_tokens - skeleton tokens) / N); a
// fallback gets what the skeleton left. The router's tokens are counted in
// usage but not in max_tokens. Stop strings apply to points and to normal
// decoding, not to the skeleton or the router. logprobs come with points and
// normal decoding. n > 1 is decoded normally (the server rejects an explicit
// SoT request with n > 1). Ordered streaming holds point i back until points
// before it have finished.
//
// Thread: engine thread only (the RequestProgram contract). The outcome is
// written before the request's OnDone and read by its sink in OnDone.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "runtime/chat/chat_template.h"
#include "runtime/sot/skeleton_parser.h"
#include "runtime/sot/sot_prompts.h"
#include "runtime/sot/trained_router.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/programs/request_program.h"

namespace tern::scheduler {

enum class SotRouterKind { kNone, kPrompt, kTrained };

// Per served model; borrowed pointers outlive the engine.
struct SotConfig {
  SotRouterKind router = SotRouterKind::kTrained;
  const runtime::TrainedRouter* trained_router = nullptr;  // required for kTrained
  runtime::SotPromptTemplates templates = runtime::SotPromptTemplates::Default();
  int32_t max_skeleton_tokens = 256;
  int32_t max_point_tokens = 256;
  int32_t max_points = 32;         // a longer skeleton keeps its first points
  int32_t router_max_tokens = 4;   // the prompting router's greedy answer
  const runtime::Tokenizer* tokenizer = nullptr;                // required
  const runtime::ChatTemplateConfig* chat_template = nullptr;   // null: plain-text prompts
};

// One request's input to the program (the server builds it).
struct SotRequest {
  bool automatic = false;  // AUTO: route first; else Skeleton-of-Thought as asked
  std::string question;
  std::vector<runtime::ChatMessage> history;  // chat turns before the question
  std::vector<std::string> outline;           // supplied points: no skeleton phase
  bool ordered = false;
  std::optional<int32_t> max_point_tokens;    // overrides SotConfig's
};

enum class SotDecision {
  kNotRouted,  // the client asked for SoT (or supplied an outline)
  kSot,        // the router chose SoT
  kNormal,     // the router chose normal decoding
};

// What happened, for the last message and metrics.
struct SotOutcome {
  SotDecision decision = SotDecision::kNotRouted;
  std::string router;         // "prompt", "trained", or "" when not routed
  bool router_recognized = true;  // the prompting router's reply was A, B or C
  bool used_sot = false;      // points were expanded
  bool fell_back = false;     // the skeleton had fewer than two points
  std::string skeleton;       // as streamed: "1." (the pre-fill, trimmed) and the model's text
  std::vector<runtime::SkeletonPoint> points;
  std::string answer;         // the points joined (JoinPoints) when used_sot
  absl::Duration router_time = absl::ZeroDuration();
  absl::Duration skeleton_time = absl::ZeroDuration();
  absl::Duration expansion_time = absl::ZeroDuration();
};

class SotProgram final : public RequestProgram {
 public:
  // `outcome` is shared with the request's sink, which reads it in OnDone;
  // `config` is borrowed and outlives the program.
  SotProgram(const SotConfig* config, SotRequest request, std::shared_ptr<SotOutcome> outcome);

  absl::StatusOr<ProgramPhase> Start(const EngineRequest& request, const ProgramLimits& limits) override;
  absl::StatusOr<std::optional<ProgramPhase>> Next(const std::vector<BranchResult>& results) override;
  std::vector<ChoiceDelta> Present(std::vector<ChoiceDelta> deltas, bool request_final) override;

 private:
  enum class Stage { kRoute, kSkeleton, kPoints, kNormal, kDone };

  absl::StatusOr<std::vector<int32_t>> Encode(const std::string& prompt) const;
  absl::StatusOr<ProgramPhase> RoutePhase();
  absl::StatusOr<ProgramPhase> SkeletonPhase();
  // `max_tokens`: what the answer may still use.
  absl::StatusOr<ProgramPhase> PointsPhase(std::vector<runtime::SkeletonPoint> points, int64_t max_tokens);
  ProgramPhase NormalPhase(int64_t max_tokens);
  void Enter(Stage stage);
  std::vector<ChoiceDelta> PresentPoints(std::vector<ChoiceDelta> deltas, bool request_final);

  const SotConfig& config_;
  SotRequest request_;
  std::shared_ptr<SotOutcome> outcome_;
  // From Start.
  std::vector<int32_t> original_prompt_;
  runtime::SamplingParams original_sampling_;
  ProgramLimits limits_;
  int64_t max_tokens_ = 0;

  Stage stage_ = Stage::kDone;
  absl::Time stage_start_;
  std::vector<std::string> texts_;         // per branch of the current phase
  std::vector<std::string> point_prefixes_;  // "<n>. <text>" per point, until streamed
  std::vector<bool> strip_leading_;          // per point: no visible expansion text yet
  // Ordered streaming: held deltas per point and the next point to release.
  std::vector<std::vector<ChoiceDelta>> held_;
  std::vector<bool> point_done_;
  size_t next_release_ = 0;
  bool skeleton_started_ = false;
};

}  // namespace tern::scheduler
