// Chat templates: turn a conversation into the prompt text a model was
// trained on, by rendering the Jinja template that ships in a Hugging Face
// model's tokenizer_config.json (or chat_template.jinja).
//
// The renderer is tern's own Jinja interpreter (runtime/chat/jinja_*), set up
// the way transformers sets up Jinja2 for apply_chat_template: trim_blocks,
// lstrip_blocks, loop controls, tojson with ensure_ascii=False,
// raise_exception() and strftime_now(). Output matches Jinja2 byte for byte
// for the templates in tests/data/chat-templates/.
//
// Errors: every problem with a template or its inputs (syntax, unsupported
// construct, raise_exception() in the template, a type error while
// rendering, a resource limit) is INVALID_ARGUMENT with the template line in
// the message. Nothing a template does can crash or hang the process.
//
// Thread safety: a ChatTemplate is immutable after Parse; Render is const and
// may run on many threads at once.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/chat/jinja_ast.h"
#include "runtime/chat/jinja_renderer.h"

namespace tern::runtime {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool", ...
  std::string content;
  // More fields of the message dict that templates read (tool_calls,
  // tool_call_id, name, ...). Must be a JSON object; its keys go after role
  // and content and override them, so content can be null or a list of parts.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

struct ChatTemplateInputs {
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = false;
  std::string bos_token;
  std::string eos_token;
  // More template variables (tools, documents, date_string, enable_thinking,
  // ...). Must be a JSON object. As in transformers, `tools` and `documents`
  // are None unless given here.
  nlohmann::ordered_json extra_variables = nlohmann::ordered_json::object();
  // The time strftime_now() formats; nullopt means the current local time.
  std::optional<std::tm> now;
};

struct ChatTemplateOptions {
  int max_parse_depth = 128;  // nesting of blocks and expressions in the source
  jinja::RenderLimits limits;
};

class ChatTemplate {
 public:
  // Parses Jinja source. INVALID_ARGUMENT (with the line) for a syntax error
  // or a construct the interpreter does not support.
  static absl::StatusOr<ChatTemplate> Parse(const std::string& source,
                                            const ChatTemplateOptions& options = {});

  // Renders the prompt for `inputs`. INVALID_ARGUMENT when the template
  // raises (raise_exception(...), message included), hits a type error or an
  // undefined value it cannot use, or exceeds a limit.
  absl::StatusOr<std::string> Render(const ChatTemplateInputs& inputs) const;

 private:
  ChatTemplate(jinja::Body body, const ChatTemplateOptions& options)
      : body_(std::move(body)), options_(options) {}

  jinja::Body body_;  // macros point into this tree during a render; it never changes
  ChatTemplateOptions options_;
};

// What a model directory says about chat formatting.
struct ChatTemplateConfig {
  ChatTemplate chat_template;
  std::string bos_token;  // "" when tokenizer_config.json has none
  std::string eos_token;
};

// Reads the chat template of a Hugging Face model directory:
// <model_dir>/chat_template.jinja when present (it overrides the config, as
// in transformers), else tokenizer_config.json's "chat_template", which is a
// string or a list of {"name", "template"} entries (the one named "default"
// is used). bos_token/eos_token come from tokenizer_config.json (a string or
// an {"content": ...} object). NOT_FOUND when there is no template;
// INVALID_ARGUMENT for malformed JSON or template.
absl::StatusOr<ChatTemplateConfig> LoadChatTemplateConfig(const std::string& model_dir,
                                                          const ChatTemplateOptions& options = {});

// LoadChatTemplateConfig(model_dir).chat_template.
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir);

}  // namespace tern::runtime
