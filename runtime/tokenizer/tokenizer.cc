#include "runtime/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/tokenizer/hf_tokenizer_json.h"
#include "runtime/tokenizer/pretokenizer.h"
#include "runtime/tokenizer/sentencepiece_model.h"
#include "runtime/tokenizer/string_view_compat.h"
#include "runtime/tokenizer/tokenizer_config.h"
#include "runtime/tokenizer/unicode.h"
#include "runtime/tokenizer/unicode_nfc.h"

namespace tern::runtime {
namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100 onwards, in byte order.
std::array<char32_t, 256> ByteLevelChars() {
  std::array<char32_t, 256> chars{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return chars;
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path.string()));
  return std::move(buffer).str();
}

absl::Status WithPath(const absl::Status& status, const std::filesystem::path& path) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(path.string(), ": ", status.message()));
}

bool StartsWithMarker(std::string_view s, size_t pos) {
  return s.size() - pos >= kSentencePieceSpace.size() &&
         s.compare(pos, kSentencePieceSpace.size(), kSentencePieceSpace) == 0;
}

// True when some piece has U+2581 after another character: then a merge
// can join a word to the next one and text must not be cut at markers.
bool AnyPieceHasInnerMarker(const TokenizerSpec& spec) {
  for (size_t i = 0; i < spec.pieces.size(); ++i) {
    if (spec.types[i] == TokenType::kControl || spec.types[i] == TokenType::kUnknown ||
        spec.types[i] == TokenType::kByte) {
      continue;
    }
    const std::string& p = spec.pieces[i];
    size_t pos = 0;
    while (StartsWithMarker(p, pos)) pos += kSentencePieceSpace.size();
    if (p.find(kSentencePieceSpace, pos) != std::string::npos) return true;
  }
  return false;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xAB>" piece, or -1.
int BytePieceValue(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = HexDigit(piece[3]);
  const int lo = HexDigit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string ReplaceMarkers(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  size_t pos = 0;
  while (pos < piece.size()) {
    if (StartsWithMarker(piece, pos)) {
      out.push_back(' ');
      pos += kSentencePieceSpace.size();
    } else {
      out.push_back(piece[pos++]);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromModelDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  std::error_code ec;
  const fs::path json_path = root / "tokenizer.json";
  const fs::path model_path = root / "tokenizer.model";
  TokenizerSpec spec;
  if (fs::is_regular_file(json_path, ec)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFile(json_path));
    auto parsed = ParseHfTokenizerJson(text);
    if (!parsed.ok()) return WithPath(parsed.status(), json_path);
    spec = std::move(parsed).value();
  } else if (fs::is_regular_file(model_path, ec)) {
    ASSIGN_OR_RETURN(const std::string bytes, ReadFile(model_path));
    auto parsed = ParseSentencePieceModel(bytes);
    if (!parsed.ok()) return WithPath(parsed.status(), model_path);
    spec = std::move(parsed).value();
  } else {
    return absl::NotFoundError(absl::StrCat("no tokenizer.json or tokenizer.model in ", dir));
  }
  const fs::path config_path = root / "tokenizer_config.json";
  if (fs::is_regular_file(config_path, ec)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFile(config_path));
    RETURN_IF_ERROR(WithPath(ApplyTokenizerConfig(text, &spec), config_path));
  }
  const fs::path generation_path = root / "generation_config.json";
  if (fs::is_regular_file(generation_path, ec)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFile(generation_path));
    RETURN_IF_ERROR(WithPath(ApplyGenerationConfig(text, &spec), generation_path));
  }
  return Create(std::move(spec));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerSpec spec) {
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer(std::move(spec)));
  RETURN_IF_ERROR(tokenizer->Init());
  return tokenizer;
}

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {}

