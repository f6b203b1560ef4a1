// Renders a parsed Jinja template (jinja_ast.h) over a set of variables.
//
// Scoping follows Jinja2: each for-loop iteration and each macro call gets a
// fresh scope, so a {% set %} inside a loop is gone after the iteration
// (namespace() objects are how templates carry state out); if-blocks share
// their enclosing scope; a macro sees its arguments and the template's
// top-level variables.
//
// Undefined values behave like Jinja2's default Undefined: they print as "",
// are false, iterate as empty, and raise an error on attribute access,
// arithmetic or tojson.
//
// Limits keep a hostile template from hanging or exhausting the server; each
// breach is an INVALID_ARGUMENT error, like any other template error. Errors
// name the template line.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/chat/jinja_ast.h"

namespace tern::runtime::jinja {

struct RenderLimits {
  int max_depth = 64;                    // nested macro calls
  int64_t max_steps = 1'000'000;         // loop iterations plus macro calls, per render
  int64_t max_output_bytes = 64 << 20;   // rendered text, and any string or list built on the way
};

struct RenderOptions {
  RenderLimits limits;
  std::tm now{};  // what strftime_now() formats
};

// `variables` must be a JSON object; its keys become the template's globals.
absl::StatusOr<std::string> RenderBody(const Body& body, const Json& variables,
                                       const RenderOptions& options);

}  // namespace tern::runtime::jinja
