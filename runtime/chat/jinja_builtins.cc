#include "runtime/chat/jinja_builtins.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <optional>

#include "runtime/base/status_macros.h"
#include "runtime/chat/jinja_text.h"

namespace tern::runtime::jinja {
namespace {

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// One parameter of a builtin's Python signature; no default means required.
struct Param {
  const char* name;
  std::optional<Value> default_value;
};

// Binds positional and keyword arguments to `params` the way Python does.
absl::StatusOr<std::vector<Value>> Bind(const std::string& function, const CallArgs& call,
                                        std::initializer_list<Param> params) {
  const std::vector<Param> list(params);
  if (call.positional.size() > list.size()) {
    return Invalid(function + "() takes at most " + std::to_string(list.size()) + " argument(s), " +
                   std::to_string(call.positional.size()) + " given");
  }
  std::vector<std::optional<Value>> bound(list.size());
  for (size_t i = 0; i < call.positional.size(); ++i) bound[i] = call.positional[i];
  for (const auto& [key, value] : call.keyword) {
    size_t i = 0;
    while (i < list.size() && key != list[i].name) ++i;
    if (i == list.size()) return Invalid(function + "() got an unexpected keyword argument '" + key + "'");
    if (bound[i]) return Invalid(function + "() got multiple values for argument '" + key + "'");
    bound[i] = value;
  }
  std::vector<Value> out;
  out.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    if (!bound[i]) {
      if (!list[i].default_value) {
        return Invalid(function + "() missing required argument '" + list[i].name + "'");
      }
      bound[i] = list[i].default_value;
    }
    out.push_back(*bound[i]);
  }
  return out;
}

Value None() { return Value(Json(nullptr)); }
Value Str(std::string s) { return Value(Json(std::move(s))); }
Value Int(int64_t v) { return Value(Json(v)); }
Value Bool(bool v) { return Value(Json(v)); }

absl::StatusOr<std::string> RequireString(const std::string& what, const Value& value) {
  if (!value.is_string()) return Invalid(what + " must be a string, not " + TypeName(value));
  return value.str();
}

absl::StatusOr<int64_t> RequireInt(const std::string& what, const Value& value) {
  if (value.is_data()) {
    if (auto i = AsInt(value.data())) return *i;
  }
  return Invalid(what + " must be an integer, not " + TypeName(value));
}

std::optional<std::string> OptionalString(const Value& value) {
  if (value.is_none() || value.is_undefined()) return std::nullopt;
  return ToPyString(value);
}

absl::Status CheckSize(int64_t size, const BuiltinContext& context) {
  if (size > context.max_items) {
    return Invalid("result of " + std::to_string(size) + " items exceeds the limit of " +
                   std::to_string(context.max_items));
  }
  return absl::OkStatus();
}

Json ToJsonList(const std::vector<Value>& values) {
  Json list = Json::array();
  for (const Value& v : values) list.push_back(v.ToJson());
  return list;
}

// Jinja's environment.getattr for filters with attribute=: dict key, with
// dotted paths ("a.b") and integer parts indexing lists.
Value GetAttributePath(const Value& item, const std::string& path) {
  Value current = item;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (current.is_dict() && current.data().contains(part)) {
      current = Value(current.data().at(part));
    } else if (current.is_list() && !part.empty() && part.size() < 18 &&
               std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
               std::strtoull(part.c_str(), nullptr, 10) < current.data().size()) {
      current = Value(current.data().at(std::strtoull(part.c_str(), nullptr, 10)));
    } else if (current.kind() == Value::Kind::kNamespace &&
               current.namespace_attributes().contains(part)) {
      current = Value(current.namespace_attributes().at(part));
    } else {
      return Value::Undefined("'" + TypeName(current) + " object' has no attribute '" + part + "'");
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return current;
}

// Lower-cases strings for Jinja's case-insensitive sort/unique.
Value CaseFold(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Str(AsciiLower(v.str()));
  return v;
}

// The test named in select/reject/selectattr/rejectattr, applied to one item.
absl::StatusOr<bool> RunSelectTest(const Value& item, const CallArgs& args, size_t test_index) {
  if (args.positional.size() <= test_index) return Truthy(item);
  const Value& test_name = args.positional[test_index];
  ASSIGN_OR_RETURN(std::string name, RequireString("test name", test_name));
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + static_cast<long>(test_index) + 1,
                              args.positional.end());
  test_args.keyword = args.keyword;
  return ApplyTest(name, item, test_args);
}

absl::StatusOr<std::string> ToJsonText(const Value& value, const CallArgs& args) {
  ASSIGN_OR_RETURN(auto bound, Bind("tojson", args,
                                    {{"indent", None()}, {"ensure_ascii", Bool(false)},
                                     {"separators", None()}, {"sort_keys", Bool(false)}}));
  if (!value.is_data()) return Invalid("Object of type " + TypeName(value) + " is not JSON serializable");
  JsonDumpOptions options;
  const Value& indent = bound[0];
  if (indent.is_string()) {
    options.indent = indent.str();
  } else if (!indent.is_none()) {
    ASSIGN_OR_RETURN(int64_t width, RequireInt("tojson indent", indent));
    options.indent = std::string(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
  }
  if (options.indent) options.item_separator = ",";
  if (Truthy(bound[1])) return Invalid("tojson(ensure_ascii=true) is not supported");
  if (!bound[2].is_none()) {
    const Value& seps = bound[2];
    if (!seps.is_list() || seps.data().size() != 2 || !seps.data()[0].is_string() ||
        !seps.data()[1].is_string()) {
      return Invalid("tojson separators must be a pair of strings");
    }
    options.item_separator = seps.data()[0].get<std::string>();
    options.key_separator = seps.data()[1].get<std::string>();
  }
  options.sort_keys = Truthy(bound[3]);
  return DumpJson(value.data(), options);
}

std::string Indent(const std::string& text, const std::string& indention, bool first, bool blank) {
  const std::vector<std::string> lines = PySplitLines(text + "\n");
  std::string out;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indention;
      out += lines[i];
    }
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
    }
  }
  if (first) out = indention + out;
  return out;
}