absl::Status Tokenizer::Init() {
  const auto size = static_cast<int64_t>(spec_.pieces.size());
  auto bad = [](const std::string& why) { return absl::InvalidArgumentError("tokenizer: " + why); };
  if (size == 0 || size >= (int64_t{1} << 30)) return bad("the vocabulary is empty or too large");
  if (static_cast<int64_t>(spec_.types.size()) != size) return bad("pieces and types differ in size");
  auto in_range = [&](int32_t id) { return id >= 0 && id < size; };
  for (const BpeMerges::Merge& m : spec_.merges) {
    if (!in_range(m.left) || !in_range(m.right) || !in_range(m.merged)) return bad("a merge id is out of range");
  }
  for (const AddedToken& t : spec_.added_tokens) {
    if (!in_range(t.id)) return bad(absl::StrCat("added token id ", t.id, " is out of range"));
  }
  for (const auto* list : {&spec_.prefix_ids, &spec_.suffix_ids, &spec_.eos_ids}) {
    for (int32_t id : *list) {
      if (!in_range(id)) return bad(absl::StrCat("special id ", id, " is out of range"));
    }
  }
  if (spec_.bos_id != -1 && !in_range(spec_.bos_id)) return bad("bos_id is out of range");
  if (spec_.unk_id != -1 && !in_range(spec_.unk_id)) return bad("unk_id is out of range");

  is_special_.assign(size, false);
  vocab_.reserve(size);
  for (int32_t i = 0; i < size; ++i) {
    const TokenType type = spec_.types[i];
    is_special_[i] = type == TokenType::kControl || type == TokenType::kUnknown;
    if (!is_special_[i] && !spec_.pieces[i].empty()) vocab_.try_emplace(spec_.pieces[i], i);
  }
  std::vector<bool> is_added(size, false);
  for (const AddedToken& t : spec_.added_tokens) {
    is_added[t.id] = true;
    if (t.special) is_special_[t.id] = true;
  }
  added_ = std::make_unique<AddedTokenMatcher>(spec_.added_tokens);
  std::vector<AddedToken> plain;
  for (const AddedToken& t : spec_.added_tokens) {
    if (!is_special_[t.id]) plain.push_back(t);
  }
  added_plain_ = std::make_unique<AddedTokenMatcher>(plain);

  std::vector<bool> unused;
  if (spec_.model == TokenizerSpec::Model::kSentencePieceBpe) {
    unused.assign(size, false);
    for (int32_t i = 0; i < size; ++i) unused[i] = spec_.types[i] == TokenType::kUnused && !spec_.pieces[i].empty();
  }
  merges_ = std::make_unique<BpeMerges>(spec_.merges, std::move(unused));

  const std::array<char32_t, 256> byte_chars = ByteLevelChars();
  absl::flat_hash_map<char32_t, int> char_to_byte;
  for (int b = 0; b < 256; ++b) {
    char_to_byte[byte_chars[b]] = b;
    byte_level_char_[b].clear();
    AppendUtf8(byte_chars[b], &byte_level_char_[b]);
    byte_level_id_[b] = FindPiece(byte_level_char_[b]);
    if (spec_.model == TokenizerSpec::Model::kByteLevelBpe && byte_level_id_[b] < 0) {
      return bad(absl::StrCat("the byte-level vocabulary has no token for byte ", b));
    }
    byte_piece_id_[b] = -1;
  }
  for (int32_t i = 0; i < size; ++i) {
    if (spec_.types[i] != TokenType::kByte) continue;
    const int b = BytePieceValue(spec_.pieces[i]);
    if (b >= 0 && byte_piece_id_[b] < 0) byte_piece_id_[b] = i;
  }

  decoded_.resize(size);
  for (int32_t i = 0; i < size; ++i) {
    const std::string& piece = spec_.pieces[i];
    const TokenType type = spec_.types[i];
    if (is_added[i] || is_special_[i] || type == TokenType::kUserDefined) {
      decoded_[i] = piece;
    } else if (spec_.model == TokenizerSpec::Model::kByteLevelBpe) {
      // Map each char back to its byte; a piece with a char outside the
      // byte alphabet decodes to its raw text (as Hugging Face does).
      std::string bytes;
      size_t pos = 0;
      bool mapped = true;
      while (pos < piece.size() && mapped) {
        const DecodedCodepoint d = DecodeUtf8(piece, pos);
        const auto it = char_to_byte.find(d.cp);
        mapped = d.valid && it != char_to_byte.end();
        if (mapped) bytes.push_back(static_cast<char>(it->second));
        pos += d.length;
      }
      decoded_[i] = mapped ? std::move(bytes) : piece;
    } else if (type == TokenType::kByte && BytePieceValue(piece) >= 0) {
      decoded_[i] = std::string(1, static_cast<char>(BytePieceValue(piece)));
    } else {
      decoded_[i] = ReplaceMarkers(piece);
    }
  }

  if (spec_.model == TokenizerSpec::Model::kSentencePieceBpe) {
    if (spec_.split_on_space_marker) {
      marker_split_ = MarkerSplit::kBeforeEveryMarker;
    } else if (!AnyPieceHasInnerMarker(spec_)) {
      marker_split_ = MarkerSplit::kBeforeMarkerAfterText;
    }
  }
  return absl::OkStatus();
}

