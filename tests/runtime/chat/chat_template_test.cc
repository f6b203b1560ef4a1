// Peer test: tern's chat templates against Jinja2, the reference renderer.
//
// Every template in tests/data/chat-templates/templates.json is rendered over
// every conversation in conversations.json, and the prompt must equal, byte
// for byte, what tools/chat/render_expected.py got from Debian's
// python3-jinja2 configured as Hugging Face transformers configures it
// (expected/<template>/<conversation>.txt). Where Jinja2 raised
// (expected/...error), tern must fail with INVALID_ARGUMENT, and with the
// template's own message when the template called raise_exception().
// Also covers the model-directory loader.
#include "runtime/chat/chat_template.h"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/runtime/chat/fixed_time.h"
#include "tests/test_files.h"

namespace tern::runtime {
namespace {

using Json = nlohmann::ordered_json;

const std::string kDataDir = TERN_TEST_DATA_DIR "/chat-templates";

std::string ReadAll(const std::string& path) { return tern::test_data::ReadTestFile(path); }

Json ReadJson(const std::string& path) { return Json::parse(ReadAll(path)); }

using testing_time::FixedNow;

ChatTemplateInputs InputsFor(const Json& conversation, const std::string& bos, const std::string& eos) {
  ChatTemplateInputs inputs;
  for (const Json& m : conversation.at("messages")) {
    ChatMessage message;
    message.role = m.at("role").get<std::string>();
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it.key() == "role") continue;
      if (it.key() == "content" && it.value().is_string()) {
        message.content = it.value().get<std::string>();
      } else {
        message.extra[it.key()] = it.value();
      }
    }
    inputs.messages.push_back(std::move(message));
  }
  inputs.add_generation_prompt = conversation.at("add_generation_prompt").get<bool>();
  inputs.bos_token = bos;
  inputs.eos_token = eos;
  if (conversation.contains("variables")) inputs.extra_variables = conversation.at("variables");
  inputs.now = FixedNow();
  return inputs;
}

struct LoadedTemplate {
  ChatTemplate chat_template;
  std::string bos_token;
  std::string eos_token;
};

absl::StatusOr<LoadedTemplate> Load(const Json& entry) {
  if (entry.contains("model_dir")) {
    auto config = LoadChatTemplateConfig(kDataDir + "/" + entry.at("model_dir").get<std::string>());
    if (!config.ok()) return config.status();
    return LoadedTemplate{std::move(config->chat_template), config->bos_token, config->eos_token};
  }
  auto parsed = ChatTemplate::Parse(ReadAll(kDataDir + "/" + entry.at("path").get<std::string>()));
  if (!parsed.ok()) return parsed.status();
  return LoadedTemplate{std::move(*parsed), entry.at("bos_token").get<std::string>(),
                        entry.at("eos_token").get<std::string>()};
}

Json TemplateEntry(const std::string& name) {
  for (const Json& entry : ReadJson(kDataDir + "/templates.json")) {
    if (entry.at("name") == name) return entry;
  }
  ADD_FAILURE() << "no template named " << name << " in templates.json";
  return Json::object();
}

// The templates exercised below; TemplatesJsonListsExactlyThese keeps this
// list and templates.json in step.
const std::string kTemplates[] = {"llama-3.1", "llama-3", "llama-2", "vicuna-1.1",
                                  "qwen-2.5",  "mistral-nemo", "smollm3", "phi-3.5"};