absl::StatusOr<Value> Length(const Value& input) {
  if (input.is_undefined()) return Int(0);
  if (input.is_string()) return Int(CodePointCount(input.str()));
  if (input.is_list() || input.is_dict()) return Int(static_cast<int64_t>(input.data().size()));
  if (input.kind() == Value::Kind::kNamespace) {
    return Int(static_cast<int64_t>(input.namespace_attributes().size()));
  }
  return Invalid("object of type '" + TypeName(input) + "' has no len()");
}

absl::StatusOr<Value> SortOrUnique(const std::string& name, const Value& input, const CallArgs& args) {
  const bool is_sort = name == "sort";
  std::vector<Value> bound;
  if (is_sort) {
    ASSIGN_OR_RETURN(bound, Bind(name, args, {{"reverse", Bool(false)}, {"case_sensitive", Bool(false)},
                                              {"attribute", None()}}));
  } else {
    ASSIGN_OR_RETURN(bound, Bind(name, args, {{"case_sensitive", Bool(false)}, {"attribute", None()}}));
    bound.insert(bound.begin(), Bool(false));
  }
  const bool reverse = Truthy(bound[0]);
  const bool case_sensitive = Truthy(bound[1]);
  const std::optional<std::string> attribute = OptionalString(bound[2]);
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  auto key = [&](const Value& item) {
    return CaseFold(attribute ? GetAttributePath(item, *attribute) : item, case_sensitive);
  };
  if (!is_sort) {
    std::vector<Value> unique;
    std::vector<Value> seen;
    for (const Value& item : items) {
      const Value k = key(item);
      bool found = false;
      for (const Value& s : seen) found = found || PyEquals(s, k);
      if (found) continue;
      seen.push_back(k);
      unique.push_back(item);
    }
    return Value(ToJsonList(unique));
  }
  absl::Status error = absl::OkStatus();
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    auto less = reverse ? PyLess(key(b), key(a)) : PyLess(key(a), key(b));
    if (!less.ok()) {
      error = less.status();
      return false;
    }
    return *less;
  });
  RETURN_IF_ERROR(error);
  return Value(ToJsonList(items));
}

