// Unit tests of the Jinja interpreter behind chat templates.
//
// Snippets: each small template in tests/data/chat-templates/snippets.json
// must render exactly what Jinja2 rendered for it
// (expected/snippets.json, written by tools/chat/render_expected.py), or fail
// where Jinja2 failed. The rest covers what the reference cannot show:
// error messages and lines, limits against hostile templates, malformed
// input, and the Python-text helpers.
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/runtime/chat/fixed_time.h"
#include "tests/test_files.h"
#include "runtime/chat/jinja_parser.h"
#include "runtime/chat/jinja_renderer.h"
#include "runtime/chat/jinja_text.h"
#include "runtime/chat/jinja_value.h"

namespace tern::runtime::jinja {
namespace {

const std::string kDataDir = TERN_TEST_DATA_DIR "/chat-templates";

std::string ReadAll(const std::string& path) { return tern::test_data::ReadTestFile(path); }

using testing_time::FixedNow;

absl::StatusOr<std::string> Render(const std::string& source, const Json& variables = Json::object(),
                                   const RenderLimits& limits = {}) {
  auto body = ParseTemplate(source, /*max_depth=*/128);
  if (!body.ok()) return body.status();
  RenderOptions options;
  options.limits = limits;
  options.now = FixedNow();
  return RenderBody(*body, variables, options);
}

std::string RenderOk(const std::string& source, const Json& variables = Json::object()) {
  auto out = Render(source, variables);
  EXPECT_TRUE(out.ok()) << source << "\n" << out.status();
  return out.ok() ? *out : "<error>";
}

absl::Status RenderError(const std::string& source, const RenderLimits& limits = {}) {
  auto out = Render(source, Json::object(), limits);
  EXPECT_FALSE(out.ok()) << source << " rendered " << *out;
  return out.ok() ? absl::OkStatus() : out.status();
}

void ExpectInvalid(const absl::Status& status, const std::string& needle) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(needle), std::string::npos) << "'" << needle << "' not in: " << status;
}

TEST(JinjaSnippetTest, MatchesJinja2) {
  const Json snippets = Json::parse(ReadAll(kDataDir + "/snippets.json"));
  const Json expected = Json::parse(ReadAll(kDataDir + "/expected/snippets.json"));
  ASSERT_EQ(snippets.size(), expected.size()) << "rerun tools/chat/render_expected.py";
  ASSERT_GE(snippets.size(), 60u);
  for (size_t i = 0; i < snippets.size(); ++i) {
    const std::string source = snippets[i].at("template").get<std::string>();
    ASSERT_EQ(source, expected[i].at("template").get<std::string>()) << "rerun tools/chat/render_expected.py";
    SCOPED_TRACE("snippet " + std::to_string(i) + ": " + source);
    const Json variables = snippets[i].value("variables", Json::object());
    const auto out = Render(source, variables);
    if (expected[i].contains("output")) {
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, expected[i].at("output").get<std::string>());
    } else {
      const std::string error = expected[i].at("error").get<std::string>();
      ASSERT_FALSE(out.ok()) << "Jinja2 raised " << error << " but tern rendered: " << *out;
      EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
      EXPECT_EQ(out.status().message().rfind("template line ", 0), 0u) << out.status();
    }
  }
}