class ChatTemplateGoldenTest : public testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateGoldenTest, MatchesJinja2ByteForByte) {
  const Json entry = TemplateEntry(GetParam());
  auto loaded = Load(entry);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  int checked = 0;
  for (const Json& conversation : ReadJson(kDataDir + "/conversations.json")) {
    const std::string name = conversation.at("name").get<std::string>();
    SCOPED_TRACE(GetParam() + " / " + name);
    const std::string base = kDataDir + "/expected/" + GetParam() + "/" + name;
    const auto rendered =
        loaded->chat_template.Render(InputsFor(conversation, loaded->bos_token, loaded->eos_token));
    if (std::filesystem::exists(base + ".txt")) {
      ASSERT_TRUE(rendered.ok()) << rendered.status();
      EXPECT_EQ(*rendered, ReadAll(base + ".txt"));
    } else {
      const std::string error = ReadAll(base + ".error");
      ASSERT_FALSE(rendered.ok()) << "Jinja2 raised " << error << " but tern rendered:\n" << *rendered;
      EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
      const std::string raised = "TemplateError: ";
      if (error.rfind(raised, 0) == 0) {
        EXPECT_NE(rendered.status().message().find("template raised an exception: " +
                                                   error.substr(raised.size())),
                  std::string::npos)
            << rendered.status();
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 9);
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatTemplateGoldenTest, testing::ValuesIn(kTemplates),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(ChatTemplateGoldenTest, TemplatesJsonListsExactlyThese) {
  std::vector<std::string> in_json;
  for (const Json& entry : ReadJson(kDataDir + "/templates.json")) {
    in_json.push_back(entry.at("name").get<std::string>());
  }
  EXPECT_EQ(in_json, std::vector<std::string>(std::begin(kTemplates), std::end(kTemplates)));
}

TEST(ChatTemplateTest, DefaultsMatchTransformers) {
  // tools and documents are None unless given; extra variables override.
  auto t = ChatTemplate::Parse(
      "{{ tools is none }}|{{ documents is none }}|{{ messages | length }}|{{ messages[0].role }}:"
      "{{ messages[0].content }}|{{ bos_token }}{{ eos_token }}|{{ add_generation_prompt }}|{{ extra }}");
  ASSERT_TRUE(t.ok()) << t.status();
  ChatTemplateInputs inputs;
  inputs.messages.push_back({"user", "hi", Json::object()});
  inputs.bos_token = "<s>";
  inputs.eos_token = "</s>";
  inputs.add_generation_prompt = true;
  inputs.extra_variables = {{"extra", 7}};
  auto out = t->Render(inputs);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "True|True|1|user:hi|<s></s>|True|7");

  inputs.extra_variables = {{"tools", Json::array({"t"})}};
  out = t->Render(inputs);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->substr(0, 5), "False");
}

TEST(ChatTemplateTest, MessageExtraFieldsOverrideContent) {
  auto t = ChatTemplate::Parse("{{ messages[0].content is none }}|{{ messages[0].tool_call_id }}");
  ASSERT_TRUE(t.ok()) << t.status();
  ChatTemplateInputs inputs;
  inputs.messages.push_back({"tool", "ignored", {{"content", nullptr}, {"tool_call_id", "x1"}}});
  auto out = t->Render(inputs);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "True|x1");

  inputs.messages[0].extra = Json::array();
  EXPECT_EQ(t->Render(inputs).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, RaiseExceptionBecomesInvalidArgumentWithTheMessage) {
  auto t = ChatTemplate::Parse("line one\n{% if messages | length == 0 %}\n"
                               "{{ raise_exception('need at least one message') }}{% endif %}");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render(ChatTemplateInputs{});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("template line 3"), std::string::npos) << out.status();
  EXPECT_NE(out.status().message().find("template raised an exception: need at least one message"),
            std::string::npos)
      << out.status();
}

TEST(ChatTemplateTest, ParseErrorNamesTheLine) {
  auto t = ChatTemplate::Parse("ok\n{% if true %}\nfine\n{% include 'x.jinja' %}\n{% endif %}");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("template line 4"), std::string::npos) << t.status();
  EXPECT_NE(t.status().message().find("unsupported tag 'include'"), std::string::npos) << t.status();
}

TEST(ChatTemplateTest, StrftimeNowDefaultsToTheCurrentTime) {
  auto t = ChatTemplate::Parse("{{ strftime_now('%Y') }}");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render(ChatTemplateInputs{});
  ASSERT_TRUE(out.ok()) << out.status();
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  EXPECT_EQ(*out, std::to_string(local.tm_year + 1900));
}

