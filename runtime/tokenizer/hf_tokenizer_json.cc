#include "runtime/tokenizer/hf_tokenizer_json.h"

#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/tokenizer/unicode.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", field, ": ", why));
}

absl::Status Unsupported(const std::string& field, const std::string& what) {
  return absl::UnimplementedError(absl::StrCat("tokenizer.json: ", field, ": ", what,
                                               " is not supported by tern's tokenizer"));
}

// Field accessors that never throw: absent or null gives the fallback,
// a present value of the wrong type is an error.
absl::StatusOr<bool> GetBool(const json& obj, const char* key, bool fallback, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Invalid(absl::StrCat(where, ".", key), "is not a boolean");
  return it->get<bool>();
}

absl::StatusOr<std::string> GetString(const json& obj, const char* key, const std::string& fallback,
                                      const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) return Invalid(absl::StrCat(where, ".", key), "is not a string");
  return it->get<std::string>();
}

std::string TypeOf(const json& obj) {
  const auto it = obj.find("type");
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Components of a Sequence (normalizers / pretokenizers / decoders /
// processors), or the component itself.
std::vector<const json*> Flatten(const json& component, const char* list_key) {
  std::vector<const json*> out;
  if (component.is_object() && TypeOf(component) == "Sequence") {
    const auto it = component.find(list_key);
    if (it != component.end() && it->is_array()) {
      for (const json& c : *it) out.push_back(&c);
    }
  } else if (component.is_object()) {
    out.push_back(&component);
  }
  return out;
}

// Replace{pattern: {String: from}, content: to} matching exactly from -> to.
bool IsReplace(const json& c, std::string_view from, std::string_view to) {
  if (TypeOf(c) != "Replace") return false;
  const auto pattern = c.find("pattern");
  const auto content = c.find("content");
  if (pattern == c.end() || !pattern->is_object() || content == c.end() || !content->is_string()) {
    return false;
  }
  const auto str = pattern->find("String");
  return str != pattern->end() && str->is_string() && str->get<std::string>() == from &&
         content->get<std::string>() == to;
}

absl::StatusOr<PrependScheme> ParseMetaspace(const json& c, const std::string& where) {
  ASSIGN_OR_RETURN(const std::string replacement,
                   GetString(c, "replacement", std::string(kSentencePieceSpace), where));
  if (replacement != kSentencePieceSpace) {
    return Unsupported(where, absl::StrCat("Metaspace replacement \"", replacement, "\""));
  }
  if (c.contains("prepend_scheme") && c["prepend_scheme"].is_string()) {
    const std::string scheme = c["prepend_scheme"].get<std::string>();
    if (scheme == "first") return PrependScheme::kFirst;
    if (scheme == "always") return PrependScheme::kAlways;
    if (scheme == "never") return PrependScheme::kNever;
    return Invalid(absl::StrCat(where, ".prepend_scheme"), absl::StrCat("unknown value \"", scheme, "\""));
  }
  ASSIGN_OR_RETURN(const bool add_prefix_space, GetBool(c, "add_prefix_space", true, where));
  return add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
}

absl::Status ParseNormalizer(const json& doc, TokenizerSpec* spec) {
  const auto it = doc.find("normalizer");
  if (it == doc.end() || it->is_null()) return absl::OkStatus();
  for (const json* c : Flatten(*it, "normalizers")) {
    const std::string type = TypeOf(*c);
    if (type == "Prepend") {
      ASSIGN_OR_RETURN(const std::string prepend, GetString(*c, "prepend", "", "normalizer"));
      if (prepend != kSentencePieceSpace) return Unsupported("normalizer", "Prepend of \"" + prepend + "\"");
      spec->prepend = PrependScheme::kAlways;
    } else if (IsReplace(*c, " ", kSentencePieceSpace)) {
      continue;  // spaces become U+2581 in every SentencePiece-style model
    } else if (type == "NFC") {
      spec->nfc = true;  // commutes with the space handling above: spaces never compose
    } else {
      return Unsupported("normalizer", absl::StrCat("normalizer \"", type, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const json& doc, TokenizerSpec* spec) {
  const auto it = doc.find("pre_tokenizer");
  if (it == doc.end() || it->is_null()) return absl::OkStatus();
  for (const json* c : Flatten(*it, "pretokenizers")) {
    const std::string type = TypeOf(*c);
    if (type == "ByteLevel") {
      ASSIGN_OR_RETURN(spec->add_prefix_space, GetBool(*c, "add_prefix_space", false, "pre_tokenizer"));
      ASSIGN_OR_RETURN(const bool use_regex, GetBool(*c, "use_regex", true, "pre_tokenizer"));
      if (use_regex) {
        if (spec->split.has_value()) return Unsupported("pre_tokenizer", "more than one split regex");
        spec->split = SplitPattern::kGpt2;
      }
    } else if (type == "Split") {
      const auto pattern = c->find("pattern");
      if (pattern == c->end() || !pattern->is_object() || !pattern->contains("Regex") ||
          !(*pattern)["Regex"].is_string()) {
        return Unsupported("pre_tokenizer.Split", "a pattern other than {\"Regex\": ...}");
      }
      ASSIGN_OR_RETURN(const std::string behavior, GetString(*c, "behavior", "", "pre_tokenizer.Split"));
      ASSIGN_OR_RETURN(const bool invert, GetBool(*c, "invert", false, "pre_tokenizer.Split"));
      if (behavior != "Isolated" || invert) {
        return Unsupported("pre_tokenizer.Split", "behavior \"" + behavior + "\" (or invert)");
      }
      if (spec->split.has_value()) return Unsupported("pre_tokenizer", "more than one split regex");
      ASSIGN_OR_RETURN(spec->split, SplitPatternFromRegex((*pattern)["Regex"].get<std::string>()));
    } else if (type == "Metaspace") {
      ASSIGN_OR_RETURN(spec->prepend, ParseMetaspace(*c, "pre_tokenizer"));
      ASSIGN_OR_RETURN(spec->split_on_space_marker, GetBool(*c, "split", true, "pre_tokenizer"));
    } else {
      return Unsupported("pre_tokenizer", absl::StrCat("pre-tokenizer \"", type, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseDecoder(const json& doc, TokenizerSpec* spec) {
  const auto it = doc.find("decoder");
  if (it == doc.end() || it->is_null()) return absl::OkStatus();
  for (const json* c : Flatten(*it, "decoders")) {
    const std::string type = TypeOf(*c);
    if (type == "ByteLevel" || type == "ByteFallback" || type == "Fuse" ||
        IsReplace(*c, kSentencePieceSpace, " ")) {
      continue;  // implied by the model kind
    }
    if (type == "Strip") {
      const auto content = c->find("content");
      const auto start = c->find("start");
      if (content == c->end() || !content->is_string() || content->get<std::string>() != " " ||
          start == c->end() || !start->is_number_integer() || start->get<int64_t>() != 1) {
        return Unsupported("decoder", "a Strip other than one leading space");
      }
      spec->strip_leading_space = true;
    } else if (type == "Metaspace") {
      ASSIGN_OR_RETURN(const PrependScheme scheme, ParseMetaspace(*c, "decoder"));
      spec->strip_leading_space = scheme != PrependScheme::kNever;
    } else {
      return Unsupported("decoder", absl::StrCat("decoder \"", type, "\""));
    }
  }
  return absl::OkStatus();
}

// Sets pieces/types from model.vocab and added_tokens.
absl::Status ParseVocab(const json& model, const json& doc, TokenizerSpec* spec) {
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object() || vocab->empty()) {
    return Invalid("model.vocab", "must be a non-empty object of token -> id");
  }
  int64_t size = 0;
  for (const auto& [piece, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocabularySize) {
      return Invalid("model.vocab", absl::StrCat("\"", piece, "\" has an invalid id (ids are integers in [0, ",
                                                 kMaxVocabularySize, "))"));
    }
    size = std::max(size, id.get<int64_t>() + 1);
  }
  const auto added = doc.find("added_tokens");
  if (added != doc.end() && !added->is_null() && !added->is_array()) {
    return Invalid("added_tokens", "is not a list");
  }
  if (added != doc.end() && added->is_array()) {
    for (const json& t : *added) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string() || t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() >= kMaxVocabularySize) {
        return Invalid("added_tokens", absl::StrCat("each entry needs an integer id in [0, ", kMaxVocabularySize,
                                                    ") and a string content"));
      }
      AddedToken token;
      token.id = static_cast<int32_t>(t["id"].get<int64_t>());
      token.content = t["content"].get<std::string>();
      ASSIGN_OR_RETURN(token.special, GetBool(t, "special", false, "added_tokens"));
      ASSIGN_OR_RETURN(token.single_word, GetBool(t, "single_word", false, "added_tokens"));
      ASSIGN_OR_RETURN(token.lstrip, GetBool(t, "lstrip", false, "added_tokens"));
      ASSIGN_OR_RETURN(token.rstrip, GetBool(t, "rstrip", false, "added_tokens"));
      size = std::max<int64_t>(size, token.id + 1);
      spec->added_tokens.push_back(std::move(token));
    }
  }
  spec->pieces.assign(size, std::string());
  spec->types.assign(size, TokenType::kUnused);
  for (const auto& [piece, id] : vocab->items()) {
    const int64_t i = id.get<int64_t>();
    spec->pieces[i] = piece;
    spec->types[i] = TokenType::kNormal;
  }
  return absl::OkStatus();
}

absl::Status ParseMerges(const json& model, TokenizerSpec* spec) {
  absl::flat_hash_map<std::string, int32_t> ids;
  ids.reserve(spec->pieces.size());
  for (size_t i = 0; i < spec->pieces.size(); ++i) {
    if (spec->types[i] == TokenType::kNormal) ids.emplace(spec->pieces[i], static_cast<int32_t>(i));
  }
  const auto merges = model.find("merges");
  if (merges == model.end() || merges->is_null()) return absl::OkStatus();
  if (!merges->is_array()) return Invalid("model.merges", "is not a list");
  spec->merges.reserve(merges->size());
  int32_t rank = 0;
  for (const json& m : *merges) {
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Invalid("model.merges", absl::StrCat("merge ", rank, " \"", s, "\" is not \"left right\""));
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return Invalid("model.merges", absl::StrCat("merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]"));
    }
    const auto l = ids.find(left);
    const auto r = ids.find(right);
    const auto merged = ids.find(left + right);
    if (l == ids.end() || r == ids.end() || merged == ids.end()) {
      return Invalid("model.merges",
                     absl::StrCat("merge ", rank, " (\"", left, "\", \"", right, "\") uses a token not in the vocab"));
    }
    spec->merges.push_back({l->second, r->second, merged->second, rank});
    ++rank;
  }
  return absl::OkStatus();
}

absl::Status ParseModel(const json& doc, TokenizerSpec* spec) {
  const auto model_it = doc.find("model");
  if (model_it == doc.end() || !model_it->is_object()) return Invalid("model", "is missing");
  const json& model = *model_it;
  const std::string type = TypeOf(model);
  // Older files omit "type" for BPE; a merges list identifies it.
  if (type != "BPE" && !(type.empty() && model.contains("merges"))) {
    return Unsupported("model.type", absl::StrCat("model \"", type, "\" (only BPE)"));
  }
  ASSIGN_OR_RETURN(const std::string prefix, GetString(model, "continuing_subword_prefix", "", "model"));
  ASSIGN_OR_RETURN(const std::string suffix, GetString(model, "end_of_word_suffix", "", "model"));
  if (!prefix.empty() || !suffix.empty()) {
    return Unsupported("model", "continuing_subword_prefix / end_of_word_suffix");
  }
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0)) {
    return Unsupported("model.dropout", "BPE dropout");
  }
  ASSIGN_OR_RETURN(spec->byte_fallback, GetBool(model, "byte_fallback", false, "model"));
  ASSIGN_OR_RETURN(spec->fuse_unk, GetBool(model, "fuse_unk", false, "model"));
  ASSIGN_OR_RETURN(spec->ignore_merges, GetBool(model, "ignore_merges", false, "model"));
  RETURN_IF_ERROR(ParseVocab(model, doc, spec));
  RETURN_IF_ERROR(ParseMerges(model, spec));
  ASSIGN_OR_RETURN(const std::string unk, GetString(model, "unk_token", "", "model"));
  if (!unk.empty()) {
    for (size_t i = 0; i < spec->pieces.size(); ++i) {
      if (spec->pieces[i] == unk && spec->types[i] == TokenType::kNormal) {
        spec->unk_id = static_cast<int32_t>(i);
        spec->types[i] = TokenType::kUnknown;
        break;
      }
    }
    if (spec->unk_id < 0) return Invalid("model.unk_token", "\"" + unk + "\" is not in the vocab");
  }
  if (spec->byte_fallback) {
    for (size_t i = 0; i < spec->pieces.size(); ++i) {
      const std::string& p = spec->pieces[i];
      if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' && spec->types[i] == TokenType::kNormal) {
        spec->types[i] = TokenType::kByte;
      }
    }
  }
  return absl::OkStatus();
}

// The ids of the special tokens around $A in a TemplateProcessing "single"
// template.
absl::Status ParsePostProcessor(const json& doc, TokenizerSpec* spec) {
  const auto it = doc.find("post_processor");
  if (it == doc.end() || it->is_null()) return absl::OkStatus();
  for (const json* c : Flatten(*it, "processors")) {
    const std::string type = TypeOf(*c);
    if (type == "ByteLevel") continue;  // offsets only
    if (type != "TemplateProcessing") {
      return Unsupported("post_processor", absl::StrCat("post-processor \"", type, "\""));
    }
    const auto single = c->find("single");
    const auto specials = c->find("special_tokens");
    if (single == c->end() || !single->is_array() || specials == c->end() || !specials->is_object()) {
      return Invalid("post_processor", "TemplateProcessing needs \"single\" and \"special_tokens\"");
    }
    bool after_sequence = false;
    for (const json& item : *single) {
      if (item.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const auto special = item.find("SpecialToken");
      if (special == item.end() || !special->is_object() || !special->contains("id") ||
          !(*special)["id"].is_string()) {
        return Invalid("post_processor.single", "items must be Sequence or SpecialToken");
      }
      const std::string name = (*special)["id"].get<std::string>();
      const auto entry = specials->find(name);
      if (entry == specials->end() || !entry->is_object() || !entry->contains("ids") ||
          !(*entry)["ids"].is_array()) {
        return Invalid("post_processor.special_tokens", "\"" + name + "\" has no ids");
      }
      for (const json& id : (*entry)["ids"]) {
        if (!id.is_number_integer()) return Invalid("post_processor.special_tokens", "ids must be integers");
        (after_sequence ? spec->suffix_ids : spec->prefix_ids).push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenizerSpec> ParseDocument(const json& doc) {
  if (!doc.is_object()) return absl::InvalidArgumentError("tokenizer.json: not a JSON object");
  TokenizerSpec spec;
  // A ByteLevel pre-tokenizer or decoder makes the model byte-level;
  // otherwise it is SentencePiece-style.
  bool byte_level = false;
  for (const char* key : {"pre_tokenizer", "decoder"}) {
    const auto it = doc.find(key);
    if (it == doc.end()) continue;
    for (const json* c : Flatten(*it, key == std::string("decoder") ? "decoders" : "pretokenizers")) {
      if (TypeOf(*c) == "ByteLevel") byte_level = true;
    }
  }
  RETURN_IF_ERROR(ParseModel(doc, &spec));
  RETURN_IF_ERROR(ParseNormalizer(doc, &spec));
  RETURN_IF_ERROR(ParsePreTokenizer(doc, &spec));
  RETURN_IF_ERROR(ParseDecoder(doc, &spec));
  RETURN_IF_ERROR(ParsePostProcessor(doc, &spec));
  spec.model = byte_level ? TokenizerSpec::Model::kByteLevelBpe : TokenizerSpec::Model::kSentencePieceBpe;
  if (!byte_level) {
    // SentencePiece-style means spaces become U+2581 (Replace or Metaspace).
    bool escapes_spaces = false;
    const json normalizer = doc.value("normalizer", json());
    const json pre_tokenizer = doc.value("pre_tokenizer", json());
    for (const json* c : Flatten(normalizer, "normalizers")) {
      escapes_spaces |= IsReplace(*c, " ", kSentencePieceSpace);
    }
    for (const json* c : Flatten(pre_tokenizer, "pretokenizers")) {
      escapes_spaces |= TypeOf(*c) == "Metaspace";
    }
    if (!escapes_spaces) {
      return Unsupported("model", "a BPE model with neither ByteLevel nor SentencePiece (U+2581) space handling");
    }
  }
  if (byte_level && spec.prepend != PrependScheme::kNever) {
    return Unsupported("normalizer", "mixing ByteLevel with SentencePiece space handling");
  }
  for (const AddedToken& t : spec.added_tokens) {
    if (spec.types[t.id] == TokenType::kNormal && spec.pieces[t.id] != t.content) {
      return Invalid("added_tokens", absl::StrCat("id ", t.id, " is \"", spec.pieces[t.id],
                                                  "\" in the vocab but \"", t.content, "\" here"));
    }
    spec.pieces[t.id] = t.content;
    if (spec.types[t.id] != TokenType::kUnknown) {
      spec.types[t.id] = t.special ? TokenType::kControl : TokenType::kUserDefined;
    }
  }
  return spec;
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseHfTokenizerJson(const std::string& json_text) {
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("tokenizer.json: not valid JSON");
  // The accessors above check types before every get<>(); this guard keeps
  // a missed case an error instead of an exception leaving the module.
  try {
    return ParseDocument(doc);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: unexpected structure: ", e.what()));
  }
}

}  // namespace tern::runtime
