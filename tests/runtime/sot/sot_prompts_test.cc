// Skeleton-of-Thought prompts against Jinja2, the reference renderer.
//
// Every case in tests/data/sot/prompt-cases.json (skeleton, point and router
// prompts; plain, unicode and placeholder-laden questions; a system-message
// history; default and custom templates) is rendered through every chat
// template of tests/data/chat-templates/templates.json, models/tern-demo-llm
// and the plain-text layout, and must equal byte for byte what
// tools/sot/render_sot_expected.py got from python3-jinja2
// (tests/data/sot/prompts-expected/<template>/<case>.txt). Also: template
// validation, the shared prefix of point prompts, router replies.
#include "runtime/sot/sot_prompts.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_files.h"

namespace tern::runtime {
namespace {

using Json = nlohmann::ordered_json;

const std::string kDataDir = TERN_TEST_DATA_DIR;
const std::string kChatDir = kDataDir + "/chat-templates";
const std::string kSotDir = kDataDir + "/sot";

Json ReadJson(const std::string& path) { return Json::parse(tern::test_data::ReadTestFile(path)); }

const Json& Cases() {
  static const Json* cases = new Json(ReadJson(kSotDir + "/prompt-cases.json"));
  return *cases;
}

SotPromptTemplates TemplatesFromJson(const Json& j) {
  SotPromptTemplates t;
  t.skeleton_user = j.at("skeleton_user").get<std::string>();
  t.skeleton_prefill = j.at("skeleton_prefill").get<std::string>();
  t.point_user = j.at("point_user").get<std::string>();
  t.point_prefill = j.at("point_prefill").get<std::string>();
  t.router_user = j.at("router_user").get<std::string>();
  return t;
}

std::vector<ChatMessage> History(const Json& c) {
  std::vector<ChatMessage> history;
  if (!c.contains("history")) return history;
  for (const Json& m : c.at("history")) {
    history.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  }
  return history;
}

std::vector<SkeletonPoint> PointsFromJson(const Json& c) {
  std::vector<SkeletonPoint> points;
  for (const Json& p : c.at("points")) points.push_back({p.at(0).get<int32_t>(), p.at(1).get<std::string>()});
  return points;
}

// Chat template entries: templates.json's, then prompt-cases.json's.
std::vector<Json> ChatTemplateEntries() {
  std::vector<Json> entries;
  for (const Json& e : ReadJson(kChatDir + "/templates.json")) entries.push_back(e);
  for (const Json& e : Cases().at("chat_templates")) entries.push_back(e);
  return entries;
}

// nullptr for the plain-text layout.
absl::StatusOr<std::unique_ptr<ChatTemplateConfig>> LoadChat(const Json& entry) {
  if (entry.contains("model_dir")) {
    auto config = LoadChatTemplateConfig(kChatDir + "/" + entry.at("model_dir").get<std::string>());
    if (!config.ok()) return config.status();
    return std::make_unique<ChatTemplateConfig>(std::move(*config));
  }
  if (!entry.contains("path")) return std::unique_ptr<ChatTemplateConfig>();
  auto parsed = ChatTemplate::Parse(tern::test_data::ReadTestFile(kChatDir + "/" + entry.at("path").get<std::string>()));
  if (!parsed.ok()) return parsed.status();
  return std::make_unique<ChatTemplateConfig>(ChatTemplateConfig{
      std::move(*parsed), entry.at("bos_token").get<std::string>(), entry.at("eos_token").get<std::string>()});
}

absl::StatusOr<std::string> RenderCase(const ChatTemplateConfig* chat, const Json& c) {
  const SotPromptTemplates t =
      TemplatesFromJson(Cases().at("templates").at(c.value("templates", std::string("default"))));
  const std::string question = c.at("question").get<std::string>();
  const std::string kind = c.at("kind").get<std::string>();
  if (kind == "skeleton") return RenderSkeletonPrompt(chat, t, History(c), question);
  if (kind == "router") return RenderRouterPrompt(chat, t, question);
  const std::string skeleton = c.at("skeleton").get<std::string>();
  const std::vector<SkeletonPoint> points = PointsFromJson(c);
  EXPECT_EQ(ParseSkeleton(skeleton), points) << "the case's points are not what the skeleton parses to";
  for (const SkeletonPoint& p : points) {
    if (p.index == c.at("point").get<int32_t>()) return RenderPointPrompt(chat, t, History(c), question, skeleton, p);
  }
  return absl::NotFoundError("the case names a point its skeleton does not have");
}

std::string ParamName(const testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

std::vector<std::string> ChatTemplateNames() {
  std::vector<std::string> names;
  for (const Json& e : ChatTemplateEntries()) names.push_back(e.at("name").get<std::string>());
  return names;
}

Json Entry(const std::string& name) {
  for (const Json& e : ChatTemplateEntries()) {
    if (e.at("name") == name) return e;
  }
  ADD_FAILURE() << "no chat template named " << name;
  return Json::object();
}

class SotPromptGoldenTest : public testing::TestWithParam<std::string> {};

TEST_P(SotPromptGoldenTest, MatchesJinja2ByteForByte) {
  auto chat = LoadChat(Entry(GetParam()));
  ASSERT_TRUE(chat.ok()) << chat.status();
  int checked = 0;
  for (const Json& c : Cases().at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(GetParam() + " / " + name);
    const std::string base = kSotDir + "/prompts-expected/" + GetParam() + "/" + name;
    const auto rendered = RenderCase(chat->get(), c);
    if (std::filesystem::exists(base + ".txt")) {
      ASSERT_TRUE(rendered.ok()) << rendered.status();
      EXPECT_EQ(*rendered, tern::test_data::ReadTestFile(base + ".txt"));
    } else {
      ASSERT_FALSE(rendered.ok()) << "Jinja2 raised " << tern::test_data::ReadTestFile(base + ".error")
                                  << " but tern rendered:\n"
                                  << *rendered;
      EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
    }
    ++checked;
  }
  EXPECT_GE(checked, 11);
}

// Every point prompt of one skeleton is the same text up to the point number,
// so the engine can share the KV of that prefix.
TEST_P(SotPromptGoldenTest, PointPromptsShareEverythingBeforeTheIndex) {
  auto chat = LoadChat(Entry(GetParam()));
  ASSERT_TRUE(chat.ok()) << chat.status();
  const SotPromptTemplates t = SotPromptTemplates::Default();
  const std::string skeleton = " 1. Remove distractions.\n2. Take breaks.\n3. Set goals.\n4. Sleep well.";
  const std::vector<ChatMessage> history = {{"system", "Be brief."}};
  std::vector<std::string> prompts;
  for (const SkeletonPoint& p : ParseSkeleton(skeleton)) {
    auto prompt = RenderPointPrompt(chat->get(), t, history, "How do I focus?", skeleton, p);
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    prompts.push_back(*prompt);
  }
  ASSERT_EQ(prompts.size(), 4u);
  const std::string marker = "Point to continue: ";
  const size_t shared = prompts[0].find(marker) + marker.size();
  ASSERT_NE(prompts[0].find(marker), std::string::npos);
  for (size_t i = 1; i < prompts.size(); ++i) {
    EXPECT_EQ(prompts[i].substr(0, shared), prompts[0].substr(0, shared));
    EXPECT_NE(prompts[i][shared], prompts[0][shared]);
  }
  EXPECT_NE(prompts[0].substr(0, shared).find("1. Remove distractions.\n2. Take breaks.\n3. Set goals.\n4. Sleep well."),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(ChatTemplates, SotPromptGoldenTest, testing::ValuesIn(ChatTemplateNames()), ParamName);

TEST(SotPromptTemplatesTest, DefaultIsValidAndMatchesTheFixture) {
  const SotPromptTemplates t = SotPromptTemplates::Default();
  EXPECT_TRUE(t.Validate().ok()) << t.Validate();
  // The golden files were rendered from the fixture's copy of the defaults.
  const SotPromptTemplates fixture = TemplatesFromJson(Cases().at("templates").at("default"));
  EXPECT_EQ(t.skeleton_user, fixture.skeleton_user);
  EXPECT_EQ(t.skeleton_prefill, " 1.");
  EXPECT_EQ(t.skeleton_prefill, fixture.skeleton_prefill);
  EXPECT_EQ(t.point_user, fixture.point_user);
  EXPECT_EQ(t.point_prefill, fixture.point_prefill);
  EXPECT_EQ(t.router_user, fixture.router_user);
  EXPECT_TRUE(TemplatesFromJson(Cases().at("templates").at("custom")).Validate().ok());
}

struct BadTemplate {
  std::string field;
  std::string value;
  std::string message;  // a part of the expected error
};

TEST(SotPromptTemplatesTest, ValidateNamesTheFieldAndThePlaceholder) {
  const BadTemplate cases[] = {
      {"skeleton_user", "no placeholder", "skeleton_user: {question} must appear exactly once (found 0)"},
      {"skeleton_user", "{question} {question}", "skeleton_user: {question} must appear exactly once (found 2)"},
      {"skeleton_user", "{question} {skeleton}", "skeleton_user: {skeleton} must not appear (found 1)"},
      {"skeleton_prefill", " {index}.", "skeleton_prefill: {index} must not appear"},
      {"point_user", "{question} {index}", "point_user: {skeleton} must appear exactly once (found 0)"},
      {"point_user", "{question} {skeleton}", "point_user: {index} must appear exactly once (found 0)"},
      {"point_user", "{index} {question} {skeleton}", "point_user: {index} must come after"},
      {"point_user", "{question} {index} {skeleton}", "point_user: {index} must come after"},
      {"point_user", "{question} {skeleton} {index} {point}", "point_user: {point} must not appear"},
      {"point_prefill", "{index}.", "point_prefill: {point} must appear exactly once (found 0)"},
      {"point_prefill", "{index}{index} {point}", "point_prefill: {index} may appear at most once (found 2)"},
      {"point_prefill", "{question} {point}", "point_prefill: {question} must not appear"},
      {"router_user", "A, B or C?", "router_user: {question} must appear exactly once (found 0)"},
      {"router_user", "{question} {index}", "router_user: {index} must not appear"},
  };
  for (const BadTemplate& bad : cases) {
    SCOPED_TRACE(bad.field + " = " + bad.value);
    SotPromptTemplates t = SotPromptTemplates::Default();
    if (bad.field == "skeleton_user") t.skeleton_user = bad.value;
    if (bad.field == "skeleton_prefill") t.skeleton_prefill = bad.value;
    if (bad.field == "point_user") t.point_user = bad.value;
    if (bad.field == "point_prefill") t.point_prefill = bad.value;
    if (bad.field == "router_user") t.router_user = bad.value;
    const absl::Status s = t.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(bad.message), std::string::npos) << s;
    // Rendering refuses the same templates.
    EXPECT_EQ(RenderSkeletonPrompt(nullptr, t, {}, "q").status(), s);
    EXPECT_EQ(RenderRouterPrompt(nullptr, t, "q").status(), s);
  }
  // Other brace text is literal and allowed anywhere.
  SotPromptTemplates t = SotPromptTemplates::Default();
  t.skeleton_prefill = "{questions} {{ }} {";
  t.router_user = "{question} {Question} {index ";
  EXPECT_TRUE(t.Validate().ok()) << t.Validate();
}

TEST(SotPromptsTest, SubstitutedValuesAreNeverScannedAgain) {
  SotPromptTemplates t = SotPromptTemplates::Default();
  t.point_user = "Q={question}|S={skeleton}|I={index}";
  t.point_prefill = "[{index}] {point}";
  const std::string skeleton = " 1. use {question}\n2. and {index}";
  auto prompt = RenderPointPrompt(nullptr, t, {}, "{skeleton}{point}", skeleton, {1, "use {question}"});
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt,
            "User: Q={skeleton}{point}|S=1. use {question}\n2. and {index}|I=1\n"
            "Assistant:[1] use {question}");
}

TEST(SotPromptsTest, PlainLayout) {
  SotPromptTemplates t = SotPromptTemplates::Default();
  t.skeleton_user = "Outline: {question}";
  const std::vector<ChatMessage> history = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}};
  auto prompt = RenderSkeletonPrompt(nullptr, t, history, "Why?");
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Outline: Why?\nAssistant: 1.");

