#include "runtime/sot/sot_prompts.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tern::runtime {
namespace {

// The placeholders, in the order of the arrays below.
enum Placeholder { kQuestion = 0, kSkeleton, kIndex, kPoint, kNumPlaceholders };
constexpr std::array<std::string_view, kNumPlaceholders> kPlaceholderNames = {
    "{question}", "{skeleton}", "{index}", "{point}"};

// Calls `visit(placeholder, offset)` for each placeholder in `text`, left to
// right, and `literal(piece)` for the text between them.
template <typename Visit, typename Literal>
void Scan(std::string_view text, Visit visit, Literal literal) {
  size_t copied = 0;
  size_t pos = 0;
  while ((pos = text.find('{', pos)) != std::string_view::npos) {
    int found = -1;
    for (int p = 0; p < kNumPlaceholders; ++p) {
      if (text.substr(pos, kPlaceholderNames[p].size()) == kPlaceholderNames[p]) found = p;
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    literal(text.substr(copied, pos - copied));
    visit(static_cast<Placeholder>(found), pos);
    pos += kPlaceholderNames[found].size();
    copied = pos;
  }
  literal(text.substr(copied));
}

struct Values {
  std::string_view question = {};
  std::string_view skeleton = {};
  std::string_view index = {};
  std::string_view point = {};
};

// One pass: values are appended, never scanned again. Validate has made sure
// that `text` holds only placeholders its caller gives values for.
std::string Substitute(std::string_view text, const Values& values) {
  const std::array<std::string_view, kNumPlaceholders> by_placeholder = {
      values.question, values.skeleton, values.index, values.point};
  std::string out;
  Scan(
      text, [&](Placeholder p, size_t) { out.append(by_placeholder[p]); },
      [&](std::string_view piece) { out.append(piece); });
  return out;
}

// How often each placeholder may appear in one field.
struct FieldRule {
  std::string_view field;
  std::array<int, kNumPlaceholders> min;
  std::array<int, kNumPlaceholders> max;
  bool index_last = false;  // {index} must follow every other placeholder
};

absl::Status CheckField(std::string_view text, const FieldRule& rule) {
  std::array<int, kNumPlaceholders> count{};
  std::array<size_t, kNumPlaceholders> last{};
  Scan(
      text,
      [&](Placeholder p, size_t offset) {
        ++count[p];
        last[p] = offset;
      },
      [](std::string_view) {});
  for (int p = 0; p < kNumPlaceholders; ++p) {
    if (count[p] >= rule.min[p] && count[p] <= rule.max[p]) continue;
    std::string allowed;
    if (rule.max[p] == 0) {
      allowed = "must not appear";
    } else if (rule.min[p] == rule.max[p]) {
      allowed = "must appear exactly once";
    } else {
      allowed = "may appear at most once";
    }
    // Debian's Abseil has its own string_view: StrCat takes std::string here.
    return absl::InvalidArgumentError(absl::StrCat(
        "SoT prompt template ", std::string(rule.field), ": ", std::string(kPlaceholderNames[p]),
        " ", allowed, " (found ", count[p], ")"));
  }
  if (rule.index_last && (last[kIndex] < last[kQuestion] || last[kIndex] < last[kSkeleton])) {
    // Everything before {index} is shared by all points of a request.
    return absl::InvalidArgumentError(absl::StrCat(
        "SoT prompt template ", std::string(rule.field), ": {index} must come after {question} and {skeleton}"));
  }
  return absl::OkStatus();
}

// Plain-text layout for models without a chat template (see the header).
absl::StatusOr<std::string> RenderPlain(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      absl::StrAppend(&out, m.content, "\n\n");
    } else if (m.role == "user") {
      absl::StrAppend(&out, "User: ", m.content, "\n");
    } else if (m.role == "assistant") {
      absl::StrAppend(&out, "Assistant: ", m.content, "\n");
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "a model without a chat template takes only system, user and assistant messages, not \"",
          m.role, "\""));
    }
  }
  out += "Assistant:";
  return out;
}

// history + one user turn, with the generation prompt, then `prefill`.
absl::StatusOr<std::string> RenderTurn(const ChatTemplateConfig* chat,
                                       const std::vector<ChatMessage>& history,
                                       std::string user_text, std::string_view prefill) {
  std::vector<ChatMessage> messages = history;
  messages.push_back({"user", std::move(user_text)});
  absl::StatusOr<std::string> prompt;
  if (chat == nullptr) {
    prompt = RenderPlain(messages);
  } else {
    ChatTemplateInputs inputs;
    inputs.messages = std::move(messages);
    inputs.add_generation_prompt = true;
    inputs.bos_token = chat->bos_token;
    inputs.eos_token = chat->eos_token;
    prompt = chat->chat_template.Render(inputs);
  }
  if (prompt.ok()) prompt->append(prefill);
  return prompt;
}

