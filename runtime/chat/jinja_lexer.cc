#include "runtime/chat/jinja_lexer.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "runtime/chat/jinja_text.h"

namespace tern::runtime::jinja {
namespace {

// Python's re \s for ASCII text.
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Longest operators first so "//" wins over "/".
constexpr const char* kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                      "~",  "<",  ">",  "=",  ".",  ",",  ":", "|", "(", ")", "[",
                                      "]",  "{",  "}",  ";"};

std::string NormalizeNewlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      const size_t start = FindTagStart(pos_);
      if (start == std::string::npos) {
        EmitText(src_.substr(pos_), line_);
        Advance(src_.size());
        break;
      }
      const char open = src_[start + 1];
      char sign = start + 2 < src_.size() ? src_[start + 2] : '\0';
      if (sign != '-' && sign != '+') sign = '\0';
      std::string text = src_.substr(pos_, start - pos_);
      if (sign == '-') {
        size_t end = text.size();
        while (end > 0 && IsSpace(text[end - 1])) --end;
        text.resize(end);
      } else if (sign != '+' && open != '{') {
        // lstrip_blocks: drop spaces/tabs between the line start and the tag.
        const size_t line_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if (line_pos > 0 || line_starting) {
          bool all_space = line_pos < text.size();
          for (size_t i = line_pos; i < text.size(); ++i) all_space = all_space && IsSpace(text[i]);
          if (all_space) text.resize(line_pos);
        }
      }
      EmitText(text, line_);
      Advance(start);
      const int tag_line = line_;
      Advance(start + 2 + (sign ? 1 : 0));
      if (open == '#') {
        const size_t close = src_.find("#}", pos_);
        if (close == std::string::npos) return Error(tag_line, "unterminated comment");
        const char end_sign = close > pos_ ? src_[close - 1] : '\0';
        line_starting = FinishTag(close + 2, end_sign, /*trim_newline=*/true);
        continue;
      }
      Token begin;
      begin.kind = open == '{' ? Token::Kind::kVariableBegin : Token::Kind::kBlockBegin;
      begin.line = tag_line;
      tokens_.push_back(begin);
      auto ended = LexTag(open == '%', tag_line);
      if (!ended.ok()) return ended.status();
      line_starting = *ended;
    }
    Token end;
    end.kind = Token::Kind::kEnd;
    end.line = line_;
    tokens_.push_back(end);
    return std::move(tokens_);
  }

 private:
  absl::Status Error(int line, const std::string& what) const {
    return absl::InvalidArgumentError("template line " + std::to_string(line) + ": " + what);
  }

  size_t FindTagStart(size_t from) const {
    size_t at = from;
    while ((at = src_.find('{', at)) != std::string::npos) {
      if (at + 1 < src_.size() && (src_[at + 1] == '{' || src_[at + 1] == '%' || src_[at + 1] == '#')) {
        return at;
      }
      ++at;
    }
    return std::string::npos;
  }

  void Advance(size_t to) {
    for (size_t i = pos_; i < to; ++i) {
      if (src_[i] == '\n') ++line_;
    }
    pos_ = to;
  }

  void EmitText(const std::string& text, int line) {
    if (text.empty()) return;
    Token t;
    t.kind = Token::Kind::kText;
    t.text = text;
    t.line = line;
    tokens_.push_back(std::move(t));
  }

  // Moves past a tag's closing marker ending at `after`; `end_sign` is the
  // character before the marker. Returns whether the consumed text ends a line
  // (Jinja's line_starting, which lets lstrip_blocks strip the next tag).
  bool FinishTag(size_t after, char end_sign, bool trim_newline) {
    if (end_sign == '-') {
      while (after < src_.size() && IsSpace(src_[after])) ++after;
    } else if (end_sign != '+' && trim_newline && after < src_.size() && src_[after] == '\n') {
      ++after;
    }
    Advance(after);
    return src_[after - 1] == '\n';
  }

  // Lexes expression tokens up to the tag's end. Returns line_starting.
  absl::StatusOr<bool> LexTag(bool block, int tag_line) {
    std::string brackets;
    while (true) {
      while (pos_ < src_.size() && IsSpace(src_[pos_])) Advance(pos_ + 1);
      if (pos_ >= src_.size()) {
        return Error(tag_line, block ? "unterminated '{%' tag" : "unterminated '{{' expression");
      }
      if (brackets.empty()) {
        const std::string close = block ? "%}" : "}}";
        for (const char* sign : {"-", "+", ""}) {
          if (!block && sign[0] == '+') continue;
          const std::string marker = std::string(sign) + close;
          if (src_.compare(pos_, marker.size(), marker) == 0) {
            Token end;
            end.kind = block ? Token::Kind::kBlockEnd : Token::Kind::kVariableEnd;
            end.line = line_;
            tokens_.push_back(end);
            return FinishTag(pos_ + marker.size(), sign[0], /*trim_newline=*/block);
          }
        }
      }
      Token t;
      t.line = line_;
      const char c = src_[pos_];
      if (IsNameStart(c)) {
        size_t end = pos_;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        t.kind = Token::Kind::kName;
        t.text = src_.substr(pos_, end - pos_);
        Advance(end);
      } else if (IsDigit(c)) {
        auto status = LexNumber(&t);
        if (!status.ok()) return status;
      } else if (c == '\'' || c == '"') {
        auto status = LexString(&t);
        if (!status.ok()) return status;
      } else {
        bool matched = false;
        for (const char* op : kOperators) {
          const std::string_view op_view(op);
          if (src_.compare(pos_, op_view.size(), op_view) != 0) continue;
          t.kind = Token::Kind::kOperator;
          t.text = std::string(op_view);
          matched = true;
          break;
        }
        if (!matched) {
          return Error(line_, std::string("unexpected character '") + c + "' in tag");
        }
        if (t.text == "(" || t.text == "[" || t.text == "{") {
          brackets.push_back(t.text[0]);
        } else if (t.text == ")" || t.text == "]" || t.text == "}") {
          const char want = t.text == ")" ? '(' : t.text == "]" ? '[' : '{';
          if (brackets.empty() || brackets.back() != want) {
            return Error(line_, "unexpected '" + t.text + "'");
          }
          brackets.pop_back();
        }
        Advance(pos_ + t.text.size());
      }
      tokens_.push_back(std::move(t));
    }
  }

  // Digits with optional '_' separators; a float has a fraction and/or exponent.
  // An integer beyond int64 is flagged rather than refused here: after a dot
  // it is only an attribute name; the parser refuses it as a value.
  absl::Status LexNumber(Token* t) {
    size_t end = pos_;
    auto digits = [&]() {
      while (end < src_.size() && (IsDigit(src_[end]) || (src_[end] == '_' && end + 1 < src_.size() &&
                                                          IsDigit(src_[end + 1])))) {
        ++end;
      }
    };
    digits();
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && IsDigit(src_[end + 1])) {
      is_float = true;
      ++end;
      digits();
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t exp = end + 1;
      if (exp < src_.size() && (src_[exp] == '+' || src_[exp] == '-')) ++exp;
      if (exp < src_.size() && IsDigit(src_[exp])) {
        is_float = true;
        end = exp;
        digits();
      }
    }
    std::string text;
    for (size_t i = pos_; i < end; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    if (is_float) {
      t->kind = Token::Kind::kFloat;
      t->float_value = std::strtod(text.c_str(), nullptr);
    } else {
      t->kind = Token::Kind::kInteger;
      errno = 0;
      const long long v = std::strtoll(text.c_str(), nullptr, 10);
      t->overflow = errno == ERANGE;
      t->int_value = t->overflow ? 0 : v;
    }
    t->text = text;
    Advance(end);
    return absl::OkStatus();
  }

  // A quoted string with Python's escapes (Jinja decodes with unicode-escape).
  absl::Status LexString(Token* t) {
    const char quote = src_[pos_];
    const int start_line = line_;
    std::u32string value;
    size_t i = pos_ + 1;
    auto raw_until = [&](size_t from, size_t to) {
      const std::u32string cps = DecodeUtf8(std::string_view(src_).substr(from, to - from));
      value += cps;
    };
    size_t chunk = i;
    while (true) {
      if (i >= src_.size()) return Error(start_line, "unterminated string literal");
      const char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        ++i;
        continue;
      }
      raw_until(chunk, i);
      if (i + 1 >= src_.size()) return Error(start_line, "unterminated string literal");
      const char e = src_[i + 1];
      i += 2;
      switch (e) {
        case '\\': value += U'\\'; break;
        case '\'': value += U'\''; break;
        case '"': value += U'"'; break;
        case 'a': value += U'\a'; break;
        case 'b': value += U'\b'; break;
        case 'f': value += U'\f'; break;
        case 'n': value += U'\n'; break;
        case 'r': value += U'\r'; break;
        case 't': value += U'\t'; break;
        case 'v': value += U'\v'; break;
        case '\n': break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const int width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int k = 0; k < width; ++k) {
            const int h = i + k < src_.size() ? HexValue(src_[i + k]) : -1;
            if (h < 0) return Error(start_line, std::string("truncated \\") + e + " escape in string");
            cp = cp * 16 + static_cast<char32_t>(h);
          }
          if (cp > 0x10FFFF) return Error(start_line, "escape beyond U+10FFFF in string");
          value += cp;
          i += width;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k, ++i) {
              cp = cp * 8 + static_cast<char32_t>(src_[i] - '0');
            }
            value += cp;
          } else {
            // Python keeps unknown escapes as written.
            value += U'\\';
            i -= 1;
          }
      }
      chunk = i;
    }
    raw_until(chunk, i);
    t->kind = Token::Kind::kString;
    t->text = EncodeUtf8(value);
    Advance(i + 1);
    return absl::OkStatus();
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(const std::string& source) {
  std::string normalized = NormalizeNewlines(source);
  if (!normalized.empty() && normalized.back() == '\n') normalized.pop_back();
  Lexer lexer(std::move(normalized));
  return lexer.Run();
}

}  // namespace tern::runtime::jinja