int32_t Tokenizer::FindPiece(std::string_view piece) const {
  const auto it = vocab_.find(ToAbslView(piece));
  return it == vocab_.end() ? -1 : it->second;
}

std::optional<int32_t> Tokenizer::PieceToId(std::string_view piece) const {
  const int32_t id = FindPiece(piece);
  if (id >= 0) return id;
  for (const AddedToken& t : spec_.added_tokens) {
    if (t.content == piece) return t.id;
  }
  for (int32_t i = 0; i < vocab_size(); ++i) {
    if (is_special_[i] && spec_.pieces[i] == piece) return i;
  }
  return std::nullopt;
}

absl::StatusOr<std::string_view> Tokenizer::IdToPiece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside [0, ", vocab_size(), ")"));
  }
  return std::string_view(spec_.pieces[id]);
}

bool Tokenizer::IsEos(int32_t id) const {
  return std::find(spec_.eos_ids.begin(), spec_.eos_ids.end(), id) != spec_.eos_ids.end();
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens,
                                      bool parse_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = spec_.prefix_ids;
  Scratch scratch;
  const AddedTokenMatcher& matcher = parse_special_tokens ? *added_ : *added_plain_;
  if (matcher.empty()) {
    EncodePlain(text, /*at_text_start=*/true, &scratch, &ids);
  } else {
    std::vector<AddedTokenMatcher::Segment> segments;
    matcher.Split(text, &segments);
    for (const AddedTokenMatcher::Segment& s : segments) {
      if (s.token_id >= 0) {
        ids.push_back(s.token_id);
      } else {
        EncodePlain(s.text, s.offset == 0, &scratch, &ids);
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), spec_.suffix_ids.begin(), spec_.suffix_ids.end());
  return ids;
}

void Tokenizer::EncodePlain(std::string_view text, bool at_text_start, Scratch* scratch,
                            std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  if (spec_.nfc && MayChangeUnderNfc(text)) {
    scratch->normalized.clear();
    AppendNfc(text, &scratch->normalized);
    text = scratch->normalized;
  }
  std::vector<std::string_view>& words = scratch->words;
  words.clear();
  if (spec_.model == TokenizerSpec::Model::kByteLevelBpe) {
    if (spec_.add_prefix_space && at_text_start && text[0] != ' ') {
      std::string& prefixed = scratch->text;
      prefixed.resize(text.size() + 1);
      prefixed[0] = ' ';
      std::copy(text.begin(), text.end(), prefixed.begin() + 1);
      text = prefixed;
    }
    if (spec_.split.has_value()) {
      SplitText(*spec_.split, text, &words);
    } else {
      words.push_back(text);
    }
    for (std::string_view w : words) EncodeByteLevelWord(w, scratch, ids);
    return;
  }

  // SentencePiece: optional whitespace cleanup, the U+2581 prefix, and
  // spaces as U+2581.
  std::string& s = scratch->text;
  s.clear();
  std::string_view src = text;
  std::string collapsed;
  if (spec_.remove_extra_whitespaces) {
    for (char c : src) {
      if (c == ' ' && (collapsed.empty() || collapsed.back() == ' ')) continue;
      collapsed.push_back(c);
    }
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
    src = collapsed;
    if (src.empty()) return;
  }
  if (spec_.prepend == PrependScheme::kAlways || (spec_.prepend == PrependScheme::kFirst && at_text_start)) {
    s.append(kSentencePieceSpace);
  }
  for (char c : src) {
    if (c == ' ') {
      s.append(kSentencePieceSpace);
    } else {
      s.push_back(c);
    }
  }
  std::string_view normalized = s;
  if (marker_split_ == MarkerSplit::kNone) {
    words.push_back(normalized);
  } else {
    size_t start = 0;
    size_t pos = 0;
    bool prev_marker = false;
    while (pos < normalized.size()) {
      if (StartsWithMarker(normalized, pos)) {
        if (pos > start && (marker_split_ == MarkerSplit::kBeforeEveryMarker || !prev_marker)) {
          words.push_back(normalized.substr(start, pos - start));
          start = pos;
        }
        prev_marker = true;
        pos += kSentencePieceSpace.size();
      } else {
        prev_marker = false;
        ++pos;
      }
    }
    words.push_back(normalized.substr(start));
  }
  for (std::string_view w : words) EncodeCharWord(w, scratch, ids);
}

void Tokenizer::EncodeByteLevelWord(std::string_view word, Scratch* scratch, std::vector<int32_t>* ids) const {
  if (spec_.ignore_merges) {
    std::string& mapped = scratch->word;
    mapped.clear();
    for (char c : word) mapped.append(byte_level_char_[static_cast<unsigned char>(c)]);
    const int32_t id = FindPiece(mapped);
    if (id >= 0) {
      ids->push_back(id);
      return;
    }
  }
  std::vector<int32_t>& symbols = scratch->symbols;
  symbols.clear();
  for (char c : word) symbols.push_back(byte_level_id_[static_cast<unsigned char>(c)]);
  merges_->Apply(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

void Tokenizer::EncodeCharWord(std::string_view word, Scratch* scratch, std::vector<int32_t>* ids) const {
  std::vector<int32_t>& symbols = scratch->symbols;
  symbols.clear();
  bool prev_unknown = false;
  size_t pos = 0;
  while (pos < word.size()) {
    const int length = DecodeUtf8(word, pos).length;
    const int32_t id = FindPiece(word.substr(pos, length));
    if (id >= 0) {
      symbols.push_back(id);
      prev_unknown = false;
    } else if (spec_.byte_fallback) {
      for (int k = 0; k < length; ++k) {
        const int32_t byte_id = byte_piece_id_[static_cast<unsigned char>(word[pos + k])];
        if (byte_id >= 0) {
          symbols.push_back(byte_id);
        } else if (spec_.unk_id >= 0) {
          symbols.push_back(spec_.unk_id);
        }
      }
    } else if (spec_.unk_id >= 0) {
      if (!(spec_.fuse_unk && prev_unknown)) symbols.push_back(spec_.unk_id);
      prev_unknown = true;
    }
    pos += length;
  }
  merges_->Apply(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

void Tokenizer::AppendTokenBytes(int32_t id, bool skip_special_tokens, bool* at_start, std::string* bytes) const {
  if (skip_special_tokens && is_special_[id]) return;
  std::string_view b = decoded_[id];
  if (b.empty()) return;
  if (*at_start) {
    *at_start = false;
    if (spec_.strip_leading_space && !is_special_[id] && b[0] == ' ') b.remove_prefix(1);
  }
  bytes->append(b);
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  bool at_start = true;
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside [0, ", vocab_size(), ")"));
    }
    AppendTokenBytes(id, skip_special_tokens, &at_start, &bytes);
  }
  std::string text;
  text.reserve(bytes.size());
  AppendUtf8Lossy(bytes, /*at_end=*/true, &text);
  return text;
}

}  // namespace tern::runtime
