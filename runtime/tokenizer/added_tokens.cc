#include "runtime/tokenizer/added_tokens.h"

#include <algorithm>

#include "runtime/tokenizer/unicode.h"

namespace tern::runtime {
namespace {

// The code point ending just before byte `pos` (which must follow a
// character boundary of well-formed text; otherwise treated as other).
CodepointClass ClassBefore(std::string_view text, size_t pos) {
  size_t start = pos;
  while (start > 0 && pos - start < 4) {
    --start;
    if ((static_cast<unsigned char>(text[start]) & 0xC0) != 0x80) break;
  }
  if (start == pos) return CodepointClass::kWhitespace;  // start of text
  const DecodedCodepoint d = DecodeUtf8(text, start);
  if (!d.valid || start + d.length != pos) return CodepointClass::kOther;
  return ClassifyCodepoint(d.cp);
}

CodepointClass ClassAt(std::string_view text, size_t pos) {
  if (pos >= text.size()) return CodepointClass::kWhitespace;  // end of text
  const DecodedCodepoint d = DecodeUtf8(text, pos);
  return d.valid ? ClassifyCodepoint(d.cp) : CodepointClass::kOther;
}

bool IsWordClass(CodepointClass c) {
  return c == CodepointClass::kLetter || c == CodepointClass::kNumber;
}

// Byte length of the whitespace character at `pos`, or 0.
size_t WhitespaceAt(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  const DecodedCodepoint d = DecodeUtf8(text, pos);
  return d.valid && ClassifyCodepoint(d.cp) == CodepointClass::kWhitespace ? d.length : 0;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) {
  nodes_.emplace_back();
  for (const AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    int32_t node = 0;
    for (const char ch : token.content) {
      const auto byte = static_cast<unsigned char>(ch);
      int32_t child = Child(node, byte);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& children = nodes_[node].children;
        children.insert(std::lower_bound(children.begin(), children.end(), std::make_pair(byte, 0)),
                        {byte, child});
      }
      node = child;
    }
    if (nodes_[node].token >= 0) continue;
    nodes_[node].token = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(token);
    first_byte_[static_cast<unsigned char>(token.content[0])] = true;
  }
}

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char byte) const {
  const auto& children = nodes_[node].children;
  const auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, 0));
  return it != children.end() && it->first == byte ? it->second : -1;
}

bool AddedTokenMatcher::MatchAt(std::string_view text, size_t pos, int32_t* token,
                                size_t* length) const {
  bool found = false;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = Child(node, static_cast<unsigned char>(text[i]));
    if (node < 0) break;
    const int32_t t = nodes_[node].token;
    if (t < 0) continue;
    if (tokens_[t].single_word &&
        (IsWordClass(ClassBefore(text, pos)) || IsWordClass(ClassAt(text, i + 1)))) {
      continue;
    }
    *token = t;
    *length = i + 1 - pos;
    found = true;
  }
  return found;
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<Segment>* segments) const {
  size_t plain_start = 0;  // start of the pending plain-text run
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    int32_t t = -1;
    size_t length = 0;
    if (!MatchAt(text, pos, &t, &length)) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[t];
    size_t plain_end = pos;
    if (token.lstrip) {
      // Swallow whitespace characters back to the previous segment.
      while (plain_end > plain_start) {
        size_t start = plain_end - 1;
        while (start > plain_start && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        if (WhitespaceAt(text, start) != plain_end - start) break;
        plain_end = start;
      }
    }
    if (plain_end > plain_start) {
      segments->push_back({text.substr(plain_start, plain_end - plain_start), -1, plain_start});
    }
    segments->push_back({text.substr(pos, length), token.id, pos});
    pos += length;
    if (token.rstrip) {
      while (const size_t n = WhitespaceAt(text, pos)) pos += n;
    }
    plain_start = pos;
  }
  if (plain_start < text.size()) {
    segments->push_back({text.substr(plain_start), -1, plain_start});
  }
}

}  // namespace tern::runtime
