#include "runtime/chat/jinja_parser.h"

#include <algorithm>

#include "runtime/base/status_macros.h"
#include "runtime/chat/jinja_lexer.h"

namespace tern::runtime::jinja {
namespace {

using TK = Token::Kind;

std::string Describe(const Token& t) {
  switch (t.kind) {
    case TK::kText: return "template text";
    case TK::kVariableBegin: return "'{{'";
    case TK::kVariableEnd: return "'}}'";
    case TK::kBlockBegin: return "'{%'";
    case TK::kBlockEnd: return "'%}'";
    case TK::kName:
    case TK::kOperator: return "'" + t.text + "'";
    case TK::kString: return "a string";
    case TK::kInteger:
    case TK::kFloat: return "a number";
    case TK::kEnd: return "end of template";
  }
  return "a token";
}

ExprPtr MakeExpr(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

ExprPtr MakeUnary(Expr::Kind kind, int line, ExprPtr operand) {
  ExprPtr e = MakeExpr(kind, line);
  e->args.push_back(std::move(operand));
  return e;
}

ExprPtr MakeBinary(Expr::Kind kind, const std::string& op, int line, ExprPtr lhs, ExprPtr rhs) {
  ExprPtr e = MakeExpr(kind, line);
  e->name = op;
  e->args.push_back(std::move(lhs));
  e->args.push_back(std::move(rhs));
  return e;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, int max_depth) : tokens_(std::move(tokens)), max_depth_(max_depth) {}

  absl::StatusOr<Body> ParseAll() {
    Body body;
    std::string end_tag;
    RETURN_IF_ERROR(ParseBody({}, &body, &end_tag));
    return body;
  }

 private:
  // Counts nesting on the way down; errors past max_depth.
  class DepthGuard {
   public:
    explicit DepthGuard(Parser* p) : p_(p) { ++p_->depth_; }
    ~DepthGuard() { --p_->depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Parser* p_;
  };

  absl::Status CheckDepth() const {
    if (depth_ > max_depth_) {
      return Error(Peek(), "template nests deeper than the limit of " + std::to_string(max_depth_));
    }
    return absl::OkStatus();
  }

  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Next() {
    const Token& t = Peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  bool IsOp(const std::string& op, size_t ahead = 0) const {
    return Peek(ahead).kind == TK::kOperator && Peek(ahead).text == op;
  }
  bool IsName(const std::string& name, size_t ahead = 0) const {
    return Peek(ahead).kind == TK::kName && Peek(ahead).text == name;
  }
  bool SkipOp(const std::string& op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(const std::string& name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }

  absl::Status Error(const Token& at, const std::string& what) const {
    return absl::InvalidArgumentError("template line " + std::to_string(at.line) + ": " + what);
  }
  absl::Status Expect(TK kind, const std::string& what) {
    if (Peek().kind != kind) return Error(Peek(), "expected " + what + ", got " + Describe(Peek()));
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectOp(const std::string& op) {
    if (!IsOp(op)) return Error(Peek(), "expected '" + op + "', got " + Describe(Peek()));
    Next();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().kind != TK::kName) return Error(Peek(), "expected a name, got " + Describe(Peek()));
    return Next().text;
  }
  absl::Status ExpectBlockEnd() { return Expect(TK::kBlockEnd, "'%}'"); }

  // ----- statements -----

  // Parses statements until a {% tag %} named in `end_tags`; consumes '{%'
  // and the tag name and stores it in `end_tag`. With no end tags, parses to
  // the end of the source.
  absl::Status ParseBody(const std::vector<std::string>& end_tags, Body* body, std::string* end_tag) {
    DepthGuard guard(this);
    RETURN_IF_ERROR(CheckDepth());
    while (true) {
      const Token& t = Peek();
      switch (t.kind) {
        case TK::kEnd:
          if (!end_tags.empty()) {
            return Error(t, "unexpected end of template; expected '{% " + end_tags.back() + " %}'");
          }
          return absl::OkStatus();
        case TK::kText: {
          auto stmt = std::make_unique<Stmt>();
          stmt->kind = Stmt::Kind::kText;
          stmt->line = t.line;
          stmt->text = t.text;
          body->push_back(std::move(stmt));
          Next();
          break;
        }
        case TK::kVariableBegin: {
          Next();
          auto stmt = std::make_unique<Stmt>();
          stmt->kind = Stmt::Kind::kOutput;
          stmt->line = t.line;
          ASSIGN_OR_RETURN(stmt->expr, ParseTuple(/*with_condition=*/true));
          RETURN_IF_ERROR(Expect(TK::kVariableEnd, "'}}'"));
          body->push_back(std::move(stmt));
          break;
        }
        case TK::kBlockBegin: {
          const Token& tag = Peek(1);
          if (tag.kind != TK::kName) return Error(tag, "expected a tag name after '{%'");
          if (std::find(end_tags.begin(), end_tags.end(), tag.text) != end_tags.end()) {
            Next();
            *end_tag = Next().text;
            return absl::OkStatus();
          }
          Next();
          ASSIGN_OR_RETURN(StmtPtr stmt, ParseStatement());
          body->push_back(std::move(stmt));
          break;
        }
        default:
          return Error(t, "unexpected " + Describe(t));
      }
    }
  }

  absl::StatusOr<StmtPtr> ParseStatement() {
    const Token& tag = Next();
    const std::string& name = tag.text;
    auto stmt = std::make_unique<Stmt>();
    stmt->line = tag.line;
    if (name == "if") return ParseIf(std::move(stmt));
    if (name == "for") return ParseFor(std::move(stmt));
    if (name == "set") return ParseSet(std::move(stmt));
    if (name == "macro") return ParseMacro(std::move(stmt));
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return Error(tag, "'" + name + "' outside of a for loop");
      stmt->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      RETURN_IF_ERROR(ExpectBlockEnd());
      return stmt;
    }
    if (name == "generation") {
      stmt->kind = Stmt::Kind::kGeneration;
      RETURN_IF_ERROR(ExpectBlockEnd());
      std::string end;
      RETURN_IF_ERROR(ParseBody({"endgeneration"}, &stmt->body, &end));
      RETURN_IF_ERROR(ExpectBlockEnd());
      return stmt;
    }
    static const char* const kEndTags[] = {"endif", "elif", "else", "endfor", "endset", "endmacro",
                                           "endgeneration"};
    for (const char* end : kEndTags) {
      if (name == end) return Error(tag, "unexpected '{% " + name + " %}'");
    }
    return Error(tag, "unsupported tag '" + name + "'");
  }

  absl::StatusOr<StmtPtr> ParseIf(StmtPtr stmt) {
    stmt->kind = Stmt::Kind::kIf;
    ASSIGN_OR_RETURN(ExprPtr condition, ParseExpression());
    RETURN_IF_ERROR(ExpectBlockEnd());
    while (true) {
      Body body;
      std::string end;
      RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &body, &end));
      stmt->branches.emplace_back(std::move(condition), std::move(body));
      if (end == "endif") break;
      if (end == "else") {
        RETURN_IF_ERROR(ExpectBlockEnd());
        Body else_body;
        RETURN_IF_ERROR(ParseBody({"endif"}, &else_body, &end));
        stmt->branches.emplace_back(nullptr, std::move(else_body));
        break;
      }
      ASSIGN_OR_RETURN(condition, ParseExpression());
      RETURN_IF_ERROR(ExpectBlockEnd());
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    return stmt;
  }

  absl::StatusOr<StmtPtr> ParseFor(StmtPtr stmt) {
    stmt->kind = Stmt::Kind::kFor;
    ASSIGN_OR_RETURN(stmt->targets, ParseTargetNames());
    if (!SkipName("in")) return Error(Peek(), "expected 'in' in for loop, got " + Describe(Peek()));
    ASSIGN_OR_RETURN(stmt->expr, ParseTuple(/*with_condition=*/false));
    if (SkipName("if")) {
      ASSIGN_OR_RETURN(stmt->filter, ParseExpression());
    }
    if (IsName("recursive")) return Error(Peek(), "recursive for loops are not supported");
    RETURN_IF_ERROR(ExpectBlockEnd());
    ++loop_depth_;
    std::string end;
    absl::Status status = ParseBody({"endfor", "else"}, &stmt->body, &end);
    --loop_depth_;
    RETURN_IF_ERROR(status);
    if (end == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd());
      RETURN_IF_ERROR(ParseBody({"endfor"}, &stmt->else_body, &end));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    return stmt;
  }

  absl::StatusOr<std::vector<std::string>> ParseTargetNames() {
    std::vector<std::string> names;
    const bool parenthesized = SkipOp("(");
    do {
      ASSIGN_OR_RETURN(std::string name, ExpectName());
      names.push_back(std::move(name));
    } while (SkipOp(","));
    if (parenthesized) RETURN_IF_ERROR(ExpectOp(")"));
    return names;
  }

  absl::StatusOr<StmtPtr> ParseSet(StmtPtr stmt) {
    ASSIGN_OR_RETURN(std::string first, ExpectName());
    stmt->targets.push_back(first);
    if (SkipOp(".")) {
      ASSIGN_OR_RETURN(stmt->attribute, ExpectName());
    } else {
      while (SkipOp(",")) {
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        stmt->targets.push_back(std::move(name));
      }
    }
    if (SkipOp("=")) {
      stmt->kind = Stmt::Kind::kSet;
      ASSIGN_OR_RETURN(stmt->expr, ParseTuple(/*with_condition=*/true));
      RETURN_IF_ERROR(ExpectBlockEnd());
      return stmt;
    }
    if (Peek().kind == TK::kBlockEnd && stmt->targets.size() == 1 && stmt->attribute.empty()) {
      Next();
      stmt->kind = Stmt::Kind::kSetBlock;
      std::string end;
      RETURN_IF_ERROR(ParseBody({"endset"}, &stmt->body, &end));
      RETURN_IF_ERROR(ExpectBlockEnd());
      return stmt;
    }
    return Error(Peek(), "expected '=' in set, got " + Describe(Peek()));
  }

  absl::StatusOr<StmtPtr> ParseMacro(StmtPtr stmt) {
    stmt->kind = Stmt::Kind::kMacro;
    ASSIGN_OR_RETURN(stmt->name, ExpectName());
    RETURN_IF_ERROR(ExpectOp("("));
    bool seen_default = false;
    while (!IsOp(")")) {
      ASSIGN_OR_RETURN(std::string param, ExpectName());
      ExprPtr default_value;
      if (SkipOp("=")) {
        ASSIGN_OR_RETURN(default_value, ParseExpression());
        seen_default = true;
      } else if (seen_default) {
        return Error(Peek(), "macro parameter '" + param + "' without a default follows one with a default");
      }
      stmt->params.emplace_back(std::move(param), std::move(default_value));
      if (!SkipOp(",")) break;
    }
    RETURN_IF_ERROR(ExpectOp(")"));
    RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;  // break/continue cannot cross a macro boundary
    std::string end;
    absl::Status status = ParseBody({"endmacro"}, &stmt->body, &end);
    loop_depth_ = saved_loop_depth;
    RETURN_IF_ERROR(status);
    if (Peek().kind == TK::kName) Next();  // {% endmacro name %}
    RETURN_IF_ERROR(ExpectBlockEnd());
    return stmt;
  }

  // ----- expressions -----

  absl::StatusOr<ExprPtr> ParseExpression() { return ParseCondition(/*with_condition=*/true); }

  // expr [, expr ...]: several become a tuple (a list at run time).
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condition) {
    const int line = Peek().line;
    ASSIGN_OR_RETURN(ExprPtr first, ParseCondition(with_condition));
    if (!IsOp(",")) return first;
    ExprPtr tuple = MakeExpr(Expr::Kind::kList, line);
    tuple->args.push_back(std::move(first));
    while (SkipOp(",")) {
      if (Peek().kind == TK::kBlockEnd || Peek().kind == TK::kVariableEnd || IsName("if")) break;
      ASSIGN_OR_RETURN(ExprPtr next, ParseCondition(with_condition));
      tuple->args.push_back(std::move(next));
    }
    return tuple;
  }

  absl::StatusOr<ExprPtr> ParseCondition(bool with_condition) {
    DepthGuard guard(this);
    RETURN_IF_ERROR(CheckDepth());
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    if (!with_condition) return expr;
    while (IsName("if")) {
      const int line = Next().line;
      ASSIGN_OR_RETURN(ExprPtr condition, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        ASSIGN_OR_RETURN(otherwise, ParseCondition(/*with_condition=*/true));
      }
      ExprPtr node = MakeExpr(Expr::Kind::kCondition, line);
      node->args.push_back(std::move(expr));
      node->args.push_back(std::move(condition));
      node->args.push_back(std::move(otherwise));
      expr = std::move(node);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    ASSIGN_OR_RETURN(ExprPtr lhs, ParseAnd());
    while (IsName("or")) {
      const int line = Next().line;
      ASSIGN_OR_RETURN(ExprPtr rhs, ParseAnd());
      lhs = MakeBinary(Expr::Kind::kOr, "or", line, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    ASSIGN_OR_RETURN(ExprPtr lhs, ParseNot());
    while (IsName("and")) {
      const int line = Next().line;
      ASSIGN_OR_RETURN(ExprPtr rhs, ParseNot());
      lhs = MakeBinary(Expr::Kind::kAnd, "and", line, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(this);
      RETURN_IF_ERROR(CheckDepth());
      const int line = Next().line;
      ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      return MakeUnary(Expr::Kind::kNot, line, std::move(operand));
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = Peek().line;
    ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr node;
    while (true) {
      std::string op;
      if (Peek().kind == TK::kOperator &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" || Peek().text == "<=" ||
           Peek().text == ">" || Peek().text == ">=")) {
        op = Next().text;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      if (!node) {
        node = MakeExpr(Expr::Kind::kCompare, line);
        node->args.push_back(std::move(first));
      }
      ASSIGN_OR_RETURN(ExprPtr rhs, ParseMath1());
      node->ops.push_back(op);
      node->args.push_back(std::move(rhs));
    }
    return node ? std::move(node) : std::move(first);
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    ASSIGN_OR_RETURN(ExprPtr lhs, ParseConcat());
    while (IsOp("+") || IsOp("-")) {
      const Token& op = Next();
      ASSIGN_OR_RETURN(ExprPtr rhs, ParseConcat());
      lhs = MakeBinary(Expr::Kind::kBinary, op.text, op.line, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    ASSIGN_OR_RETURN(ExprPtr lhs, ParseMath2());
    while (IsOp("~")) {
      const Token& op = Next();
      ASSIGN_OR_RETURN(ExprPtr rhs, ParseMath2());
      lhs = MakeBinary(Expr::Kind::kBinary, "~", op.line, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    ASSIGN_OR_RETURN(ExprPtr lhs, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& op = Next();
      ASSIGN_OR_RETURN(ExprPtr rhs, ParsePow());
      lhs = MakeBinary(Expr::Kind::kBinary, op.text, op.line, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<ExprPtr> ParsePow() {
    ASSIGN_OR_RETURN(ExprPtr lhs, ParseUnary(/*with_filter=*/true));
    while (IsOp("**")) {
      const Token& op = Next();
      ASSIGN_OR_RETURN(ExprPtr rhs, ParseUnary(/*with_filter=*/true));
      lhs = MakeBinary(Expr::Kind::kBinary, "**", op.line, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(this);
    RETURN_IF_ERROR(CheckDepth());
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const Token& op = Next();
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(/*with_filter=*/false));
      node = MakeUnary(op.text == "-" ? Expr::Kind::kNeg : Expr::Kind::kPos, op.line, std::move(operand));
    } else {
      ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TK::kName: {
        Next();
        ExprPtr e = MakeExpr(Expr::Kind::kLiteral, t.line);
        if (t.text == "true" || t.text == "True") {
          e->literal = true;
        } else if (t.text == "false" || t.text == "False") {
          e->literal = false;
        } else if (t.text == "none" || t.text == "None") {
          e->literal = nullptr;
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case TK::kString: {
        ExprPtr e = MakeExpr(Expr::Kind::kLiteral, t.line);
        std::string value;
        while (Peek().kind == TK::kString) value += Next().text;  // adjacent literals join
        e->literal = value;
        return e;
      }
      case TK::kInteger: {
        if (t.overflow) return Error(t, "integer literal " + t.text + " is too large");
        Next();
        ExprPtr e = MakeExpr(Expr::Kind::kLiteral, t.line);
        e->literal = t.int_value;
        return e;
      }
      case TK::kFloat: {
        Next();
        ExprPtr e = MakeExpr(Expr::Kind::kLiteral, t.line);
        e->literal = t.float_value;
        return e;
      }
      case TK::kOperator:
        if (t.text == "(") return ParseParenthesized();
        if (t.text == "[") return ParseList();
        if (t.text == "{") return ParseDict();
        break;
      default:
        break;
    }
    return Error(t, "unexpected " + Describe(t) + " in expression");
  }

  absl::StatusOr<ExprPtr> ParseParenthesized() {
    const int line = Next().line;
    if (SkipOp(")")) return MakeExpr(Expr::Kind::kList, line);  // ()
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression());
    if (SkipOp(")")) return first;
    ExprPtr tuple = MakeExpr(Expr::Kind::kList, line);
    tuple->args.push_back(std::move(first));
    while (SkipOp(",")) {
      if (IsOp(")")) break;
      ASSIGN_OR_RETURN(ExprPtr next, ParseExpression());
      tuple->args.push_back(std::move(next));
    }
    RETURN_IF_ERROR(ExpectOp(")"));
    return tuple;
  }

  absl::StatusOr<ExprPtr> ParseList() {
    const int line = Next().line;
    ExprPtr list = MakeExpr(Expr::Kind::kList, line);
    while (!IsOp("]")) {
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      list->args.push_back(std::move(item));
      if (!SkipOp(",")) break;
    }
    RETURN_IF_ERROR(ExpectOp("]"));
    return list;
  }

  absl::StatusOr<ExprPtr> ParseDict() {
    const int line = Next().line;
    ExprPtr dict = MakeExpr(Expr::Kind::kDict, line);
    while (!IsOp("}")) {
      ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
      RETURN_IF_ERROR(ExpectOp(":"));
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      dict->args.push_back(std::move(key));
      dict->args.push_back(std::move(value));
      if (!SkipOp(",")) break;
    }
    RETURN_IF_ERROR(ExpectOp("}"));
    return dict;
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".")) {
        const int line = Next().line;
        ExprPtr attr = MakeExpr(Expr::Kind::kGetAttr, line);
        if (Peek().kind == TK::kName) {
          attr->name = Next().text;
        } else if (Peek().kind == TK::kInteger) {
          if (!Peek().overflow) attr->literal = Peek().int_value;
          attr->name = Next().text;
        } else {
          return Error(Peek(), "expected an attribute name after '.', got " + Describe(Peek()));
        }
        attr->args.push_back(std::move(node));
        node = std::move(attr);
      } else if (IsOp("[")) {
        ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node) {
    const int line = Next().line;
    ExprPtr parts[3];
    int part = 0;
    bool is_slice = false;
    while (true) {
      if (IsOp(":")) {
        Next();
        is_slice = true;
        if (++part > 2) return Error(Peek(), "too many ':' in slice");
        continue;
      }
      if (IsOp("]")) break;
      if (parts[part]) return Error(Peek(), "expected ']' or ':', got " + Describe(Peek()));
      ASSIGN_OR_RETURN(parts[part], ParseExpression());
    }
    RETURN_IF_ERROR(ExpectOp("]"));
    if (!is_slice) {
      if (!parts[0]) return Error(Peek(), "empty subscript '[]'");
      ExprPtr item = MakeExpr(Expr::Kind::kGetItem, line);
      item->args.push_back(std::move(node));
      item->args.push_back(std::move(parts[0]));
      return item;
    }
    ExprPtr slice = MakeExpr(Expr::Kind::kSlice, line);
    slice->args.push_back(std::move(node));
    for (auto& p : parts) slice->args.push_back(std::move(p));
    return slice;
  }

  // Fills args (after the callee already in args[0]) and kwargs from "(...)".
  absl::Status ParseCallArgs(Expr* call) {
    RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      if (IsOp("*") || IsOp("**")) return Error(Peek(), "*args and **kwargs are not supported");
      if (Peek().kind == TK::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        Next();
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        call->kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (!call->kwargs.empty()) return Error(Peek(), "positional argument follows keyword argument");
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        call->args.push_back(std::move(value));
      }
      if (!SkipOp(",")) break;
    }
    return ExpectOp(")");
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    ExprPtr call = MakeExpr(Expr::Kind::kCall, Peek().line);
    call->args.push_back(std::move(callee));
    RETURN_IF_ERROR(ParseCallArgs(call.get()));
    return call;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        const int line = Next().line;
        ExprPtr filter = MakeExpr(Expr::Kind::kFilter, line);
        ASSIGN_OR_RETURN(filter->name, ExpectName());
        while (SkipOp(".")) {
          ASSIGN_OR_RETURN(std::string part, ExpectName());
          filter->name += "." + part;
        }
        filter->args.push_back(std::move(node));
        if (IsOp("(")) RETURN_IF_ERROR(ParseCallArgs(filter.get()));
        node = std::move(filter);
      } else if (IsName("is")) {
        ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node) {
    const int line = Next().line;
    ExprPtr test = MakeExpr(Expr::Kind::kTest, line);
    test->negated = SkipName("not");
    ASSIGN_OR_RETURN(test->name, ExpectName());
    test->args.push_back(std::move(node));
    const Token& t = Peek();
    if (IsOp("(")) {
      RETURN_IF_ERROR(ParseCallArgs(test.get()));
    } else if ((t.kind == TK::kName || t.kind == TK::kString || t.kind == TK::kInteger ||
                t.kind == TK::kFloat || IsOp("[") || IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) return Error(t, "tests cannot be chained with 'is'");
      ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
      ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
      test->args.push_back(std::move(arg));
    }
    return test;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int max_depth_;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> ParseTemplate(const std::string& source, int max_depth) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  Parser parser(std::move(tokens), max_depth);
  return parser.ParseAll();
}

}  // namespace tern::runtime::jinja
