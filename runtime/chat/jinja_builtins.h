// Jinja's filters, tests, global functions and the Python methods chat
// templates call on strings and dicts, with the semantics Jinja2 gives them
// under Hugging Face's settings (tojson is HF's: json.dumps with
// ensure_ascii=False, keys in insertion order).
//
// Errors are INVALID_ARGUMENT without a line; the renderer adds it. An
// unknown filter, test, function or method is an error naming it.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/chat/jinja_value.h"

namespace tern::runtime::jinja {

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// What builtins need from the render.
struct BuiltinContext {
  std::tm now{};            // strftime_now() formats this time
  int64_t max_items = 0;    // cap on range() length and on strings/lists a filter builds
};

// {{ input | name(args) }}.
absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& input, const CallArgs& args,
                                  const BuiltinContext& context);

// {{ input is name(args) }}.
absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& input, const CallArgs& args);

// Whether `object.name(...)` is a method call (str.strip, dict.items, ...)
// rather than a call of the attribute's value. List mutators count, so that
// CallMethod can refuse them as the sandbox does.
bool HasMethod(const Value& object, const std::string& name);
// Whether `object.name` names a method that does not modify the object
// (str.strip, dict.items, ...). Jinja's getattr prefers such a method to a
// dict key of the same name, so `d.items` is the method even when d has a key
// "items" (d['items'] is the key).
bool IsReadOnlyMethod(const Value& object, const std::string& name);
absl::StatusOr<Value> CallMethod(const Value& object, const std::string& name, const CallArgs& args);

// range, namespace, dict, raise_exception, strftime_now.
bool IsGlobalFunction(const std::string& name);
absl::StatusOr<Value> CallGlobalFunction(const std::string& name, const CallArgs& args,
                                         const BuiltinContext& context);

// Python iteration over a value: list items, dict keys, string code points;
// Undefined iterates as empty. INVALID_ARGUMENT for None, numbers and such.
absl::StatusOr<std::vector<Value>> Iterate(const Value& value);

// Message prefix that marks an error raised by the template itself through
// raise_exception(); the render reports it with the template's own message.
inline constexpr char kRaisedByTemplate[] = "raise_exception: ";

}  // namespace tern::runtime::jinja
