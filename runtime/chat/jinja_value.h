// The value type of tern's Jinja interpreter and the Python semantics the
// reference renderer (Jinja2 on CPython) gives it: str(), truthiness, ==, <,
// and json.dumps for the tojson filter.
//
// Data is nlohmann::ordered_json, which keeps dict keys in insertion order as
// Python does. Beyond data a Value can be Undefined (a missing variable, item
// or attribute, carrying the reason for error messages), a namespace() object
// (mutable, shared by reference like the Python object), a macro, or a
// built-in function such as range(). Values are cheap to copy apart from the
// JSON they hold. Not thread-safe to mutate; const use is safe.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tern::runtime::jinja {

using Json = nlohmann::ordered_json;

struct Stmt;

class Value {
 public:
  enum class Kind { kUndefined, kData, kNamespace, kMacro, kBuiltin };

  // Undefined with no reason.
  Value() = default;
  // NOLINTNEXTLINE(google-explicit-constructor): data converts freely.
  Value(Json data) : kind_(Kind::kData), data_(std::make_shared<const Json>(std::move(data))) {}

  // `reason` completes "... is undefined" style errors, e.g. "'x' is undefined".
  static Value Undefined(std::string reason);
  // A namespace() object. The attributes are shared: a copy of the Value sees
  // assignments made through any other copy, as in Python.
  static Value Namespace(std::shared_ptr<Json> attributes);
  // `macro` is a kMacro statement owned by the parsed template, which outlives
  // every render.
  static Value Macro(const Stmt* macro);
  static Value Builtin(std::string name);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_data() const { return kind_ == Kind::kData; }
  bool is_none() const { return kind_ == Kind::kData && data_->is_null(); }
  bool is_string() const { return kind_ == Kind::kData && data_->is_string(); }
  bool is_list() const { return kind_ == Kind::kData && data_->is_array(); }
  bool is_dict() const { return kind_ == Kind::kData && data_->is_object(); }
  bool is_bool() const { return kind_ == Kind::kData && data_->is_boolean(); }
  // int or float; bool counts as a number, as in Python.
  bool is_number() const {
    return kind_ == Kind::kData && (data_->is_number() || data_->is_boolean());
  }
  bool is_integer() const { return kind_ == Kind::kData && data_->is_number_integer(); }
  bool is_float() const { return kind_ == Kind::kData && data_->is_number_float(); }

  // Data only (CHECKed).
  const Json& data() const;
  const std::string& str() const;  // kData string only
  // Reason an Undefined carries ("" when none).
  const std::string& undefined_reason() const { return text_; }
  Json& namespace_attributes() const;  // kNamespace only
  const Stmt* macro() const { return macro_; }
  const std::string& builtin_name() const { return text_; }

  // The value as data, for storing in a list or dict: a namespace becomes a
  // copy of its attributes, Undefined becomes null, a callable becomes its name.
  Json ToJson() const;

 private:
  Kind kind_ = Kind::kUndefined;
  // Shared and immutable so that copying a Value (every variable lookup does)
  // is O(1) even when it holds a whole conversation.
  std::shared_ptr<const Json> data_;
  std::string text_;                    // Undefined reason or builtin name
  std::shared_ptr<Json> attributes_;    // shared: namespace() has reference semantics
  const Stmt* macro_ = nullptr;
};

// Python type name for error messages: "int", "str", "list", "dict", ...
std::string TypeName(const Value& value);

// Python bool(value). Undefined is false.
bool Truthy(const Value& value);

// Python str(value) as Jinja prints it: None -> "None", True -> "True",
// lists and dicts in repr form, Undefined -> "".
std::string ToPyString(const Value& value);
// Python repr() of data.
std::string PyRepr(const Json& data);

// Python ==. Numbers compare by value across int, float and bool; lists and
// dicts compare deeply (dicts ignore key order); Undefined equals Undefined.
bool PyEquals(const Value& a, const Value& b);

// Python a < b: numbers, strings (by code point), lists (lexicographic).
// INVALID_ARGUMENT for other pairs, as Python raises TypeError.
absl::StatusOr<bool> PyLess(const Value& a, const Value& b);

// Numeric view of an int, float or bool (bool is 0/1).
double AsDouble(const Json& number);
// Integer view of an int or bool; nullopt for anything else.
std::optional<int64_t> AsInt(const Json& value);

struct JsonDumpOptions {
  std::optional<std::string> indent;  // nullopt: one line; "  ": newline + indent per level
  std::string item_separator = ", ";  // Python: ", " without indent, "," with it
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// Python json.dumps(data, ensure_ascii=False, ...): non-ASCII text is written
// as is, floats as repr() (NaN and infinities as NaN/Infinity).
std::string DumpJson(const Json& data, const JsonDumpOptions& options);

}  // namespace tern::runtime::jinja