TEST(ChatTemplateTest, RendersConcurrently) {
  auto t = ChatTemplate::Parse(ReadAll(kDataDir + "/meta-llama-Llama-3.1-8B-Instruct.jinja"));
  ASSERT_TRUE(t.ok()) << t.status();
  ChatTemplateInputs inputs;
  inputs.messages.push_back({"user", "hello", Json::object()});
  const auto reference = t->Render(inputs);
  ASSERT_TRUE(reference.ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 50; ++k) {
        const auto out = t->Render(inputs);
        if (!out.ok() || *out != *reference) ++mismatches[i];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// Mangled templates (seeded random cuts, copies and stray syntax inserted
// into the real templates) must parse and render to a result or an
// INVALID_ARGUMENT error; never crash, hang or return another code.
TEST(ChatTemplateTest, MangledTemplatesFailCleanly) {
  const char* const kFragments[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "+", "(", ")", "[", "]",
                                    "{", "}", "'", "\"", "\\", "|", " is ", " not ", ".", ",", ":",
                                    " if ", " else ", "endif", " for ", " in ", "endfor", "loop.", "~",
                                    "*", "**", "//", "%", "=", "ns.", "[::-1]", "raise_exception(", "\n"};
  ChatTemplateInputs inputs;
  inputs.messages = {{"system", "sys", Json::object()},
                     {"user", "hi", Json::object()},
                     {"assistant", "hello", Json::object()},
                     {"user", "bye", Json::object()}};
  inputs.add_generation_prompt = true;
  inputs.now = FixedNow();
  std::mt19937 rng(20240726);
  int rendered = 0;
  int rejected = 0;
  for (const Json& entry : ReadJson(kDataDir + "/templates.json")) {
    if (!entry.contains("path")) continue;
    const std::string original = ReadAll(kDataDir + "/" + entry.at("path").get<std::string>());
    for (int round = 0; round < 300; ++round) {
      std::string source = original;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !source.empty(); ++e) {
        const size_t at = rng() % source.size();
        const size_t len = 1 + rng() % 12;
        switch (rng() % 3) {
          case 0: source.erase(at, len); break;
          case 1: source.insert(at, source.substr(rng() % source.size(), len)); break;
          default: source.insert(at, kFragments[rng() % std::size(kFragments)]); break;
        }
      }
      auto parsed = ChatTemplate::Parse(source);
      if (!parsed.ok()) {
        EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
        ++rejected;
        continue;
      }
      auto out = parsed->Render(inputs);
      if (out.ok()) {
        ++rendered;
      } else {
        EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
        ++rejected;
      }
    }
  }
  // Both outcomes occur, so the mangling neither always breaks nor never does.
  EXPECT_GT(rendered, 100);
  EXPECT_GT(rejected, 100);
}

// ----- LoadChatTemplate -----

class LoadChatTemplateTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tern_chat_template_test_" + std::to_string(::getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::string RenderUser(const ChatTemplate& t) {
    ChatTemplateInputs inputs;
    inputs.messages.push_back({"user", "hi", Json::object()});
    auto out = t.Render(inputs);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : "";
  }

  std::filesystem::path dir_;
};

TEST_F(LoadChatTemplateTest, ReadsLlama3TokenizerConfig) {
  auto config = LoadChatTemplateConfig(kDataDir + "/../tokenizers/llama3");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token, "<|begin_of_text|>");
  EXPECT_EQ(config->eos_token, "<|end_of_text|>");
  auto t = LoadChatTemplate(kDataDir + "/../tokenizers/llama3");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(RenderUser(*t),
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_F(LoadChatTemplateTest, TakesTheDefaultEntryOfATemplateList) {
  Write("tokenizer_config.json",
        R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
            "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                              {"name": "default", "template": "DEFAULT {{ messages[0].content }}"}]})");
  auto config = LoadChatTemplateConfig(dir_.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token, "<s>");
  EXPECT_EQ(config->eos_token, "</s>");
  EXPECT_EQ(RenderUser(config->chat_template), "DEFAULT hi");
}

TEST_F(LoadChatTemplateTest, ChatTemplateJinjaOverridesTheConfig) {
  Write("tokenizer_config.json", R"({"chat_template": "FROM CONFIG", "eos_token": "</s>"})");
  Write("chat_template.jinja", "FROM FILE {{ messages[0].role }}\n");
  auto config = LoadChatTemplateConfig(dir_.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(RenderUser(config->chat_template), "FROM FILE user");
  EXPECT_EQ(config->eos_token, "</s>");
}

TEST_F(LoadChatTemplateTest, ErrorsForMissingOrBadTemplates) {
  EXPECT_EQ(LoadChatTemplate(dir_.string()).status().code(), absl::StatusCode::kNotFound);
  Write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  EXPECT_EQ(LoadChatTemplate(dir_.string()).status().code(), absl::StatusCode::kNotFound);
  Write("tokenizer_config.json", R"({"chat_template": [{"name": "rag", "template": "x"}]})");
  EXPECT_EQ(LoadChatTemplate(dir_.string()).status().code(), absl::StatusCode::kNotFound);
  Write("tokenizer_config.json", R"({"chat_template": 5})");
  EXPECT_EQ(LoadChatTemplate(dir_.string()).status().code(), absl::StatusCode::kInvalidArgument);
  Write("tokenizer_config.json", R"({"chat_template": "{% if %}"})");
  EXPECT_EQ(LoadChatTemplate(dir_.string()).status().code(), absl::StatusCode::kInvalidArgument);
  Write("tokenizer_config.json", "{not json");
  EXPECT_EQ(LoadChatTemplate(dir_.string()).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tern::runtime