absl::StatusOr<Value> MapFilter(const Value& input, const CallArgs& args, const BuiltinContext& context) {
  ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
  std::vector<Value> out;
  std::optional<std::string> attribute;
  std::optional<Value> default_value;
  for (const auto& [key, value] : args.keyword) {
    if (key == "attribute") {
      attribute = ToPyString(value);
    } else if (key == "default") {
      default_value = value;
    } else if (args.positional.empty()) {
      return Invalid("map() got an unexpected keyword argument '" + key + "'");
    }
  }
  if (attribute) {
    for (const Value& item : items) {
      Value v = GetAttributePath(item, *attribute);
      if (v.is_undefined() && default_value) v = *default_value;
      out.push_back(v);
    }
    return Value(ToJsonList(out));
  }
  if (args.positional.empty()) return Invalid("map() needs a filter name or attribute=");
  ASSIGN_OR_RETURN(std::string filter, RequireString("map filter name", args.positional[0]));
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  filter_args.keyword = args.keyword;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value v, ApplyFilter(filter, item, filter_args, context));
    out.push_back(v);
  }
  return Value(ToJsonList(out));
}

}  // namespace

absl::StatusOr<std::vector<Value>> Iterate(const Value& value) {
  std::vector<Value> items;
  if (value.is_undefined()) return items;
  if (value.is_list()) {
    for (const Json& item : value.data()) items.emplace_back(item);
    return items;
  }
  if (value.is_dict()) {
    for (auto it = value.data().begin(); it != value.data().end(); ++it) items.push_back(Str(it.key()));
    return items;
  }
  if (value.is_string()) {
    for (char32_t c : DecodeUtf8(value.str())) items.push_back(Str(EncodeUtf8(std::u32string(1, c))));
    return items;
  }
  return Invalid("'" + TypeName(value) + "' object is not iterable");
}

absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& input, const CallArgs& args,
                                  const BuiltinContext& context) {
  // Filters that accept Undefined input come first; the rest refuse it below.
  if (name == "default" || name == "d") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"default_value", Str("")}, {"boolean", Bool(false)}}));
    const bool use_default = input.is_undefined() || (Truthy(bound[1]) && !Truthy(input));
    return use_default ? bound[0] : input;
  }
  if (name == "string") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    return Str(ToPyString(input));
  }
  if (name == "length" || name == "count") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    return Length(input);
  }
  if (name == "list") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
    return Value(ToJsonList(items));
  }
  if (name == "items") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    if (input.is_undefined()) return Value(Json::array());
    if (!input.is_dict()) return Invalid("items filter needs a mapping, not " + TypeName(input));
    Json pairs = Json::array();
    for (auto it = input.data().begin(); it != input.data().end(); ++it) {
      pairs.push_back(Json::array({it.key(), it.value()}));
    }
    return Value(std::move(pairs));
  }
  if (name == "trim") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"chars", None()}}));
    return Str(PyStrip(ToPyString(input), OptionalString(bound[0]), true, true));
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    const std::string text = ToPyString(input);
    if (name == "upper") return Str(AsciiUpper(text));
    if (name == "lower") return Str(AsciiLower(text));
    if (name == "capitalize") return Str(PyCapitalize(text));
    return Str(PyTitle(text));
  }
  if (name == "safe") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    return input;
  }
  if (name == "replace") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"old", std::nullopt}, {"new", std::nullopt},
                                                   {"count", None()}}));
    int64_t count = -1;
    if (!bound[2].is_none()) {
      ASSIGN_OR_RETURN(count, RequireInt("replace count", bound[2]));
    }
    std::string out = PyReplace(ToPyString(input), ToPyString(bound[0]), ToPyString(bound[1]), count);
    RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(out.size()), context));
    return Str(std::move(out));
  }
  if (name == "indent") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"width", Int(4)}, {"first", Bool(false)},
                                                   {"blank", Bool(false)}}));
    std::string indention;
    if (bound[0].is_string()) {
      indention = bound[0].str();
    } else {
      ASSIGN_OR_RETURN(int64_t width, RequireInt("indent width", bound[0]));
      RETURN_IF_ERROR(CheckSize(width, context));
      indention = std::string(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
    }
    return Str(Indent(ToPyString(input), indention, Truthy(bound[1]), Truthy(bound[2])));
  }
  if (name == "join") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"d", Str("")}, {"attribute", None()}}));
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
    const std::optional<std::string> attribute = OptionalString(bound[1]);
    const std::string separator = ToPyString(bound[0]);
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += separator;
      out += ToPyString(attribute ? GetAttributePath(items[i], *attribute) : items[i]);
      RETURN_IF_ERROR(CheckSize(static_cast<int64_t>(out.size()), context));
    }
    return Str(std::move(out));
  }
  if (name == "first" || name == "last") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
    if (items.empty()) return Value::Undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    if (input.is_string()) {
      std::u32string cps = DecodeUtf8(input.str());
      std::reverse(cps.begin(), cps.end());
      return Str(EncodeUtf8(cps));
    }
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
    std::reverse(items.begin(), items.end());
    return Value(ToJsonList(items));
  }
  if (name == "tojson") {
    ASSIGN_OR_RETURN(std::string text, ToJsonText(input, args));
    return Str(std::move(text));
  }
  if (name == "select" || name == "reject") {
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
    std::vector<Value> out;
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(bool pass, RunSelectTest(item, args, 0));
      if (pass == (name == "select")) out.push_back(item);
    }
    return Value(ToJsonList(out));
  }
  if (name == "selectattr" || name == "rejectattr") {
    if (args.positional.empty()) return Invalid(name + "() needs an attribute name");
    ASSIGN_OR_RETURN(std::string attribute, RequireString(name + " attribute", args.positional[0]));
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
    std::vector<Value> out;
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(bool pass, RunSelectTest(GetAttributePath(item, attribute), args, 1));
      if (pass == (name == "selectattr")) out.push_back(item);
    }
    return Value(ToJsonList(out));
  }
  if (name == "dictsort") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"case_sensitive", Bool(false)}, {"by", Str("key")},
                                                   {"reverse", Bool(false)}}));
    if (!input.is_dict()) return Invalid("dictsort needs a mapping, not " + TypeName(input));
    const std::string by = ToPyString(bound[1]);
    if (by != "key" && by != "value") return Invalid("dictsort: by must be 'key' or 'value'");
    std::vector<std::pair<Value, Value>> pairs;
    for (auto it = input.data().begin(); it != input.data().end(); ++it) {
      pairs.emplace_back(Str(it.key()), Value(it.value()));
    }
    const bool case_sensitive = Truthy(bound[0]);
    const bool reverse = Truthy(bound[2]);
    absl::Status error = absl::OkStatus();
    std::stable_sort(pairs.begin(), pairs.end(), [&](const auto& a, const auto& b) {
      const Value ka = CaseFold(by == "key" ? a.first : a.second, case_sensitive);
      const Value kb = CaseFold(by == "key" ? b.first : b.second, case_sensitive);
      auto less = reverse ? PyLess(kb, ka) : PyLess(ka, kb);
      if (!less.ok()) {
        error = less.status();
        return false;
      }
      return *less;
    });
    RETURN_IF_ERROR(error);
    Json out = Json::array();
    for (const auto& [key, value] : pairs) out.push_back(Json::array({key.ToJson(), value.ToJson()}));
    return Value(std::move(out));
  }
  if (name == "map") return MapFilter(input, args, context);
  if (name == "sort" || name == "unique") return SortOrUnique(name, input, args);
  if (name == "abs") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    if (!input.is_number()) return Invalid("bad operand type for abs(): '" + TypeName(input) + "'");
    if (auto i = AsInt(input.data())) {
      if (*i == INT64_MIN) return Invalid("integer overflow in abs()");
      return Int(*i < 0 ? -*i : *i);
    }
    return Value(Json(std::fabs(input.data().get<double>())));
  }
  if (name == "int" || name == "float") {
    const bool to_int = name == "int";
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"default", to_int ? Int(0) : Value(Json(0.0))}}));
    if (input.is_number()) {
      if (to_int) {
        if (auto i = AsInt(input.data())) return Int(*i);
        const double d = input.data().get<double>();
        if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return bound[0];
        return Int(static_cast<int64_t>(d));
      }
      return Value(Json(AsDouble(input.data())));
    }
    if (input.is_string()) {
      const std::string text = PyStrip(input.str(), std::nullopt, true, true);
      char* end = nullptr;
      errno = 0;
      if (to_int) {
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (!text.empty() && end == text.c_str() + text.size() && errno == 0) return Int(v);
      }
      const double d = std::strtod(text.c_str(), &end);
      if (!text.empty() && end == text.c_str() + text.size()) {
        if (!to_int) return Value(Json(d));
        if (std::isfinite(d) && std::fabs(d) < 9.2e18) return Int(static_cast<int64_t>(d));
      }
    }
    return bound[0];
  }
  if (name == "sum") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"attribute", None()}, {"start", Int(0)}}));
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(input));
    const std::optional<std::string> attribute = OptionalString(bound[0]);
    bool all_int = bound[1].is_data() && AsInt(bound[1].data()).has_value();
    int64_t int_sum = all_int ? *AsInt(bound[1].data()) : 0;
    if (!bound[1].is_number()) return Invalid("sum start must be a number");
    double sum = AsDouble(bound[1].data());
    for (const Value& raw : items) {
      const Value item = attribute ? GetAttributePath(raw, *attribute) : raw;
      if (!item.is_number()) return Invalid("unsupported operand type(s) for +: '" + TypeName(item) + "'");
      const auto i = AsInt(item.data());
      if (all_int && i && !__builtin_add_overflow(int_sum, *i, &int_sum)) {
        sum += static_cast<double>(*i);
        continue;
      }
      if (all_int && i) return Invalid("integer overflow in sum()");
      all_int = false;
      sum += AsDouble(item.data());
    }
    return all_int ? Int(int_sum) : Value(Json(sum));
  }
  if (name == "escape" || name == "e") {
    RETURN_IF_ERROR(Bind(name, args, {}).status());
    std::string out;
    for (char c : ToPyString(input)) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out.push_back(c);
      }
    }
    return Str(std::move(out));
  }
  return Invalid("unsupported filter '" + name + "'");
}

absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& input, const CallArgs& args) {
  auto no_args = [&]() { return Bind(name, args, {}).status(); };
  auto one_arg = [&]() -> absl::StatusOr<Value> {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"other", std::nullopt}}));
    return bound[0];
  };
  if (name == "defined" || name == "undefined") {
    RETURN_IF_ERROR(no_args());
    return input.is_undefined() == (name == "undefined");
  }
  if (name == "none") {
    RETURN_IF_ERROR(no_args());
    return input.is_none();
  }
  if (name == "string") {
    RETURN_IF_ERROR(no_args());
    return input.is_string();
  }
  if (name == "mapping") {
    RETURN_IF_ERROR(no_args());
    return input.is_dict();
  }
  if (name == "iterable" || name == "sequence") {
    RETURN_IF_ERROR(no_args());
    // Jinja's Undefined defines __iter__ and __len__, so it passes both.
    return input.is_undefined() || input.is_string() || input.is_list() || input.is_dict();
  }
  if (name == "number") {
    RETURN_IF_ERROR(no_args());
    return input.is_number();
  }
  if (name == "integer") {
    RETURN_IF_ERROR(no_args());
    return input.is_integer();
  }
  if (name == "float") {
    RETURN_IF_ERROR(no_args());
    return input.is_float();
  }
  if (name == "boolean") {
    RETURN_IF_ERROR(no_args());
    return input.is_bool();
  }
  if (name == "true" || name == "false") {
    RETURN_IF_ERROR(no_args());
    return input.is_bool() && input.data().get<bool>() == (name == "true");
  }
  if (name == "callable") {
    RETURN_IF_ERROR(no_args());
    return input.kind() == Value::Kind::kMacro || input.kind() == Value::Kind::kBuiltin;
  }
  if (name == "lower" || name == "upper") {
    RETURN_IF_ERROR(no_args());
    const std::string text = ToPyString(input);
    bool cased = false;
    for (char c : text) {
      if ((name == "lower" && c >= 'A' && c <= 'Z') || (name == "upper" && c >= 'a' && c <= 'z')) {
        return false;
      }
      cased = cased || std::isalpha(static_cast<unsigned char>(c));
    }
    return cased;
  }
  if (name == "odd" || name == "even") {
    RETURN_IF_ERROR(no_args());
    ASSIGN_OR_RETURN(int64_t v, RequireInt(name + " test input", input));
    return (v % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    ASSIGN_OR_RETURN(int64_t v, RequireInt("divisibleby input", input));
    ASSIGN_OR_RETURN(int64_t d, RequireInt("divisibleby argument", other));
    if (d == 0) return Invalid("integer division or modulo by zero");
    return v % d == 0;
  }
  if (name == "equalto" || name == "eq" || name == "==") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    return PyEquals(input, other);
  }
  if (name == "ne" || name == "!=") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    return !PyEquals(input, other);
  }
  if (name == "lt" || name == "<" || name == "lessthan") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    return PyLess(input, other);
  }
  if (name == "gt" || name == ">" || name == "greaterthan") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    return PyLess(other, input);
  }
  if (name == "le" || name == "<=") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    ASSIGN_OR_RETURN(bool greater, PyLess(other, input));
    return !greater;
  }
  if (name == "ge" || name == ">=") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    ASSIGN_OR_RETURN(bool less, PyLess(input, other));
    return !less;
  }
  if (name == "in") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    if (other.is_string()) {
      if (!input.is_string()) return Invalid("'in <string>' requires string as left operand");
      return other.str().find(input.str()) != std::string::npos;
    }
    if (other.is_dict()) return input.is_string() && other.data().contains(input.str());
    ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(other));
    for (const Value& item : items) {
      if (PyEquals(item, input)) return true;
    }
    return false;
  }
  if (name == "sameas") {
    ASSIGN_OR_RETURN(Value other, one_arg());
    if (input.is_none() || input.is_bool() || input.is_undefined()) return PyEquals(input, other) &&
                                                                           TypeName(input) == TypeName(other);
    return false;
  }
  return Invalid("unsupported test '" + name + "'");
}

