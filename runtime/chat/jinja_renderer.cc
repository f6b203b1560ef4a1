#include "runtime/chat/jinja_renderer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "runtime/base/status_macros.h"
#include "runtime/chat/jinja_builtins.h"
#include "runtime/chat/jinja_text.h"

namespace tern::runtime::jinja {
namespace {

// What a statement asks of the loop around it.
enum class Flow { kNormal, kBreak, kContinue };

absl::Status AtLine(int line, const absl::Status& status) {
  if (status.ok()) return status;
  const std::string message(status.message());
  if (message.rfind("template line ", 0) == 0) return status;  // already placed
  return absl::Status(status.code(), "template line " + std::to_string(line) + ": " + message);
}

absl::Status ErrorAt(int line, const std::string& message) {
  return absl::InvalidArgumentError("template line " + std::to_string(line) + ": " + message);
}

absl::Status UndefinedError(int line, const Value& value) {
  return ErrorAt(line, value.undefined_reason().empty() ? "value is undefined" : value.undefined_reason());
}

std::string OperandTypes(const std::string& op, const Value& a, const Value& b) {
  return "unsupported operand type(s) for " + op + ": '" + TypeName(a) + "' and '" + TypeName(b) + "'";
}

// Python's slice.indices(): the positions a[start:stop:step] visits.
std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start,
                                  std::optional<int64_t> stop, int64_t step) {
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? length : length - 1;
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) x += length;
    return std::max(lower, std::min(upper, x));
  };
  const int64_t begin = clamp(start, step > 0 ? lower : upper);
  const int64_t end = clamp(stop, step > 0 ? upper : lower);
  std::vector<int64_t> out;
  for (int64_t i = begin; step > 0 ? i < end : i > end; i += step) out.push_back(i);
  return out;
}

class Renderer {
 public:
  Renderer(const Json& variables, const RenderOptions& options) : options_(options) {
    builtin_context_.now = options.now;
    builtin_context_.max_items = options.limits.max_output_bytes;
    frames_.emplace_back();
    for (auto it = variables.begin(); it != variables.end(); ++it) {
      frames_[0].vars[it.key()] = Value(it.value());
    }
  }

  absl::StatusOr<std::string> Run(const Body& body) {
    std::string out;
    ASSIGN_OR_RETURN(Flow flow, ExecBody(body, &out));
    (void)flow;  // the parser rejects break/continue outside loops
    return out;
  }

 private:
  struct Frame {
    std::unordered_map<std::string, Value> vars;
    bool isolated = false;  // a macro call: lookups skip to the globals below it
  };

  // Pushes a scope for its lifetime.
  class ScopeGuard {
   public:
    ScopeGuard(Renderer* r, bool isolated) : r_(r) {
      r_->frames_.emplace_back();
      r_->frames_.back().isolated = isolated;
    }
    ~ScopeGuard() { r_->frames_.pop_back(); }
    ScopeGuard(const ScopeGuard&) = delete;
    ScopeGuard& operator=(const ScopeGuard&) = delete;

   private:
    Renderer* r_;
  };

  Value Lookup(const std::string& name) const {
    for (int i = static_cast<int>(frames_.size()) - 1; i >= 0; --i) {
      const auto it = frames_[i].vars.find(name);
      if (it != frames_[i].vars.end()) return it->second;
      if (frames_[i].isolated) i = 1;  // continue at frame 0, the globals
    }
    if (IsGlobalFunction(name)) return Value::Builtin(name);
    return Value::Undefined("'" + name + "' is undefined");
  }

  void Assign(const std::string& name, Value value) { frames_.back().vars[name] = std::move(value); }

  absl::Status CountStep(int line) {
    if (++steps_ > options_.limits.max_steps) {
      return ErrorAt(line, "template exceeded the limit of " + std::to_string(options_.limits.max_steps) +
                               " loop iterations and macro calls");
    }
    return absl::OkStatus();
  }

