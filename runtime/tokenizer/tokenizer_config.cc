#include "runtime/tokenizer/tokenizer_config.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

absl::Status Invalid(const char* file, const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", field, ": ", why));
}

constexpr char kConfig[] = "tokenizer_config.json";
constexpr char kGeneration[] = "generation_config.json";

// The id of token text `content`: an added token first, then the vocab.
int32_t FindToken(const TokenizerSpec& spec, const std::string& content) {
  for (const AddedToken& t : spec.added_tokens) {
    if (t.content == content) return t.id;
  }
  for (size_t i = 0; i < spec.pieces.size(); ++i) {
    if (spec.pieces[i] == content) return static_cast<int32_t>(i);
  }
  return -1;
}

absl::Status AddDeclaredTokens(const json& decoder, TokenizerSpec* spec) {
  if (decoder.is_null()) return absl::OkStatus();
  if (!decoder.is_object()) return Invalid(kConfig, "added_tokens_decoder", "is not an object");
  for (const auto& [key, value] : decoder.items()) {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || id < 0 || id >= kMaxVocabularySize) {
      return Invalid(kConfig, "added_tokens_decoder", absl::StrCat("key \"", key, "\" is not a token id"));
    }
    if (!value.is_object() || !value.contains("content") || !value["content"].is_string()) {
      return Invalid(kConfig, absl::StrCat("added_tokens_decoder.", key), "needs a string \"content\"");
    }
    const json& entry = value;  // clang 14 cannot capture a structured binding
    auto flag = [&entry](const char* name) {
      const auto it = entry.find(name);
      return it != entry.end() && it->is_boolean() && it->get<bool>();
    };
    const auto known = std::find_if(spec->added_tokens.begin(), spec->added_tokens.end(),
                                     [&](const AddedToken& t) { return t.id == id; });
    if (known != spec->added_tokens.end()) continue;  // tokenizer.json / tokenizer.model already say
    AddedToken token;
    token.id = static_cast<int32_t>(id);
    token.content = value["content"].get<std::string>();
    token.special = flag("special");
    token.lstrip = flag("lstrip");
    token.rstrip = flag("rstrip");
    token.single_word = flag("single_word");
    if (id < static_cast<int64_t>(spec->pieces.size())) {
      if (spec->pieces[id] != token.content) {
        return Invalid(kConfig, absl::StrCat("added_tokens_decoder.", key),
                       absl::StrCat("\"", token.content, "\" but the vocab has \"", spec->pieces[id], "\""));
      }
    } else {
      spec->pieces.resize(id + 1);
      spec->types.resize(id + 1, TokenType::kUnused);
      spec->pieces[id] = token.content;
    }
    spec->types[id] = token.special ? TokenType::kControl : TokenType::kUserDefined;
    spec->added_tokens.push_back(std::move(token));
  }
  return absl::OkStatus();
}

// bos_token / eos_token: a string, {"content": ...}, or null. Sets *id to
// -1 when absent.
absl::Status TokenField(const json& doc, const char* field, const TokenizerSpec& spec, bool* present,
                        int32_t* id) {
  *present = false;
  const auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) return absl::OkStatus();
  std::string content;
  if (it->is_string()) {
    content = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    content = (*it)["content"].get<std::string>();
  } else {
    return Invalid(kConfig, field, "is neither a string nor {\"content\": ...}");
  }
  *id = FindToken(spec, content);
  if (*id < 0) return Invalid(kConfig, field, absl::StrCat("\"", content, "\" is not in the vocabulary"));
  *present = true;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<bool>> OptionalBool(const json& doc, const char* field) {
  const auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) return Invalid(kConfig, field, "is not a boolean");
  return std::optional<bool>(it->get<bool>());
}

absl::Status Apply(const json& doc, TokenizerSpec* spec) {
  if (!doc.is_object()) return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
  if (doc.contains("added_tokens_decoder")) RETURN_IF_ERROR(AddDeclaredTokens(doc["added_tokens_decoder"], spec));
  bool has_bos = false, has_eos = false;
  int32_t bos = -1, eos = -1;
  RETURN_IF_ERROR(TokenField(doc, "bos_token", *spec, &has_bos, &bos));
  RETURN_IF_ERROR(TokenField(doc, "eos_token", *spec, &has_eos, &eos));
  if (has_bos) spec->bos_id = bos;
  if (has_eos) spec->eos_ids = {eos};
  ASSIGN_OR_RETURN(const std::optional<bool> add_bos, OptionalBool(doc, "add_bos_token"));
  ASSIGN_OR_RETURN(const std::optional<bool> add_eos, OptionalBool(doc, "add_eos_token"));
  if (add_bos.has_value()) {
    if (*add_bos && spec->bos_id < 0) return Invalid(kConfig, "add_bos_token", "is true but there is no bos_token");
    spec->prefix_ids.clear();
    if (*add_bos) spec->prefix_ids.push_back(spec->bos_id);
  }
  if (add_eos.has_value()) {
    if (*add_eos && spec->eos_ids.empty()) {
      return Invalid(kConfig, "add_eos_token", "is true but there is no eos_token");
    }
    spec->suffix_ids.clear();
    if (*add_eos) spec->suffix_ids.push_back(spec->eos_ids.front());
  }
  return absl::OkStatus();
}

absl::Status CheckId(const json& id, const TokenizerSpec& spec, const char* field) {
  if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
      id.get<int64_t>() >= static_cast<int64_t>(spec.pieces.size())) {
    return Invalid(kGeneration, field, "is not a token id in the vocabulary");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyTokenizerConfig(const std::string& json_text, TokenizerSpec* spec) {
  const json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("tokenizer_config.json: not valid JSON");
  try {
    return Apply(doc, spec);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: unexpected structure: ", e.what()));
  }
}

absl::Status ApplyGenerationConfig(const std::string& json_text, TokenizerSpec* spec) {
  const json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("generation_config.json: not valid JSON");
  if (!doc.is_object()) return absl::InvalidArgumentError("generation_config.json: not a JSON object");
  const auto eos = doc.find("eos_token_id");
  if (eos != doc.end() && !eos->is_null()) {
    std::vector<json> ids = eos->is_array() ? eos->get<std::vector<json>>() : std::vector<json>{*eos};
    for (const json& id : ids) {
      RETURN_IF_ERROR(CheckId(id, *spec, "eos_token_id"));
      const auto value = static_cast<int32_t>(id.get<int64_t>());
      if (std::find(spec->eos_ids.begin(), spec->eos_ids.end(), value) == spec->eos_ids.end()) {
        spec->eos_ids.push_back(value);
      }
    }
  }
  const auto bos = doc.find("bos_token_id");
  if (bos != doc.end() && !bos->is_null() && spec->bos_id < 0) {
    RETURN_IF_ERROR(CheckId(*bos, *spec, "bos_token_id"));
    spec->bos_id = static_cast<int32_t>(bos->get<int64_t>());
  }
  return absl::OkStatus();
}

}  // namespace tern::runtime