TEST(JinjaErrorTest, RuntimeErrorsNameTheLine) {
  ExpectInvalid(RenderError("a\nb\n{{ 1 + 'x' }}"), "template line 3: unsupported operand type(s) for +");
  ExpectInvalid(RenderError("\n{{ missing.attr }}"), "template line 2: 'missing' is undefined");
  ExpectInvalid(RenderError("{{ x | no_such_filter }}"), "unsupported filter 'no_such_filter'");
  ExpectInvalid(RenderError("{{ x is no_such_test }}"), "unsupported test 'no_such_test'");
  ExpectInvalid(RenderError("{{ nothing() }}"), "'nothing' is undefined");
  ExpectInvalid(RenderError("{{ 'abc'.zfill(5) }}"), "'str object' has no attribute 'zfill'");
  ExpectInvalid(RenderError("{{ [1].append(2) }}"), "templates cannot modify their inputs");
  ExpectInvalid(RenderError("{{ 'x'.split('') }}"), "empty separator");
  ExpectInvalid(RenderError("{% set n = 5 %}{% set n.a = 1 %}"), "not a namespace()");
  ExpectInvalid(RenderError("{% set a, b = [1, 2, 3] %}"), "cannot unpack 3 values into 2 names");
  ExpectInvalid(RenderError("{{ '%s' % 1 }}"), "printf-style");
  ExpectInvalid(RenderError("{{ 9223372036854775807 + 1 }}"), "integer overflow");
  ExpectInvalid(RenderError("{{ 'a'[::0] }}"), "slice step cannot be zero");
  ExpectInvalid(RenderError("{{ {1: 2} }}"), "dict keys must be strings");
  ExpectInvalid(RenderError("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"), "takes 1 arguments, 2 given");
  ExpectInvalid(RenderError("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}"), "has no parameter 'b'");
  ExpectInvalid(RenderError("{{ range(1, 2, 0) }}"), "must not be zero");
  ExpectInvalid(RenderError("{{ 1 | tojson(ensure_ascii=true) }}"), "not supported");
  ExpectInvalid(RenderError("{{ x | trim(1, 2) }}"), "takes at most 1 argument");
}

TEST(JinjaErrorTest, MalformedTemplatesAreInvalidArgument) {
  const char* const kMalformed[] = {
      "{{",
      "{{ x",
      "{%",
      "{% if %}x{% endif %}",
      "{% if x %}never closed",
      "{% for x %}{% endfor %}",
      "{% for x in %}{% endfor %}",
      "{% for x in y %}no end",
      "{{ x | }}",
      "{# never closed",
      "{{ [1, 2 }}",
      "{{ (1 }}",
      "{{ 1) }}",
      "{{ 'unterminated }}",
      "{% set %}",
      "{% set x %}no endset",
      "{% set x y %}",
      "{% macro %}{% endmacro %}",
      "{% macro m(a=1, b) %}{% endmacro %}",
      "{{ x[1:2:3:4] }}",
      "{{ x[] }}",
      "{% endif %}",
      "{% else %}",
      "{% elif x %}",
      "{% endfor %}",
      "{{ f(a=1, 2) }}",
      "{{ f(*args) }}",
      "{{ x is }}",
      "{{ x is defined is defined }}",
      "{% break %}",
      "{% for x in y %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}",
      "{% include 'other.jinja' %}",
      "{% extends 'base.jinja' %}",
      "{% raw %}{{ x }}{% endraw %}",
      "{% for x in y recursive %}{% endfor %}",
      "{{ x @ y }}",
      "{{ 'bad escape \\u12' }}",
      "{{ 99999999999999999999 }}",
      "{% if x %}{% else %}{% else %}{% endif %}",
  };
  for (const char* source : kMalformed) {
    auto body = ParseTemplate(source, 128);
    EXPECT_FALSE(body.ok()) << source;
    if (!body.ok()) {
      EXPECT_EQ(body.status().code(), absl::StatusCode::kInvalidArgument) << source;
      EXPECT_EQ(body.status().message().rfind("template line ", 0), 0u) << body.status();
    }
  }
}

TEST(JinjaErrorTest, ParseErrorsNameTheLine) {
  auto body = ParseTemplate("one\ntwo\n{% for x in xs %}\n{{ x + }}\n{% endfor %}", 128);
  ASSERT_FALSE(body.ok());
  ExpectInvalid(body.status(), "template line 4");
  body = ParseTemplate("{% if a %}\n\n{% endfor %}", 128);
  ASSERT_FALSE(body.ok());
  ExpectInvalid(body.status(), "template line 3: unexpected '{% endfor %}'");
}

