#include "runtime/chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/base/status_macros.h"
#include "runtime/chat/jinja_builtins.h"
#include "runtime/chat/jinja_parser.h"

namespace tern::runtime {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A special token in tokenizer_config.json: "<s>" or {"content": "<s>", ...}.
std::string SpecialToken(const Json& config, const char* field) {
  const auto it = config.find(field);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    const auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return "";
}

absl::StatusOr<std::string> TemplateFromConfig(const Json& config) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) {
    return absl::NotFoundError("tokenizer_config.json has no chat_template");
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const Json& entry : *it) {
      if (!entry.is_object()) continue;
      const auto name = entry.find("name");
      const auto text = entry.find("template");
      if (name != entry.end() && *name == "default" && text != entry.end() && text->is_string()) {
        return text->get<std::string>();
      }
    }
    return absl::NotFoundError("tokenizer_config.json chat_template has no entry named \"default\"");
  }
  return absl::InvalidArgumentError("tokenizer_config.json chat_template is neither a string nor a list");
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(const std::string& source,
                                                 const ChatTemplateOptions& options) {
  auto body = jinja::ParseTemplate(source, options.max_parse_depth);
  if (!body.ok()) {
    return absl::InvalidArgumentError("chat template: " + std::string(body.status().message()));
  }
  return ChatTemplate(std::move(*body), options);
}

absl::StatusOr<std::string> ChatTemplate::Render(const ChatTemplateInputs& inputs) const {
  if (!inputs.extra_variables.is_object()) {
    return absl::InvalidArgumentError("chat template: extra_variables must be a JSON object");
  }
  Json messages = Json::array();
  for (const ChatMessage& message : inputs.messages) {
    if (!message.extra.is_object()) {
      return absl::InvalidArgumentError("chat template: message extra fields must be a JSON object");
    }
    Json m = {{"role", message.role}, {"content", message.content}};
    for (auto it = message.extra.begin(); it != message.extra.end(); ++it) m[it.key()] = it.value();
    messages.push_back(std::move(m));
  }
  // The variables transformers' apply_chat_template passes to render().
  Json variables = {{"messages", std::move(messages)},
                    {"tools", nullptr},
                    {"documents", nullptr},
                    {"add_generation_prompt", inputs.add_generation_prompt},
                    {"bos_token", inputs.bos_token},
                    {"eos_token", inputs.eos_token}};
  for (auto it = inputs.extra_variables.begin(); it != inputs.extra_variables.end(); ++it) {
    variables[it.key()] = it.value();
  }
  jinja::RenderOptions render_options;
  render_options.limits = options_.limits;
  if (inputs.now) {
    render_options.now = *inputs.now;
  } else {
    const std::time_t now = std::time(nullptr);
    localtime_r(&now, &render_options.now);
  }
  auto rendered = jinja::RenderBody(body_, variables, render_options);
  if (!rendered.ok()) {
    std::string message(rendered.status().message());
    // raise_exception() is the template rejecting the conversation; say so plainly.
    const size_t raised = message.find(jinja::kRaisedByTemplate);
    if (raised != std::string::npos) {
      message = message.substr(0, raised) + "template raised an exception: " +
                message.substr(raised + std::string(jinja::kRaisedByTemplate).size());
    }
    return absl::Status(rendered.status().code(), "chat template: " + message);
  }
  return rendered;
}

absl::StatusOr<ChatTemplateConfig> LoadChatTemplateConfig(const std::string& model_dir,
                                                          const ChatTemplateOptions& options) {
  const std::filesystem::path dir(model_dir);
  const std::filesystem::path config_path = dir / "tokenizer_config.json";
  const std::filesystem::path jinja_path = dir / "chat_template.jinja";
  Json config = Json::object();
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
    config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(config_path.string() + " is not a JSON object");
    }
  }
  std::string source;
  if (std::filesystem::exists(jinja_path, ec)) {
    ASSIGN_OR_RETURN(source, ReadFile(jinja_path));
  } else if (config.empty()) {
    return absl::NotFoundError("no chat template in " + model_dir +
                               " (neither chat_template.jinja nor tokenizer_config.json)");
  } else {
    auto from_config = TemplateFromConfig(config);
    if (!from_config.ok()) {
      return absl::Status(from_config.status().code(),
                          config_path.string() + ": " + std::string(from_config.status().message()));
    }
    source = std::move(*from_config);
  }
  ASSIGN_OR_RETURN(ChatTemplate chat_template, ChatTemplate::Parse(source, options));
  return ChatTemplateConfig{std::move(chat_template), SpecialToken(config, "bos_token"),
                            SpecialToken(config, "eos_token")};
}

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir) {
  ASSIGN_OR_RETURN(ChatTemplateConfig config, LoadChatTemplateConfig(model_dir));
  return std::move(config.chat_template);
}

}  // namespace tern::runtime