  absl::Status CheckSize(int line, size_t bytes) const {
    if (static_cast<int64_t>(bytes) > options_.limits.max_output_bytes) {
      return ErrorAt(line, "template output exceeds the limit of " +
                               std::to_string(options_.limits.max_output_bytes) + " bytes");
    }
    return absl::OkStatus();
  }

  // ----- statements -----

  absl::StatusOr<Flow> ExecBody(const Body& body, std::string* out) {
    for (const StmtPtr& stmt : body) {
      ASSIGN_OR_RETURN(Flow flow, Exec(*stmt, out));
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> Exec(const Stmt& stmt, std::string* out) {
    switch (stmt.kind) {
      case Stmt::Kind::kText:
        *out += stmt.text;
        RETURN_IF_ERROR(CheckSize(stmt.line, out->size()));
        return Flow::kNormal;
      case Stmt::Kind::kOutput: {
        ASSIGN_OR_RETURN(Value value, Eval(*stmt.expr));
        *out += ToPyString(value);
        RETURN_IF_ERROR(CheckSize(stmt.line, out->size()));
        return Flow::kNormal;
      }
      case Stmt::Kind::kIf:
        for (const auto& [condition, body] : stmt.branches) {
          bool take = true;
          if (condition) {
            ASSIGN_OR_RETURN(Value v, Eval(*condition));
            take = Truthy(v);
          }
          if (take) return ExecBody(body, out);
        }
        return Flow::kNormal;
      case Stmt::Kind::kFor:
        RETURN_IF_ERROR(ExecFor(stmt, out));
        return Flow::kNormal;
      case Stmt::Kind::kSet: {
        ASSIGN_OR_RETURN(Value value, Eval(*stmt.expr));
        RETURN_IF_ERROR(ExecSet(stmt, std::move(value)));
        return Flow::kNormal;
      }
      case Stmt::Kind::kSetBlock: {
        std::string captured;
        ASSIGN_OR_RETURN(Flow flow, ExecBody(stmt.body, &captured));
        Assign(stmt.targets[0], Value(Json(std::move(captured))));
        return flow;
      }
      case Stmt::Kind::kMacro:
        Assign(stmt.name, Value::Macro(&stmt));
        return Flow::kNormal;
      case Stmt::Kind::kBreak: return Flow::kBreak;
      case Stmt::Kind::kContinue: return Flow::kContinue;
      case Stmt::Kind::kGeneration: return ExecBody(stmt.body, out);
    }
    return ErrorAt(stmt.line, "unknown statement");
  }

  absl::Status ExecSet(const Stmt& stmt, Value value) {
    if (!stmt.attribute.empty()) {
      const Value target = Lookup(stmt.targets[0]);
      if (target.kind() != Value::Kind::kNamespace) {
        return ErrorAt(stmt.line, "cannot assign attribute '" + stmt.attribute + "' on '" + stmt.targets[0] +
                                      "', which is not a namespace()");
      }
      target.namespace_attributes()[stmt.attribute] = value.ToJson();
      return absl::OkStatus();
    }
    if (stmt.targets.size() == 1) {
      Assign(stmt.targets[0], std::move(value));
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(std::vector<Value> parts, Unpack(stmt.line, value, stmt.targets.size()));
    for (size_t i = 0; i < parts.size(); ++i) Assign(stmt.targets[i], parts[i]);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Value>> Unpack(int line, const Value& value, size_t count) {
    auto items = Iterate(value);
    if (!items.ok()) return AtLine(line, items.status());
    if (items->size() != count) {
      return ErrorAt(line, "cannot unpack " + std::to_string(items->size()) + " values into " +
                               std::to_string(count) + " names");
    }
    return std::move(*items);
  }

  absl::Status BindTargets(const Stmt& stmt, const Value& item) {
    if (stmt.targets.size() == 1) {
      Assign(stmt.targets[0], item);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(std::vector<Value> parts, Unpack(stmt.line, item, stmt.targets.size()));
    for (size_t i = 0; i < parts.size(); ++i) Assign(stmt.targets[i], parts[i]);
    return absl::OkStatus();
  }

  absl::Status ExecFor(const Stmt& stmt, std::string* out) {
    ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.expr));
    auto all = Iterate(iterable);
    if (!all.ok()) return AtLine(stmt.line, all.status());
    // Jinja applies the inline `if` first; loop.length and loop.last count
    // only the items that pass.
    std::vector<Value> items;
    for (Value& item : *all) {
      RETURN_IF_ERROR(CountStep(stmt.line));
      if (stmt.filter) {
        ScopeGuard scope(this, /*isolated=*/false);
        RETURN_IF_ERROR(BindTargets(stmt, item));
        ASSIGN_OR_RETURN(Value keep, Eval(*stmt.filter));
        if (!Truthy(keep)) continue;
      }
      items.push_back(std::move(item));
    }
    if (items.empty()) {
      ASSIGN_OR_RETURN(Flow flow, ExecBody(stmt.else_body, out));
      (void)flow;
      return absl::OkStatus();
    }
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      RETURN_IF_ERROR(CountStep(stmt.line));
      ScopeGuard scope(this, /*isolated=*/false);
      Json loop = {{"index", i + 1},         {"index0", i},          {"revindex", length - i},
                   {"revindex0", length - i - 1}, {"first", i == 0}, {"last", i == length - 1},
                   {"length", length},       {"depth", 1},           {"depth0", 0}};
      if (i > 0) loop["previtem"] = items[i - 1].ToJson();
      if (i + 1 < length) loop["nextitem"] = items[i + 1].ToJson();
      Assign("loop", Value(std::move(loop)));
      RETURN_IF_ERROR(BindTargets(stmt, items[i]));
      ASSIGN_OR_RETURN(Flow flow, ExecBody(stmt.body, out));
      if (flow == Flow::kBreak) break;
    }
    return absl::OkStatus();
  }

  // ----- expressions -----

  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.args.size(); ++i) {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[i]));
      args.positional.push_back(std::move(v));
    }
    for (const auto& [key, expr] : e.kwargs) {
      ASSIGN_OR_RETURN(Value v, Eval(*expr));
      args.keyword.emplace_back(key, std::move(v));
    }
    return args;
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return Value(e.literal);
      case Expr::Kind::kName: return Lookup(e.name);
      case Expr::Kind::kList: {
        Json list = Json::array();
        for (const ExprPtr& item : e.args) {
          ASSIGN_OR_RETURN(Value v, Eval(*item));
          list.push_back(v.ToJson());
        }
        return Value(std::move(list));
      }
      case Expr::Kind::kDict: {
        Json dict = Json::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          ASSIGN_OR_RETURN(Value key, Eval(*e.args[i]));
          ASSIGN_OR_RETURN(Value value, Eval(*e.args[i + 1]));
          if (!key.is_string()) return ErrorAt(e.line, "dict keys must be strings, not " + TypeName(key));
          dict[key.str()] = value.ToJson();
        }
        return Value(std::move(dict));
      }
      case Expr::Kind::kGetAttr: {
        ASSIGN_OR_RETURN(Value object, Eval(*e.args[0]));
        return GetAttr(e, object);
      }
      case Expr::Kind::kGetItem: {
        ASSIGN_OR_RETURN(Value object, Eval(*e.args[0]));
        ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
        return GetItem(e.line, object, key);
      }
      case Expr::Kind::kSlice: return EvalSlice(e);
      case Expr::Kind::kCall: return EvalCall(e);
      case Expr::Kind::kFilter: {
        ASSIGN_OR_RETURN(Value input, Eval(*e.args[0]));
        ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
        auto result = ApplyFilter(e.name, input, args, builtin_context_);
        if (!result.ok()) return AtLine(e.line, result.status());
        return result;
      }
      case Expr::Kind::kTest: {
        ASSIGN_OR_RETURN(Value input, Eval(*e.args[0]));
        ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
        auto result = ApplyTest(e.name, input, args);
        if (!result.ok()) return AtLine(e.line, result.status());
        return Value(Json(*result != e.negated));
      }
      case Expr::Kind::kNeg:
      case Expr::Kind::kPos: {
        ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        if (v.is_undefined()) return UndefinedError(e.line, v);
        if (!v.is_number()) {
          return ErrorAt(e.line, "bad operand type for unary " + std::string(e.kind == Expr::Kind::kNeg ? "-" : "+") +
                                     ": '" + TypeName(v) + "'");
        }
        if (e.kind == Expr::Kind::kPos) return v.is_bool() ? Value(Json(*AsInt(v.data()))) : v;
        if (auto i = AsInt(v.data())) {
          if (*i == INT64_MIN) return ErrorAt(e.line, "integer overflow");
          return Value(Json(-*i));
        }
        return Value(Json(-v.data().get<double>()));
      }
      case Expr::Kind::kNot: {
        ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        return Value(Json(!Truthy(v)));
      }
      case Expr::Kind::kAnd:
      case Expr::Kind::kOr: {
        ASSIGN_OR_RETURN(Value lhs, Eval(*e.args[0]));
        const bool lhs_true = Truthy(lhs);
        if ((e.kind == Expr::Kind::kAnd) != lhs_true) return lhs;
        return Eval(*e.args[1]);
      }
      case Expr::Kind::kBinary: {
        ASSIGN_OR_RETURN(Value lhs, Eval(*e.args[0]));
        ASSIGN_OR_RETURN(Value rhs, Eval(*e.args[1]));
        return Binary(e.line, e.name, lhs, rhs);
      }
      case Expr::Kind::kCompare: return EvalCompare(e);
      case Expr::Kind::kCondition: {
        ASSIGN_OR_RETURN(Value condition, Eval(*e.args[1]));
        if (Truthy(condition)) return Eval(*e.args[0]);
        if (e.args[2]) return Eval(*e.args[2]);
        return Value::Undefined("the inline if expression had no else branch");
      }
    }
    return ErrorAt(e.line, "unknown expression");
  }

  absl::StatusOr<Value> GetAttr(const Expr& e, const Value& object) {
    if (object.is_undefined()) return UndefinedError(e.line, object);
    if (object.is_list() && e.literal.is_number_integer()) return GetItem(e.line, object, Value(e.literal));
    if (IsReadOnlyMethod(object, e.name)) {
      // An uncalled method: defined and truthy, but not data (calls go through EvalCall).
      return Value::Builtin(TypeName(object) + "." + e.name);
    }
    if (object.is_dict()) {
      const auto it = object.data().find(e.name);
      if (it != object.data().end()) return Value(*it);
    }
    if (object.kind() == Value::Kind::kNamespace) {
      const Json& attributes = object.namespace_attributes();
      const auto it = attributes.find(e.name);
      if (it != attributes.end()) return Value(*it);
    }
    return Value::Undefined("'" + TypeName(object) + " object' has no attribute '" + e.name + "'");
  }

  // Jinja's getitem: obj[key], falling back to the attribute named by a
  // string key; anything missing is Undefined.
  absl::StatusOr<Value> GetItem(int line, const Value& object, const Value& key) {
    if (object.is_undefined()) return UndefinedError(line, object);
    const std::optional<int64_t> index = key.is_data() ? AsInt(key.data()) : std::nullopt;
    if ((object.is_list() || object.is_string()) && index && !key.is_bool()) {
      if (object.is_list()) {
        const int64_t size = static_cast<int64_t>(object.data().size());
        const int64_t i = *index < 0 ? *index + size : *index;
        if (i >= 0 && i < size) return Value(object.data()[static_cast<size_t>(i)]);
      } else {
        const std::u32string cps = DecodeUtf8(object.str());
        const int64_t size = static_cast<int64_t>(cps.size());
        const int64_t i = *index < 0 ? *index + size : *index;
        if (i >= 0 && i < size) return Value(Json(EncodeUtf8(cps.substr(static_cast<size_t>(i), 1))));
      }
      return Value::Undefined("index " + std::to_string(*index) + " is out of range");
    }
    if (key.is_string()) {
      if (object.is_dict()) {
        const auto it = object.data().find(key.str());
        if (it != object.data().end()) return Value(*it);
      } else if (object.kind() == Value::Kind::kNamespace) {
        const auto it = object.namespace_attributes().find(key.str());
        if (it != object.namespace_attributes().end()) return Value(*it);
      }
      return Value::Undefined("'" + TypeName(object) + " object' has no attribute '" + key.str() + "'");
    }
    return Value::Undefined("'" + TypeName(object) + " object' has no item " + ToPyString(key));
  }

  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    ASSIGN_OR_RETURN(Value object, Eval(*e.args[0]));
    std::optional<int64_t> parts[3];
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
      if (v.is_none() || v.is_undefined()) continue;
      if (!v.is_data() || !AsInt(v.data())) {
        return ErrorAt(e.line, "slice indices must be integers or None, not " + TypeName(v));
      }
      parts[k] = *AsInt(v.data());
    }
    const int64_t step = parts[2].value_or(1);
    if (step == 0) return ErrorAt(e.line, "slice step cannot be zero");
    if (object.is_undefined()) return UndefinedError(e.line, object);
    if (object.is_list()) {
      Json out = Json::array();
      const auto indices = SliceIndices(static_cast<int64_t>(object.data().size()), parts[0], parts[1], step);
      for (int64_t i : indices) out.push_back(object.data()[static_cast<size_t>(i)]);
      return Value(std::move(out));
    }
    if (object.is_string()) {
      const std::u32string cps = DecodeUtf8(object.str());
      std::u32string out;
      for (int64_t i : SliceIndices(static_cast<int64_t>(cps.size()), parts[0], parts[1], step)) {
        out.push_back(cps[static_cast<size_t>(i)]);
      }
      return Value(Json(EncodeUtf8(out)));
    }
    return ErrorAt(e.line, "'" + TypeName(object) + "' object is not subscriptable");
  }

  absl::StatusOr<Value> EvalCall(const Expr& e) {
    const Expr& callee_expr = *e.args[0];
    if (callee_expr.kind == Expr::Kind::kGetAttr) {
      ASSIGN_OR_RETURN(Value object, Eval(*callee_expr.args[0]));
      if (HasMethod(object, callee_expr.name)) {
        ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
        auto result = CallMethod(object, callee_expr.name, args);
        if (!result.ok()) return AtLine(e.line, result.status());
        return result;
      }
      ASSIGN_OR_RETURN(Value callee, GetAttr(callee_expr, object));
      return CallValue(e, callee);
    }
    ASSIGN_OR_RETURN(Value callee, Eval(callee_expr));
    return CallValue(e, callee);
  }

  absl::StatusOr<Value> CallValue(const Expr& e, const Value& callee) {
    if (callee.is_undefined()) return UndefinedError(e.line, callee);
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
    if (callee.kind() == Value::Kind::kBuiltin) {
      auto result = CallGlobalFunction(callee.builtin_name(), args, builtin_context_);
      if (!result.ok()) return AtLine(e.line, result.status());
      return result;
    }
    if (callee.kind() == Value::Kind::kMacro) return CallMacro(e.line, *callee.macro(), args);
    return ErrorAt(e.line, "'" + TypeName(callee) + "' object is not callable");
  }

  absl::StatusOr<Value> CallMacro(int line, const Stmt& macro, const CallArgs& args) {
    RETURN_IF_ERROR(CountStep(line));
    if (call_depth_ >= options_.limits.max_depth) {
      return ErrorAt(line, "macro calls nest deeper than the limit of " +
                               std::to_string(options_.limits.max_depth));
    }
    if (args.positional.size() > macro.params.size()) {
      return ErrorAt(line, "macro '" + macro.name + "' takes " + std::to_string(macro.params.size()) +
                               " arguments, " + std::to_string(args.positional.size()) + " given");
    }
    std::vector<std::optional<Value>> bound(macro.params.size());
    for (size_t i = 0; i < args.positional.size(); ++i) bound[i] = args.positional[i];
    for (const auto& [key, value] : args.keyword) {
      size_t i = 0;
      while (i < macro.params.size() && macro.params[i].first != key) ++i;
      if (i == macro.params.size()) {
        return ErrorAt(line, "macro '" + macro.name + "' has no parameter '" + key + "'");
      }
      bound[i] = value;
    }
    for (size_t i = 0; i < bound.size(); ++i) {
      if (bound[i]) continue;
      if (macro.params[i].second) {
        ASSIGN_OR_RETURN(bound[i], Eval(*macro.params[i].second));
      } else {
        bound[i] = Value::Undefined("parameter '" + macro.params[i].first + "' was not provided");
      }
    }
    ScopeGuard scope(this, /*isolated=*/true);
    for (size_t i = 0; i < bound.size(); ++i) Assign(macro.params[i].first, *bound[i]);
    ++call_depth_;
    std::string out;
    auto flow = ExecBody(macro.body, &out);
    --call_depth_;
    if (!flow.ok()) return flow.status();
    return Value(Json(std::move(out)));
  }

  absl::StatusOr<Value> EvalCompare(const Expr& e) {
    ASSIGN_OR_RETURN(Value lhs, Eval(*e.args[0]));
    for (size_t i = 0; i < e.ops.size(); ++i) {
      ASSIGN_OR_RETURN(Value rhs, Eval(*e.args[i + 1]));
      ASSIGN_OR_RETURN(bool holds, Compare(e.line, e.ops[i], lhs, rhs));
      if (!holds) return Value(Json(false));
      lhs = std::move(rhs);
    }
    return Value(Json(true));
  }

  absl::StatusOr<bool> Compare(int line, const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return PyEquals(a, b);
    if (op == "!=") return !PyEquals(a, b);
    if (op == "in" || op == "not in") {
      CallArgs args;
      args.positional.push_back(b);
      if (b.is_data() && !b.is_string() && !b.is_list() && !b.is_dict()) {
        return ErrorAt(line, "argument of type '" + TypeName(b) + "' is not iterable");
      }
      auto contained = ApplyTest("in", a, args);
      if (!contained.ok()) return AtLine(line, contained.status());
      return *contained == (op == "in");
    }
    if (a.is_undefined()) return UndefinedError(line, a);
    if (b.is_undefined()) return UndefinedError(line, b);
    absl::StatusOr<bool> result = absl::InternalError("unreachable");
    if (op == "<") result = PyLess(a, b);
    if (op == ">") result = PyLess(b, a);
    if (op == "<=") {
      result = PyLess(b, a);
      if (result.ok()) result = !*result;
    }
    if (op == ">=") {
      result = PyLess(a, b);
      if (result.ok()) result = !*result;
    }
    if (!result.ok()) return AtLine(line, result.status());
    return result;
  }

  absl::StatusOr<Value> Binary(int line, const std::string& op, const Value& a, const Value& b) {
    if (op == "~") {
      std::string text = ToPyString(a) + ToPyString(b);
      RETURN_IF_ERROR(CheckSize(line, text.size()));
      return Value(Json(std::move(text)));
    }
    if (a.is_undefined()) return UndefinedError(line, a);
    if (b.is_undefined()) return UndefinedError(line, b);
    if (a.is_number() && b.is_number()) return Arithmetic(line, op, a.data(), b.data());
    if (op == "+") {
      if (a.is_string() && b.is_string()) {
        RETURN_IF_ERROR(CheckSize(line, a.str().size() + b.str().size()));
        return Value(Json(a.str() + b.str()));
      }
      if (a.is_list() && b.is_list()) {
        RETURN_IF_ERROR(CheckSize(line, a.data().size() + b.data().size()));
        Json out = a.data();
        for (const Json& item : b.data()) out.push_back(item);
        return Value(std::move(out));
      }
    }
    if (op == "*") {
      const Value& seq = a.is_number() ? b : a;
      const Value& times = a.is_number() ? a : b;
      if ((seq.is_string() || seq.is_list()) && times.is_data() && AsInt(times.data())) {
        const int64_t n = std::max<int64_t>(0, *AsInt(times.data()));
        const size_t unit = seq.is_string() ? seq.str().size() : seq.data().size();
        int64_t total = 0;
        if (__builtin_mul_overflow(n, static_cast<int64_t>(unit), &total)) total = INT64_MAX;
        RETURN_IF_ERROR(CheckSize(line, static_cast<size_t>(total)));
        if (seq.is_string()) {
          std::string out;
          for (int64_t i = 0; i < n; ++i) out += seq.str();
          return Value(Json(std::move(out)));
        }
        Json out = Json::array();
        for (int64_t i = 0; i < n; ++i) {
          for (const Json& item : seq.data()) out.push_back(item);
        }
        return Value(std::move(out));
      }
    }
    if (op == "%" && a.is_string()) {
      return ErrorAt(line, "printf-style string formatting ('%') is not supported");
    }
    return ErrorAt(line, OperandTypes(op, a, b));
  }

  absl::StatusOr<Value> Arithmetic(int line, const std::string& op, const Json& a, const Json& b) {
    const std::optional<int64_t> ai = AsInt(a);
    const std::optional<int64_t> bi = AsInt(b);
    if (ai && bi) {
      int64_t r = 0;
      const int64_t x = *ai;
      const int64_t y = *bi;
      if (op == "+") {
        if (__builtin_add_overflow(x, y, &r)) return ErrorAt(line, "integer overflow");
        return Value(Json(r));
      }
      if (op == "-") {
        if (__builtin_sub_overflow(x, y, &r)) return ErrorAt(line, "integer overflow");
        return Value(Json(r));
      }
      if (op == "*") {
        if (__builtin_mul_overflow(x, y, &r)) return ErrorAt(line, "integer overflow");
        return Value(Json(r));
      }
      if (op == "//" || op == "%") {
        if (y == 0) return ErrorAt(line, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) return ErrorAt(line, "integer overflow");
        int64_t q = x / y;
        int64_t m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          --q;
          m += y;
        }
        return Value(Json(op == "//" ? q : m));
      }
      if (op == "**" && y >= 0) {
        r = 1;
        for (int64_t i = 0; i < y; ++i) {
          if (__builtin_mul_overflow(r, x, &r)) return ErrorAt(line, "integer overflow");
          if (r == 0 || r == 1) break;
          if (r == -1) {
            r = (y % 2 == 0) ? 1 : -1;
            break;
          }
        }
        return Value(Json(r));
      }
    }
    const double x = AsDouble(a);
    const double y = AsDouble(b);
    if (op == "+") return Value(Json(x + y));
    if (op == "-") return Value(Json(x - y));
    if (op == "*") return Value(Json(x * y));
    if (op == "/") {
      if (y == 0) return ErrorAt(line, "division by zero");
      return Value(Json(x / y));
    }
    if (op == "//" || op == "%") {
      if (y == 0) return ErrorAt(line, "float floor division or modulo by zero");
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      if (op == "%") return Value(Json(m));
      return Value(Json(std::floor((x - m) / y + 0.5)));
    }
    if (op == "**") {
      if (x == 0 && y < 0) return ErrorAt(line, "0.0 cannot be raised to a negative power");
      return Value(Json(std::pow(x, y)));
    }
    return ErrorAt(line, "unknown operator '" + op + "'");
  }

  const RenderOptions& options_;
  BuiltinContext builtin_context_;
  std::vector<Frame> frames_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
};

}  // namespace

absl::StatusOr<std::string> RenderBody(const Body& body, const Json& variables,
                                       const RenderOptions& options) {
  if (!variables.is_object()) return absl::InvalidArgumentError("template variables must be an object");
  Renderer renderer(variables, options);
  return renderer.Run(body);
}

}  // namespace tern::runtime::jinja