TEST(JinjaLimitTest, DeepNestingIsRejectedNotOverflowed) {
  const int n = 100000;
  std::string parens = "{{ " + std::string(n, '(') + "1" + std::string(n, ')') + " }}";
  ExpectInvalid(ParseTemplate(parens, 128).status(), "nests deeper than the limit");
  std::string nots = "{{ " ;
  for (int i = 0; i < n; ++i) nots += "not ";
  nots += "x }}";
  ExpectInvalid(ParseTemplate(nots, 128).status(), "nests deeper than the limit");
  std::string negs = "{{ " + std::string(n, '-') + "1 }}";
  ExpectInvalid(ParseTemplate(negs, 128).status(), "nests deeper than the limit");
  std::string ifs;
  for (int i = 0; i < n; ++i) ifs += "{% if true %}";
  ExpectInvalid(ParseTemplate(ifs, 128).status(), "nests deeper than the limit");
  std::string lists = "{{ " + std::string(n, '[') + std::string(n, ']') + " }}";
  ExpectInvalid(ParseTemplate(lists, 128).status(), "nests deeper than the limit");
  // Within the limit, nesting works.
  EXPECT_EQ(RenderOk("{{ " + std::string(30, '(') + "7" + std::string(30, ')') + " }}"), "7");
}

TEST(JinjaLimitTest, LoopIterationsAreCapped) {
  RenderLimits limits;
  limits.max_steps = 10000;
  ExpectInvalid(RenderError("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
                            limits),
                "limit of 10000 loop iterations");
  // The same shape under the limit renders.
  auto out = Render("{% for i in range(50) %}{% for j in range(50) %}{% endfor %}{% endfor %}ok",
                    Json::object(), limits);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "ok");
}

TEST(JinjaLimitTest, MacroRecursionIsCapped) {
  ExpectInvalid(RenderError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
                "macro calls nest deeper than the limit");
  // Exponential fan-out within the depth limit runs into the step limit.
  RenderLimits limits;
  limits.max_steps = 100000;
  ExpectInvalid(RenderError("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                            "{% endmacro %}{{ f(40) }}",
                            limits),
                "loop iterations and macro calls");
  EXPECT_EQ(RenderOk("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}"),
            "54321");
}

TEST(JinjaLimitTest, OutputAndIntermediateSizesAreCapped) {
  RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  ExpectInvalid(RenderError("{{ 'x' * 100000000000 }}", limits), "exceeds the limit");
  ExpectInvalid(RenderError("{{ [1] * 100000000000 }}", limits), "exceeds the limit");
  ExpectInvalid(RenderError("{{ range(100000000000) | length }}", limits), "exceeds the limit");
  ExpectInvalid(RenderError("{% for i in range(100000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}",
                            limits),
                "output exceeds the limit");
  ExpectInvalid(RenderError("{% set s = namespace(t='xx') %}{% for i in range(40) %}"
                            "{% set s.t = s.t ~ s.t %}{% endfor %}",
                            limits),
                "exceeds the limit");
}

TEST(JinjaRenderTest, UndefinedSemantics) {
  EXPECT_EQ(RenderOk("[{{ x }}]{% for i in x %}never{% endfor %}{{ x is defined }}{{ x | length }}"),
            "[]False0");
  EXPECT_EQ(RenderOk("{{ d.missing is defined }}|{{ d['missing'] | default('dflt') }}",
                     {{"d", Json::object()}}),
            "False|dflt");
  ExpectInvalid(RenderError("{{ d.a.b }}"), "'d' is undefined");
  ExpectInvalid(RenderError("{{ -x }}"), "'x' is undefined");
}