bool HasMethod(const Value& object, const std::string& name) {
  static const char* const kStringMethods[] = {"strip",      "lstrip", "rstrip",    "split",   "startswith",
                                               "endswith",   "upper",  "lower",     "replace", "title",
                                               "capitalize", "find",   "count",     "join",    "splitlines",
                                               "format"};
  static const char* const kDictMethods[] = {"items", "keys", "values", "get", "copy", "pop",
                                             "update", "setdefault", "clear", "popitem"};
  static const char* const kListMethods[] = {"append", "extend", "insert", "pop", "remove",
                                             "clear",  "sort",   "reverse", "index", "count"};
  auto in = [&](const auto& list) {
    return std::find(std::begin(list), std::end(list), name) != std::end(list);
  };
  if (object.is_string()) return in(kStringMethods);
  if (object.is_dict()) return in(kDictMethods);
  if (object.is_list()) return in(kListMethods);
  return false;
}

bool IsReadOnlyMethod(const Value& object, const std::string& name) {
  if (object.is_string()) return HasMethod(object, name);
  if (object.is_dict()) {
    return name == "items" || name == "keys" || name == "values" || name == "get" || name == "copy";
  }
  return false;
}

absl::StatusOr<Value> CallMethod(const Value& object, const std::string& name, const CallArgs& args) {
  const std::string where = TypeName(object) + "." + name;
  if (object.is_string()) {
    const std::string& text = object.str();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      ASSIGN_OR_RETURN(auto bound, Bind(where, args, {{"chars", None()}}));
      std::optional<std::string> chars;
      if (!bound[0].is_none()) {
        ASSIGN_OR_RETURN(chars, RequireString(where + " chars", bound[0]));
      }
      return Str(PyStrip(text, chars, name != "rstrip", name != "lstrip"));
    }
    if (name == "split") {
      ASSIGN_OR_RETURN(auto bound, Bind(where, args, {{"sep", None()}, {"maxsplit", Int(-1)}}));
      std::optional<std::string> sep;
      if (!bound[0].is_none()) {
        ASSIGN_OR_RETURN(sep, RequireString("split separator", bound[0]));
      }
      if (sep && sep->empty()) return Invalid("empty separator");
      ASSIGN_OR_RETURN(int64_t maxsplit, RequireInt("split maxsplit", bound[1]));
      Json parts = Json::array();
      for (std::string& part : PySplit(text, sep, maxsplit)) parts.push_back(std::move(part));
      return Value(std::move(parts));
    }
    if (name == "splitlines") {
      RETURN_IF_ERROR(Bind(where, args, {}).status());
      Json parts = Json::array();
      for (std::string& line : PySplitLines(text)) parts.push_back(std::move(line));
      return Value(std::move(parts));
    }
    if (name == "startswith" || name == "endswith") {
      ASSIGN_OR_RETURN(auto bound, Bind(where, args, {{"prefix", std::nullopt}}));
      std::vector<std::string> candidates;
      if (bound[0].is_list()) {
        for (const Json& c : bound[0].data()) {
          if (!c.is_string()) return Invalid(where + " tuple items must be strings");
          candidates.push_back(c.get<std::string>());
        }
      } else {
        ASSIGN_OR_RETURN(std::string c, RequireString(where + " argument", bound[0]));
        candidates.push_back(std::move(c));
      }
      for (const std::string& c : candidates) {
        const bool hit = name == "startswith"
                             ? text.compare(0, c.size(), c) == 0
                             : text.size() >= c.size() && text.compare(text.size() - c.size(), c.size(), c) == 0;
        if (hit) return Bool(true);
      }
      return Bool(false);
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      RETURN_IF_ERROR(Bind(where, args, {}).status());
      if (name == "upper") return Str(AsciiUpper(text));
      if (name == "lower") return Str(AsciiLower(text));
      if (name == "title") return Str(PyTitle(text));
      return Str(PyCapitalize(text));
    }
    if (name == "replace") {
      ASSIGN_OR_RETURN(auto bound, Bind(where, args, {{"old", std::nullopt}, {"new", std::nullopt},
                                                      {"count", Int(-1)}}));
      ASSIGN_OR_RETURN(std::string old_text, RequireString("replace old", bound[0]));
      ASSIGN_OR_RETURN(std::string new_text, RequireString("replace new", bound[1]));
      ASSIGN_OR_RETURN(int64_t count, RequireInt("replace count", bound[2]));
      return Str(PyReplace(text, old_text, new_text, count));
    }
    if (name == "find" || name == "count") {
      ASSIGN_OR_RETURN(auto bound, Bind(where, args, {{"sub", std::nullopt}}));
      ASSIGN_OR_RETURN(std::string sub, RequireString(where + " argument", bound[0]));
      if (name == "find") {
        const size_t at = text.find(sub);
        if (at == std::string::npos) return Int(-1);
        return Int(CodePointCount(std::string_view(text).substr(0, at)));
      }
      if (sub.empty()) return Int(CodePointCount(text) + 1);
      int64_t count = 0;
      for (size_t at = text.find(sub); at != std::string::npos; at = text.find(sub, at + sub.size())) ++count;
      return Int(count);
    }
    if (name == "join") {
      ASSIGN_OR_RETURN(auto bound, Bind(where, args, {{"iterable", std::nullopt}}));
      ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(bound[0]));
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) {
          return Invalid("sequence item " + std::to_string(i) + ": expected str instance, " +
                         TypeName(items[i]) + " found");
        }
        if (i > 0) out += text;
        out += items[i].str();
      }
      return Str(std::move(out));
    }
    return Invalid("str." + name + "() is not supported");
  }
  if (object.is_dict()) {
    const Json& dict = object.data();
    if (name == "items" || name == "keys" || name == "values") {
      RETURN_IF_ERROR(Bind(where, args, {}).status());
      Json out = Json::array();
      for (auto it = dict.begin(); it != dict.end(); ++it) {
        if (name == "items") out.push_back(Json::array({it.key(), it.value()}));
        if (name == "keys") out.push_back(it.key());
        if (name == "values") out.push_back(it.value());
      }
      return Value(std::move(out));
    }
    if (name == "copy") {
      RETURN_IF_ERROR(Bind(where, args, {}).status());
      return object;
    }
    if (name == "get") {
      ASSIGN_OR_RETURN(auto bound, Bind(where, args, {{"key", std::nullopt}, {"default", None()}}));
      if (bound[0].is_string()) {
        const auto it = dict.find(bound[0].str());
        if (it != dict.end()) return Value(*it);
      }
      return bound[1];
    }
  }
  return Invalid(where + "() is not allowed: templates cannot modify their inputs");
}

