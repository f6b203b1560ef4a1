#include "runtime/chat/jinja_value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "runtime/base/check.h"
#include "runtime/chat/jinja_text.h"

namespace tern::runtime::jinja {
namespace {

void AppendJsonString(const std::string& text, std::string* out) {
  out->push_back('"');
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

std::string JsonNumber(const Json& data) {
  if (data.is_number_float()) {
    const double v = data.get<double>();
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
    return FormatPyFloat(v);
  }
  if (data.is_number_unsigned()) return std::to_string(data.get<uint64_t>());
  return std::to_string(data.get<int64_t>());
}

void DumpJsonTo(const Json& data, const JsonDumpOptions& options, int depth, std::string* out) {
  auto newline = [&](int level) {
    if (!options.indent) return;
    out->push_back('\n');
    for (int i = 0; i < level; ++i) *out += *options.indent;
  };
  if (data.is_array()) {
    if (data.empty()) {
      *out += "[]";
      return;
    }
    out->push_back('[');
    bool first = true;
    for (const Json& item : data) {
      if (!first) *out += options.item_separator;
      first = false;
      newline(depth + 1);
      DumpJsonTo(item, options, depth + 1, out);
    }
    newline(depth);
    out->push_back(']');
  } else if (data.is_object()) {
    if (data.empty()) {
      *out += "{}";
      return;
    }
    std::vector<const std::string*> keys;
    for (auto it = data.begin(); it != data.end(); ++it) keys.push_back(&it.key());
    if (options.sort_keys) {
      std::sort(keys.begin(), keys.end(),
                [](const std::string* a, const std::string* b) { return *a < *b; });
    }
    out->push_back('{');
    bool first = true;
    for (const std::string* key : keys) {
      if (!first) *out += options.item_separator;
      first = false;
      newline(depth + 1);
      AppendJsonString(*key, out);
      *out += options.key_separator;
      DumpJsonTo(data.at(*key), options, depth + 1, out);
    }
    newline(depth);
    out->push_back('}');
  } else if (data.is_string()) {
    AppendJsonString(data.get_ref<const std::string&>(), out);
  } else if (data.is_boolean()) {
    *out += data.get<bool>() ? "true" : "false";
  } else if (data.is_null()) {
    *out += "null";
  } else {
    *out += JsonNumber(data);
  }
}

// Python compares str by code point; UTF-8 byte order is the same order.
int CompareStrings(const std::string& a, const std::string& b) { return a.compare(b); }

}  // namespace

Value Value::Undefined(std::string reason) {
  Value v;
  v.text_ = std::move(reason);
  return v;
}

Value Value::Namespace(std::shared_ptr<Json> attributes) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.attributes_ = std::move(attributes);
  return v;
}

Value Value::Macro(const Stmt* macro) {
  Value v;
  v.kind_ = Kind::kMacro;
  v.macro_ = macro;
  return v;
}

Value Value::Builtin(std::string name) {
  Value v;
  v.kind_ = Kind::kBuiltin;
  v.text_ = std::move(name);
  return v;
}

const Json& Value::data() const {
  CHECK(kind_ == Kind::kData) << "Value::data() on " << TypeName(*this);
  return *data_;
}

const std::string& Value::str() const {
  CHECK(is_string()) << "Value::str() on " << TypeName(*this);
  return data_->get_ref<const std::string&>();
}

Json& Value::namespace_attributes() const {
  CHECK(kind_ == Kind::kNamespace && attributes_ != nullptr);
  return *attributes_;
}

Json Value::ToJson() const {
  switch (kind_) {
    case Kind::kData: return *data_;
    case Kind::kNamespace: return *attributes_;
    case Kind::kBuiltin: return text_;
    case Kind::kMacro: return "<macro>";
    case Kind::kUndefined: return nullptr;
  }
  return nullptr;
}

std::string TypeName(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined: return "Undefined";
    case Value::Kind::kNamespace: return "Namespace";
    case Value::Kind::kMacro: return "Macro";
    case Value::Kind::kBuiltin: return "builtin_function_or_method";
    case Value::Kind::kData: break;
  }
  const Json& d = value.data();
  if (d.is_null()) return "NoneType";
  if (d.is_boolean()) return "bool";
  if (d.is_number_integer()) return "int";
  if (d.is_number_float()) return "float";
  if (d.is_string()) return "str";
  if (d.is_array()) return "list";
  return "dict";
}

bool Truthy(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kNamespace:
    case Value::Kind::kMacro:
    case Value::Kind::kBuiltin: return true;
    case Value::Kind::kData: break;
  }
  const Json& d = value.data();
  if (d.is_null()) return false;
  if (d.is_boolean()) return d.get<bool>();
  if (d.is_number()) return AsDouble(d) != 0.0;
  // json::empty() is false for every string, so strings are checked by length.
  if (d.is_string()) return !d.get_ref<const std::string&>().empty();
  if (d.is_array() || d.is_object()) return !d.empty();
  return true;
}