  auto bad = RenderSkeletonPrompt(nullptr, t, {{"tool", "x"}}, "Why?");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("\"tool\""), std::string::npos) << bad.status();
}

TEST(SotPromptsTest, ThePointMustBeInTheSkeleton) {
  const SotPromptTemplates t = SotPromptTemplates::Default();
  const std::string skeleton = " 1. a\n2. b";
  EXPECT_TRUE(RenderPointPrompt(nullptr, t, {}, "q", skeleton, {2, "b"}).ok());
  EXPECT_EQ(RenderPointPrompt(nullptr, t, {}, "q", skeleton, {3, "c"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderPointPrompt(nullptr, t, {}, "q", skeleton, {2, "other"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderPointPrompt(nullptr, t, {}, "q", "", {1, "a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The decoded skeleton and its canonical form give the same prompt.
  EXPECT_EQ(*RenderPointPrompt(nullptr, t, {}, "q", " 1.  a \r\n\n2. b\nprose", {1, "a"}),
            *RenderPointPrompt(nullptr, t, {}, "q", FormatSkeleton(ParseSkeleton(skeleton)), {1, "a"}));
}

TEST(SotPromptsTest, ChatTemplateErrorsComeBackAsInvalidArgument) {
  // Llama 2's template raises when roles do not alternate.
  auto chat = LoadChat(Entry("llama-2"));
  ASSERT_TRUE(chat.ok()) << chat.status();
  auto prompt = RenderSkeletonPrompt(chat->get(), SotPromptTemplates::Default(), {{"user", "earlier"}}, "q");
  EXPECT_EQ(prompt.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RouterReplyTest, ReadsTheLetter) {
  struct Case {
    std::string reply;
    bool recognized;
    char choice;
  };
  const Case cases[] = {
      {"A", true, 'A'},          {" A.", true, 'A'},        {"\n(A)", true, 'A'},
      {"**A**", true, 'A'},      {"A: independent points", true, 'A'},
      {"\"A\"", true, 'A'},      {"[A]", true, 'A'},        {"\u00a0A\n", true, 'A'},
      {"B", true, 'B'},          {"B.", true, 'B'},         {"C", true, 'C'},
      {"(C) not a list", true, 'C'},
      {"", false, 0},            {"   ", false, 0},         {"a", false, 0},
      {"About", false, 0},       {"Answer: A", false, 0},   {"D", false, 0},
      {"AB", false, 0},          {"A1", false, 0},          {"The answer is A", false, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("reply: \"" + c.reply + "\"");
    const RouterDecision d = ParseRouterReply(c.reply);
    EXPECT_EQ(d.recognized, c.recognized);
    EXPECT_EQ(d.choice, c.choice);
    EXPECT_EQ(d.use_sot, c.choice == 'A');
  }
}

}  // namespace
}  // namespace tern::runtime
