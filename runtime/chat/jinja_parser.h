// Parses Jinja template source into a syntax tree (jinja_ast.h).
//
// The grammar is the subset of Jinja2 that chat templates use: text, {{ }},
// {# #}, if/elif/else, for (with an inline `if` filter and an else branch),
// set (plain, tuple, namespace attribute, block form), macro, break/continue,
// and HF's generation block; expressions with Jinja's operator precedence,
// filters, tests, calls, subscripts and slices, and list/dict/tuple literals.
// Anything else (extends, include, import, raw, call blocks, ...) is an
// INVALID_ARGUMENT error naming the line, never a crash. Nesting deeper than
// `max_depth` is an error too, so hostile input cannot exhaust the stack.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "runtime/chat/jinja_ast.h"

namespace tern::runtime::jinja {

absl::StatusOr<Body> ParseTemplate(const std::string& source, int max_depth);

}  // namespace tern::runtime::jinja
