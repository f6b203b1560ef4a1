// Skeleton-of-Thought prompts: the skeleton prompt, one point-expansion
// prompt per point, and the prompting router's A/B/C question, rendered
// through the model's chat template; and reading the router's reply.
//
// Placeholders. A template field is plain text in which exactly these four
// names are special: {question}, {skeleton}, {index}, {point}. Any other
// brace text ("{questions}", "{{", JSON) is literal. Substitution is a
// single pass over the template, so a value is never scanned again: a
// question that contains "{skeleton}" appears literally.
//
// Rendering. messages = history + one user message (the filled user
// template); the chat template renders them with add_generation_prompt=true
// and the model's bos/eos tokens; then the filled pre-fill is appended, with
// no end-of-turn between, so the model continues it. Without a chat template
// (chat == nullptr) the plain-text layout is:
//   <system content>"\n\n"          for each system message
//   "User: "<content>"\n"           for each user message (history, then ours)
//   "Assistant: "<content>"\n"      for each assistant message
//   "Assistant:"<pre-fill>
// Other roles are INVALID_ARGUMENT there.
//
// Prefix sharing. Point prompts of one request differ only from {index} on:
// point_user puts the question and the whole skeleton before {index}, and
// the skeleton is quoted in FormatSkeleton's canonical form, so every point
// prompt of a skeleton shares all bytes up to the point number.
//
// Errors: INVALID_ARGUMENT for templates that fail Validate (message names
// the field), for a point that is not in the skeleton, and for anything the
// chat template raises. Pure functions, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/chat/chat_template.h"
#include "runtime/sot/skeleton_parser.h"

namespace tern::runtime {

struct SotPromptTemplates {  // overridable per model from the server config
  // User turn of the skeleton phase; {question} exactly once, no other
  // placeholder.
  std::string skeleton_user;
  // Appended after the skeleton prompt's generation prompt; no placeholders.
  // The decoded skeleton is this text followed by what the model writes.
  std::string skeleton_prefill = " 1.";
  // User turn of a point's expansion; {question}, {skeleton} and {index}
  // exactly once each, {index} after the other two; no {point} (the
  // per-point part must stay short: the point text goes in point_prefill).
  std::string point_user;
  // Appended after the point prompt's generation prompt; {point} exactly
  // once, {index} at most once, nothing else. JoinPoints assumes the default
  // layout " {index}. {point}" (its leading space, like the skeleton
  // pre-fill's, follows a template that ends with "Answer:" or "ASSISTANT:").
  std::string point_prefill = " {index}. {point}";
  // The prompting router's question (options A, B, C); {question} exactly
  // once, no other placeholder. No pre-fill.
  std::string router_user;

  // tern's wording; see sot_prompts.cc.
  static SotPromptTemplates Default();
  // OK when every field follows the placeholder rules above; else
  // INVALID_ARGUMENT naming the first bad field and placeholder.
  absl::Status Validate() const;
};

// The skeleton-phase prompt for `question`, ending with the skeleton pre-fill.
// `history`: earlier messages rendered before the SoT user turn (e.g. a
// system message); empty for a plain prompt.
absl::StatusOr<std::string> RenderSkeletonPrompt(const ChatTemplateConfig* chat,
                                                 const SotPromptTemplates& t,
                                                 const std::vector<ChatMessage>& history,
                                                 std::string_view question);

// The expansion prompt for `point`, ending with its pre-fill.
// `skeleton`: the decoded skeleton (pre-fill included) or its
// FormatSkeleton form; it is parsed again and quoted canonically.
// INVALID_ARGUMENT when `point` is not one of its points.
absl::StatusOr<std::string> RenderPointPrompt(const ChatTemplateConfig* chat,
                                              const SotPromptTemplates& t,
                                              const std::vector<ChatMessage>& history,
                                              std::string_view question,
                                              std::string_view skeleton,
                                              const SkeletonPoint& point);

// The prompting router's prompt: one user turn, generation prompt, no pre-fill.
absl::StatusOr<std::string> RenderRouterPrompt(const ChatTemplateConfig* chat,
                                               const SotPromptTemplates& t,
                                               std::string_view question);

struct RouterDecision {
  bool use_sot = false;     // true only for a clear "A"
  bool recognized = false;  // false: the reply was none of A, B, C (use_sot is false)
  char choice = 0;          // 'A', 'B', 'C', or 0 when not recognized
};

// Reads the router's reply. After any mix of leading whitespace and the
// characters ( [ * " ' the first character must be an upper-case A, B or C, followed by the end
// or by a character that is not an ASCII letter or digit ("A", " B.",
// "(C)", "**A**", "A: ..." are read; "a", "About", "Answer: A" are not).
// 'A' means the question suits SoT; 'B' and 'C' mean it does not; anything
// else does not and comes back with recognized == false.
RouterDecision ParseRouterReply(std::string_view reply);

}  // namespace tern::runtime