bool IsGlobalFunction(const std::string& name) {
  return name == "range" || name == "namespace" || name == "dict" || name == "raise_exception" ||
         name == "strftime_now";
}

absl::StatusOr<Value> CallGlobalFunction(const std::string& name, const CallArgs& args,
                                         const BuiltinContext& context) {
  if (name == "raise_exception") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"message", std::nullopt}}));
    return Invalid(std::string(kRaisedByTemplate) + ToPyString(bound[0]));
  }
  if (name == "namespace" || name == "dict") {
    auto attributes = std::make_shared<Json>(Json::object());
    if (args.positional.size() > 1) return Invalid(name + "() takes at most one positional argument");
    if (!args.positional.empty()) {
      if (!args.positional[0].is_dict()) return Invalid(name + "() positional argument must be a mapping");
      *attributes = args.positional[0].data();
    }
    for (const auto& [key, value] : args.keyword) (*attributes)[key] = value.ToJson();
    if (name == "dict") return Value(std::move(*attributes));
    return Value::Namespace(std::move(attributes));
  }
  if (name == "range") {
    if (!args.keyword.empty()) return Invalid("range() takes no keyword arguments");
    if (args.positional.empty() || args.positional.size() > 3) {
      return Invalid("range() takes 1 to 3 arguments");
    }
    std::vector<int64_t> v;
    for (const Value& a : args.positional) {
      ASSIGN_OR_RETURN(int64_t i, RequireInt("range() argument", a));
      v.push_back(i);
    }
    int64_t start = 0, stop = 0, step = 1;
    if (v.size() == 1) {
      stop = v[0];
    } else {
      start = v[0];
      stop = v[1];
      if (v.size() == 3) step = v[2];
    }
    if (step == 0) return Invalid("range() arg 3 must not be zero");
    const double count = std::max(0.0, std::ceil((static_cast<double>(stop) - static_cast<double>(start)) /
                                                 static_cast<double>(step)));
    if (count > static_cast<double>(context.max_items)) {
      return Invalid("range() of " + FormatPyFloat(count) + " items exceeds the limit of " +
                     std::to_string(context.max_items));
    }
    Json out = Json::array();
    for (int64_t i = 0; i < static_cast<int64_t>(count); ++i) out.push_back(start + i * step);
    return Value(std::move(out));
  }
  if (name == "strftime_now") {
    ASSIGN_OR_RETURN(auto bound, Bind(name, args, {{"format", std::nullopt}}));
    ASSIGN_OR_RETURN(std::string format, RequireString("strftime_now format", bound[0]));
    if (format.empty()) return Str("");
    std::string out(256 + format.size() * 8, '\0');
    const size_t n = std::strftime(out.data(), out.size(), format.c_str(), &context.now);
    if (n == 0) return Invalid("strftime_now: format '" + format + "' gives no output");
    out.resize(n);
    return Str(std::move(out));
  }
  return Invalid("unknown function '" + name + "'");
}

}  // namespace tern::runtime::jinja
