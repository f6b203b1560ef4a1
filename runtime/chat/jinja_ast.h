// Syntax tree of a parsed Jinja template. Built by jinja_parser, walked by
// jinja_renderer; immutable once built. Each node records its source line for
// error messages. One tagged struct per family (expressions, statements) keeps
// the tree small; the comment on each kind says which fields it uses.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/chat/jinja_value.h"

namespace tern::runtime::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // literal
    kName,      // name
    kList,      // args: elements (a tuple literal is a list too)
    kDict,      // args: key0, value0, key1, value1, ...
    kGetAttr,   // args[0].name  (obj.attr, or obj.0 with name "0" and literal 0)
    kGetItem,   // args[0][args[1]]
    kSlice,     // args[0][args[1]:args[2]:args[3]]; absent parts are nullptr
    kCall,      // args[0](args[1:], kwargs)
    kFilter,    // args[0] | name(args[1:], kwargs)
    kTest,      // args[0] is [not] name(args[1:]); negated
    kNeg,       // -args[0]
    kPos,       // +args[0]
    kNot,       // not args[0]
    kBinary,    // args[0] op args[1]: + - * / // % ** ~
    kAnd,       // args[0] and args[1]
    kOr,        // args[0] or args[1]
    kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in, not in
    kCondition, // args[0] if args[1] else args[2]; args[2] is nullptr without else
  };

  Kind kind = Kind::kLiteral;
  int line = 0;
  Json literal;
  std::string name;                // variable, attribute, filter, test or operator
  std::vector<std::string> ops;    // kCompare operators
  bool negated = false;            // kTest
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // kCall, kFilter
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches: (condition, body) ...; a final else has a null condition
    kFor,       // for targets in expr [if filter]: body [else else_body]
    kSet,       // set targets = expr, or set targets[0].attribute = expr
    kSetBlock,  // set targets[0] %}body{% endset
    kMacro,     // macro name(params) body; params may carry default values
    kBreak,
    kContinue,
    kGeneration,  // {% generation %}body{% endgeneration %} (HF's assistant-mask marker)
  };

  Kind kind = Kind::kText;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::string> targets;
  std::string attribute;  // kSet on a namespace attribute
  std::string name;       // kMacro
  std::vector<std::pair<std::string, ExprPtr>> params;  // kMacro; default may be nullptr
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
};

}  // namespace tern::runtime::jinja
