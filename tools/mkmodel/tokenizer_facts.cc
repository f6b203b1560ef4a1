#include "tools/mkmodel/tokenizer_facts.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tern::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool ReadVarint(const std::string& bytes, size_t* pos, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && *pos < bytes.size(); shift += 7) {
    const uint8_t b = static_cast<uint8_t>(bytes[(*pos)++]);
    *value |= uint64_t(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// The piece strings of a SentencePiece ModelProto: field 1 (pieces), each a
// message whose field 1 is the piece string.
absl::StatusOr<std::vector<std::string>> SentencePiecePieces(const std::string& bytes) {
  std::vector<std::string> pieces;
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint64_t key = 0, len = 0;
    if (!ReadVarint(bytes, &pos, &key)) return absl::InvalidArgumentError("tokenizer.model: bad varint");
    const int wire = key & 7;
    if (wire == 0) {
      if (!ReadVarint(bytes, &pos, &len)) return absl::InvalidArgumentError("tokenizer.model: bad varint");
      continue;
    }
    if (wire == 1 || wire == 5) {
      pos += wire == 1 ? 8 : 4;
      continue;
    }
    if (wire != 2 || !ReadVarint(bytes, &pos, &len) || len > bytes.size() - pos) {
      return absl::InvalidArgumentError("tokenizer.model: not a SentencePiece model");
    }
    if ((key >> 3) == 1) {
      const std::string piece_msg = bytes.substr(pos, len);
      size_t p = 0;
      std::string piece;
      while (p < piece_msg.size()) {
        uint64_t k = 0, l = 0;
        if (!ReadVarint(piece_msg, &p, &k)) break;
        if ((k & 7) == 2) {
          if (!ReadVarint(piece_msg, &p, &l) || l > piece_msg.size() - p) break;
          if ((k >> 3) == 1) piece = piece_msg.substr(p, l);
          p += l;
        } else if ((k & 7) == 0) {
          ReadVarint(piece_msg, &p, &l);
        } else {
          p += (k & 7) == 1 ? 8 : 4;
        }
      }
      pieces.push_back(piece);
    }
    pos += len;
  }
  if (pieces.empty()) return absl::InvalidArgumentError("tokenizer.model: no pieces");
  return pieces;
}

std::string TokenString(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value["content"].get<std::string>();
  return {};
}

}  // namespace

absl::StatusOr<TokenizerFacts> ReadTokenizerFacts(const std::string& dir) {
  TokenizerFacts facts;
  std::map<std::string, int64_t> ids;
  const fs::path root(dir);
  std::error_code ec;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                           "special_tokens_map.json"}) {
    if (fs::exists(root / name, ec)) facts.files.push_back(name);
  }
  if (fs::exists(root / "tokenizer.json", ec)) {
    const json doc = json::parse(ReadAll(root / "tokenizer.json"), nullptr, false);
    if (doc.is_discarded() || !doc.contains("model") || !doc["model"].contains("vocab")) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/tokenizer.json: no model.vocab"));
    }
    for (const auto& [piece, id] : doc["model"]["vocab"].items()) ids[piece] = id.get<int64_t>();
    if (doc.contains("added_tokens")) {
      for (const auto& token : doc["added_tokens"]) ids[token["content"].get<std::string>()] = token["id"].get<int64_t>();
    }
  } else if (fs::exists(root / "tokenizer.model", ec)) {
    auto pieces = SentencePiecePieces(ReadAll(root / "tokenizer.model"));
    if (!pieces.ok()) return pieces.status();
    for (size_t i = 0; i < pieces->size(); ++i) ids.emplace((*pieces)[i], static_cast<int64_t>(i));
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": no tokenizer.json or tokenizer.model"));
  }
  for (const auto& [piece, id] : ids) facts.vocab_size = std::max(facts.vocab_size, id + 1);

  if (fs::exists(root / "tokenizer_config.json", ec)) {
    const json config = json::parse(ReadAll(root / "tokenizer_config.json"), nullptr, false);
    if (!config.is_discarded() && config.is_object()) {
      if (config.contains("added_tokens_decoder")) {
        for (const auto& [id, token] : config["added_tokens_decoder"].items()) {
          ids[TokenString(token)] = std::stoll(id);
          facts.vocab_size = std::max<int64_t>(facts.vocab_size, std::stoll(id) + 1);
        }
      }
      const auto lookup = [&](const char* key) -> int64_t {
        if (!config.contains(key)) return -1;
        const auto it = ids.find(TokenString(config[key]));
        return it == ids.end() ? -1 : it->second;
      };
      facts.bos_id = lookup("bos_token");
      facts.eos_id = lookup("eos_token");
    }
  }
  if (facts.bos_id < 0 && ids.count("<s>")) facts.bos_id = ids["<s>"];
  if (facts.eos_id < 0 && ids.count("</s>")) facts.eos_id = ids["</s>"];
  return facts;
}

}  // namespace tern::tools