// tern's own wording of the paper's open-source prompts.
constexpr std::string_view kSkeletonUser =
    "You are an organizer. Do not answer the question below: write only the skeleton of an "
    "answer, as a numbered list of points (1., 2., 3., ...). Each point is a short phrase of 3 to "
    "5 words, not a full sentence. A skeleton usually has 3 to 10 points. Write nothing but the "
    "skeleton.\n"
    "\n"
    "Example question: What makes a good cup of coffee?\n"
    "Skeleton:\n"
    "1. Freshly roasted beans.\n"
    "2. Grinding just before brewing.\n"
    "3. Water just off the boil.\n"
    "4. The right coffee-to-water ratio.\n"
    "\n"
    "Example question: How can a small town attract more visitors?\n"
    "Skeleton:\n"
    "1. Promote local festivals.\n"
    "2. Better public transport links.\n"
    "3. Support small guesthouses.\n"
    "4. Signpost nearby walking trails.\n"
    "5. Invite travel writers.\n"
    "\n"
    "Question: {question}\n"
    "Skeleton:";

// Everything up to "{index}" is the same for every point of a request.
constexpr std::string_view kPointUser =
    "You are one of several writers who each complete a single point of an answer. Other "
    "writers handle the other points.\n"
    "\n"
    "Question: {question}\n"
    "\n"
    "Skeleton of the answer:\n"
    "{skeleton}\n"
    "\n"
    "Continue only the point whose number is given below, starting from its skeleton words. "
    "Keep it very short: 1 to 2 sentences. Do not write any other point.\n"
    "Point to continue: {index}";

constexpr std::string_view kRouterUser =
    "Question: {question}\n"
    "\n"
    "How should an answer to this question be organized?\n"
    "A. As a numbered list of points (1., 2., 3., ...) in which each point can be written on "
    "its own, without the points before it.\n"
    "B. As a numbered list of points (1., 2., 3., ...) in which later points build on what the "
    "earlier points say.\n"
    "C. Not as a list of points.\n"
    "\n"
    "Reply with the letter A, B or C only. Do not explain, and do not answer the question.";

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

SotPromptTemplates SotPromptTemplates::Default() {
  SotPromptTemplates t;
  t.skeleton_user = std::string(kSkeletonUser);
  t.skeleton_prefill = " 1.";
  t.point_user = std::string(kPointUser);
  t.point_prefill = " {index}. {point}";
  t.router_user = std::string(kRouterUser);
  return t;
}

absl::Status SotPromptTemplates::Validate() const {
  //                              question skeleton index point
  const std::pair<const std::string*, FieldRule> fields[] = {
      {&skeleton_user, {"skeleton_user", {1, 0, 0, 0}, {1, 0, 0, 0}}},
      {&skeleton_prefill, {"skeleton_prefill", {0, 0, 0, 0}, {0, 0, 0, 0}}},
      {&point_user, {"point_user", {1, 1, 1, 0}, {1, 1, 1, 0}, /*index_last=*/true}},
      {&point_prefill, {"point_prefill", {0, 0, 0, 1}, {0, 0, 1, 1}}},
      {&router_user, {"router_user", {1, 0, 0, 0}, {1, 0, 0, 0}}},
  };
  for (const auto& [text, rule] : fields) {
    if (absl::Status s = CheckField(*text, rule); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RenderSkeletonPrompt(const ChatTemplateConfig* chat,
                                                 const SotPromptTemplates& t,
                                                 const std::vector<ChatMessage>& history,
                                                 std::string_view question) {
  if (absl::Status s = t.Validate(); !s.ok()) return s;
  return RenderTurn(chat, history, Substitute(t.skeleton_user, {.question = question}),
                    t.skeleton_prefill);
}

absl::StatusOr<std::string> RenderPointPrompt(const ChatTemplateConfig* chat,
                                              const SotPromptTemplates& t,
                                              const std::vector<ChatMessage>& history,
                                              std::string_view question,
                                              std::string_view skeleton,
                                              const SkeletonPoint& point) {
  if (absl::Status s = t.Validate(); !s.ok()) return s;
  const std::vector<SkeletonPoint> points = ParseSkeleton(skeleton);
  bool found = false;
  for (const SkeletonPoint& p : points) found = found || p == point;
  if (!found) {
    return absl::InvalidArgumentError(
        absl::StrCat("SoT point ", point.index, " (\"", point.text, "\") is not in the skeleton"));
  }
  const std::string canonical = FormatSkeleton(points);
  const std::string index = absl::StrCat(point.index);
  return RenderTurn(
      chat, history,
      Substitute(t.point_user, {.question = question, .skeleton = canonical, .index = index}),
      Substitute(t.point_prefill, {.index = index, .point = point.text}));
}

absl::StatusOr<std::string> RenderRouterPrompt(const ChatTemplateConfig* chat,
                                               const SotPromptTemplates& t,
                                               std::string_view question) {
  if (absl::Status s = t.Validate(); !s.ok()) return s;
  return RenderTurn(chat, {}, Substitute(t.router_user, {.question = question}), "");
}

RouterDecision ParseRouterReply(std::string_view reply) {
  reply = StripPyWhitespace(reply);
  size_t i = 0;
  while (i < reply.size() && std::string_view("([*\"' \t").find(reply[i]) != std::string_view::npos) {
    ++i;
  }
  RouterDecision decision;
  if (i >= reply.size()) return decision;
  const char c = reply[i];
  if (c != 'A' && c != 'B' && c != 'C') return decision;
  if (i + 1 < reply.size() && IsAsciiAlnum(reply[i + 1])) return decision;
  decision.recognized = true;
  decision.choice = c;
  decision.use_sot = c == 'A';
  return decision;
}

}  // namespace tern::runtime