std::string PyRepr(const Json& data) {
  if (data.is_string()) return PyStringRepr(data.get_ref<const std::string&>());
  if (data.is_null()) return "None";
  if (data.is_boolean()) return data.get<bool>() ? "True" : "False";
  if (data.is_number_float()) return FormatPyFloat(data.get<double>());
  if (data.is_number_unsigned()) return std::to_string(data.get<uint64_t>());
  if (data.is_number_integer()) return std::to_string(data.get<int64_t>());
  std::string out;
  if (data.is_array()) {
    out = "[";
    bool first = true;
    for (const Json& item : data) {
      if (!first) out += ", ";
      first = false;
      out += PyRepr(item);
    }
    return out + "]";
  }
  out = "{";
  bool first = true;
  for (auto it = data.begin(); it != data.end(); ++it) {
    if (!first) out += ", ";
    first = false;
    out += PyStringRepr(it.key()) + ": " + PyRepr(it.value());
  }
  return out + "}";
}

std::string ToPyString(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNamespace: return "<Namespace " + PyRepr(value.namespace_attributes()) + ">";
    case Value::Kind::kMacro: return "<Macro>";
    case Value::Kind::kBuiltin: return "<built-in function " + value.builtin_name() + ">";
    case Value::Kind::kData: break;
  }
  if (value.is_string()) return value.str();
  return PyRepr(value.data());
}

double AsDouble(const Json& number) {
  if (number.is_boolean()) return number.get<bool>() ? 1.0 : 0.0;
  if (number.is_number_unsigned()) return static_cast<double>(number.get<uint64_t>());
  if (number.is_number_integer()) return static_cast<double>(number.get<int64_t>());
  return number.get<double>();
}

std::optional<int64_t> AsInt(const Json& value) {
  if (value.is_boolean()) return value.get<bool>() ? 1 : 0;
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

namespace {

bool JsonEquals(const Json& a, const Json& b) {
  const bool a_num = a.is_number() || a.is_boolean();
  const bool b_num = b.is_number() || b.is_boolean();
  if (a_num || b_num) {
    if (!(a_num && b_num)) return false;
    const auto ai = AsInt(a);
    const auto bi = AsInt(b);
    if (ai && bi) return *ai == *bi;
    return AsDouble(a) == AsDouble(b);
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!JsonEquals(a[i], b[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      const auto other = b.find(it.key());
      if (other == b.end() || !JsonEquals(it.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

absl::StatusOr<bool> JsonLess(const Json& a, const Json& b) {
  const bool a_num = a.is_number() || a.is_boolean();
  const bool b_num = b.is_number() || b.is_boolean();
  if (a_num && b_num) {
    const auto ai = AsInt(a);
    const auto bi = AsInt(b);
    if (ai && bi) return *ai < *bi;
    return AsDouble(a) < AsDouble(b);
  }
  if (a.is_string() && b.is_string()) {
    return CompareStrings(a.get_ref<const std::string&>(), b.get_ref<const std::string&>()) < 0;
  }
  if (a.is_array() && b.is_array()) {
    const size_t n = std::min(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) {
      if (JsonEquals(a[i], b[i])) continue;
      return JsonLess(a[i], b[i]);
    }
    return a.size() < b.size();
  }
  return absl::InvalidArgumentError("'<' not supported between instances of '" +
                                    TypeName(Value(a)) + "' and '" + TypeName(Value(b)) + "'");
}

}  // namespace

bool PyEquals(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.kind() == Value::Kind::kNamespace || b.kind() == Value::Kind::kNamespace) {
    return a.kind() == b.kind() && &a.namespace_attributes() == &b.namespace_attributes();
  }
  if (!a.is_data() || !b.is_data()) {
    return a.kind() == b.kind() && a.macro() == b.macro() && a.builtin_name() == b.builtin_name();
  }
  return JsonEquals(a.data(), b.data());
}

absl::StatusOr<bool> PyLess(const Value& a, const Value& b) {
  if (!a.is_data() || !b.is_data()) {
    return absl::InvalidArgumentError("'<' not supported between instances of '" + TypeName(a) +
                                      "' and '" + TypeName(b) + "'");
  }
  return JsonLess(a.data(), b.data());
}

std::string DumpJson(const Json& data, const JsonDumpOptions& options) {
  std::string out;
  DumpJsonTo(data, options, 0, &out);
  return out;
}

}  // namespace tern::runtime::jinja
