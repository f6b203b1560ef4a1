// Added and special tokens (tokenizer.json "added_tokens", SentencePiece
// control and user-defined pieces) and the matcher that finds them in raw
// text before BPE runs, as Hugging Face's AddedVocabulary does: scanning
// left to right, the first position where any token matches wins, and the
// longest token matching there is taken.
// Immutable after construction; const methods are thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tern::runtime {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;      // skipped by Decode(skip_special_tokens=true)
  bool single_word = false;  // only matches when not inside a word
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
};

class AddedTokenMatcher {
 public:
  // A run of plain text (token_id < 0) or one matched token.
  struct Segment {
    std::string_view text;  // the plain text, or the matched content
    int32_t token_id;
    size_t offset;          // byte offset of `text` in the input
  };

  // Tokens with empty content are ignored. If two tokens share content,
  // the first is kept.
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  // Splits `text` into plain-text segments and matched tokens, in order.
  // Whitespace swallowed by lstrip/rstrip tokens belongs to no segment.
  // Empty plain segments are omitted.
  void Split(std::string_view text, std::vector<Segment>* segments) const;

  bool empty() const { return tokens_.empty(); }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int32_t token = -1;  // index into tokens_ when a token ends here
  };
  int32_t Child(int32_t node, unsigned char byte) const;
  // The longest acceptable token starting at `pos`: its index and length.
  bool MatchAt(std::string_view text, size_t pos, int32_t* token, size_t* length) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  bool first_byte_[256] = {};
};

}  // namespace tern::runtime
