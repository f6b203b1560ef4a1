// Splits Jinja template source into tokens, applying whitespace control the
// way Hugging Face configures Jinja2 for chat templates:
//   - trim_blocks: the first newline after a {% %} or {# #} tag is dropped;
//   - lstrip_blocks: spaces and tabs between a line start and {% or {# are
//     dropped ({%+ keeps them);
//   - {%- / {{- / {#- strip all whitespace before the tag, -%} / -}} / -#}
//     all whitespace after it;
//   - keep_trailing_newline off: one trailing newline of the source is dropped;
//   - \r\n and \r become \n everywhere.
// Comments produce no tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::runtime::jinja {

struct Token {
  enum class Kind {
    kText,           // literal template text (already whitespace-trimmed)
    kVariableBegin,  // {{
    kVariableEnd,    // }}
    kBlockBegin,     // {%
    kBlockEnd,       // %}
    kName,           // identifier or keyword
    kString,         // text holds the unescaped value
    kInteger,        // int_value
    kFloat,          // float_value
    kOperator,       // text holds the operator: "+", "//", "(", ...
    kEnd,            // end of source
  };
  Kind kind = Kind::kEnd;
  std::string text;
  int64_t int_value = 0;
  bool overflow = false;  // kInteger beyond int64; usable only as an attribute name (x.123...)
  double float_value = 0.0;
  int line = 1;  // 1-based line in the source where the token starts
};

// INVALID_ARGUMENT, naming the line, for an unterminated tag, comment or
// string, an unknown character or an unbalanced bracket inside a tag.
absl::StatusOr<std::vector<Token>> Tokenize(const std::string& source);

}  // namespace tern::runtime::jinja