TEST(JinjaRenderTest, VariablesMustBeAnObject) {
  auto body = ParseTemplate("x", 16);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(RenderBody(*body, Json::array(), RenderOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JinjaRenderTest, InputsAreNeverModified) {
  // set on a global shadows it for the render only; the caller's JSON is intact.
  const Json variables = {{"messages", Json::array({"a", "b"})}};
  const Json before = variables;
  EXPECT_EQ(RenderOk("{% set messages = messages[1:] %}{{ messages }}", variables), "['b']");
  EXPECT_EQ(variables, before);
}

TEST(JinjaTextTest, Utf8DecodeHandlesInvalidBytes) {
  EXPECT_EQ(DecodeUtf8("a\xC3\xA9"), std::u32string(U"a\u00e9"));
  EXPECT_EQ(DecodeUtf8("\xF0\x9F\x8C\x8D"), std::u32string(U"\U0001F30D"));
  EXPECT_EQ(DecodeUtf8("\xFF" "b"), std::u32string(U"\uFFFDb"));
  EXPECT_EQ(DecodeUtf8("\xE2\x82"), std::u32string(U"\uFFFD\uFFFD"));  // truncated
  EXPECT_EQ(DecodeUtf8("\xC0\xAF"), std::u32string(U"\uFFFD\uFFFD"));  // overlong
  EXPECT_EQ(EncodeUtf8(U"\u00e9\U0001F30D"), "\xC3\xA9\xF0\x9F\x8C\x8D");
  EXPECT_EQ(CodePointCount("h\xC3\xA9llo"), 5);
}

TEST(JinjaTextTest, FormatsFloatsLikePythonRepr) {
  EXPECT_EQ(FormatPyFloat(1.0), "1.0");
  EXPECT_EQ(FormatPyFloat(0.1), "0.1");
  EXPECT_EQ(FormatPyFloat(-2.5), "-2.5");
  EXPECT_EQ(FormatPyFloat(1e16), "1e+16");
  EXPECT_EQ(FormatPyFloat(1e15), "1000000000000000.0");
  EXPECT_EQ(FormatPyFloat(1.5e-5), "1.5e-05");
  EXPECT_EQ(FormatPyFloat(0.0001), "0.0001");
  EXPECT_EQ(FormatPyFloat(123456789012345678.0), "1.2345678901234568e+17");
  EXPECT_EQ(FormatPyFloat(-0.0), "-0.0");
  EXPECT_EQ(FormatPyFloat(std::nan("")), "nan");
  EXPECT_EQ(FormatPyFloat(-INFINITY), "-inf");
}

TEST(JinjaTextTest, StringHelpersFollowPython) {
  EXPECT_EQ(PyStrip("\u00a0 x \n", std::nullopt, true, true), "x");
  EXPECT_EQ(PyStrip("\xC2\xA0 x \n", std::nullopt, true, true), "x");  // NBSP is whitespace
  EXPECT_EQ(PySplit(" a  b ", std::nullopt, 1), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(PySplit("a  b c ", std::nullopt, 1), (std::vector<std::string>{"a", "b c"}));
  EXPECT_EQ(PySplit("a,b", std::string(","), -1), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(PyReplace("aaa", "a", "b", 2), "bba");
  EXPECT_EQ(PyStringRepr("it's"), "\"it's\"");
  EXPECT_EQ(PyStringRepr("a\x01\x7f"), "'a\\x01\\x7f'");
  EXPECT_EQ(PySplitLines("a\r\nb\rc\n"), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(JinjaValueTest, JsonDumpMatchesPythonJsonDumps) {
  const Json data = Json::parse(R"({"b": [1, 2.0, "é\n"], "a": {}})");
  JsonDumpOptions compact;
  EXPECT_EQ(DumpJson(data, compact), "{\"b\": [1, 2.0, \"é\\n\"], \"a\": {}}");
  JsonDumpOptions indented;
  indented.indent = "  ";
  indented.item_separator = ",";
  indented.sort_keys = true;
  EXPECT_EQ(DumpJson(data, indented), "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.0,\n    \"é\\n\"\n  ]\n}");
}

}  // namespace
}  // namespace tern::runtime::jinja
