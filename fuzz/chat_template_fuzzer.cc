// Fuzzes chat templates (runtime/chat/): the Jinja lexer, parser and
// renderer. Input: template source, optionally followed by a NUL byte and
// the text of the last user message. The template is parsed and rendered
// with a fixed conversation (system, user, assistant with a tool call, user)
// and tools; any outcome is OK or INVALID_ARGUMENT, never a crash or a hang.
// Render limits are smaller than the defaults so that one input stays fast;
// the limit checks are exercised all the same.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>

#include "fuzz/fuzz_support.h"
#include "runtime/chat/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* begin = reinterpret_cast<const char*>(data);
  const char* nul = static_cast<const char*>(std::memchr(begin, '\0', size));
  const std::string source(begin, nul == nullptr ? size : static_cast<size_t>(nul - begin));
  const std::string user_text = nul == nullptr ? "What is 2+2?" : std::string(nul + 1, begin + size);

  tern::runtime::ChatTemplateOptions options;
  options.limits.max_steps = 20'000;
  options.limits.max_output_bytes = 1 << 20;
  auto chat_template = tern::runtime::ChatTemplate::Parse(source, options);
  if (!chat_template.ok()) {
    FUZZ_ASSERT(chat_template.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  tern::runtime::ChatTemplateInputs inputs;
  inputs.messages.push_back({.role = "system", .content = "You are terse."});
  inputs.messages.push_back({.role = "user", .content = "Hi"});
  tern::runtime::ChatMessage assistant{.role = "assistant", .content = "Let me check."};
  assistant.extra["tool_calls"] = nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}])");
  inputs.messages.push_back(std::move(assistant));
  inputs.messages.push_back({.role = "user", .content = user_text});
  inputs.add_generation_prompt = true;
  inputs.bos_token = "<s>";
  inputs.eos_token = "</s>";
  inputs.extra_variables["tools"] = nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "add", "description": "Adds.",
           "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}])");
  std::tm now{};
  now.tm_year = 124;
  now.tm_mon = 5;
  now.tm_mday = 11;
  inputs.now = now;
  const auto rendered = chat_template->Render(inputs);
  if (!rendered.ok()) FUZZ_ASSERT(rendered.status().code() == absl::StatusCode::kInvalidArgument);
  return 0;
}
