#include "runtime/tokenizer/sentencepiece_model.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/tokenizer/string_view_compat.h"
#include "runtime/tokenizer/unicode.h"

namespace tern::runtime {
namespace {

absl::Status Malformed(const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.model: malformed protobuf: ", why));
}

// One field of a protobuf message in wire format.
struct WireField {
  uint32_t number = 0;
  int wire_type = 0;        // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  uint64_t varint = 0;      // wire type 0
  uint32_t fixed32 = 0;     // wire type 5
  std::string_view bytes;   // wire type 2
};

// Reads the fields of one message in order. Groups (wire types 3, 4) are
// rejected: sentencepiece.proto has none.
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }

  absl::StatusOr<WireField> Next() {
    WireField f;
    ASSIGN_OR_RETURN(const uint64_t tag, ReadVarint());
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire_type = static_cast<int>(tag & 7);
    if (f.number == 0) return Malformed("field number 0");
    switch (f.wire_type) {
      case 0: {
        ASSIGN_OR_RETURN(f.varint, ReadVarint());
        break;
      }
      case 1:
        if (data_.size() - pos_ < 8) return Malformed("truncated fixed64");
        pos_ += 8;
        break;
      case 2: {
        ASSIGN_OR_RETURN(const uint64_t length, ReadVarint());
        if (length > data_.size() - pos_) return Malformed("length-delimited field runs past the end");
        f.bytes = data_.substr(pos_, length);
        pos_ += length;
        break;
      }
      case 5:
        if (data_.size() - pos_ < 4) return Malformed("truncated fixed32");
        std::memcpy(&f.fixed32, data_.data() + pos_, 4);  // little-endian hosts only
        pos_ += 4;
        break;
      default:
        return Malformed(absl::StrCat("unsupported wire type ", f.wire_type, " (field ", f.number, ")"));
    }
    return f;
  }

 private:
  absl::StatusOr<uint64_t> ReadVarint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return Malformed("truncated varint");
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    return Malformed("varint longer than 10 bytes");
  }

  std::string_view data_;
  size_t pos_ = 0;
};

absl::Status ExpectWireType(const WireField& f, int wire_type, const char* name) {
  if (f.wire_type == wire_type) return absl::OkStatus();
  return Malformed(absl::StrCat(name, " (field ", f.number, ") has wire type ", f.wire_type,
                                ", expected ", wire_type));
}

struct Piece {
  std::string text;
  float score = 0;
  int type = 1;  // NORMAL
};

struct TrainerSpec {
  int model_type = 1;  // UNIGRAM, the proto default
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  int32_t unk_id = 0;
  int32_t bos_id = 1;
  int32_t eos_id = 2;
};

struct NormalizerSpec {
  std::string name;
  bool has_charsmap = false;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

absl::StatusOr<Piece> ParsePiece(std::string_view data) {
  Piece p;
  WireReader r(data);
  while (!r.done()) {
    ASSIGN_OR_RETURN(const WireField f, r.Next());
    if (f.number == 1) {
      RETURN_IF_ERROR(ExpectWireType(f, 2, "SentencePiece.piece"));
      p.text = std::string(f.bytes);
    } else if (f.number == 2) {
      RETURN_IF_ERROR(ExpectWireType(f, 5, "SentencePiece.score"));
      std::memcpy(&p.score, &f.fixed32, 4);
    } else if (f.number == 3) {
      RETURN_IF_ERROR(ExpectWireType(f, 0, "SentencePiece.type"));
      p.type = static_cast<int>(f.varint);
    }
  }
  return p;
}

absl::StatusOr<TrainerSpec> ParseTrainerSpec(std::string_view data) {
  TrainerSpec t;
  WireReader r(data);
  while (!r.done()) {
    ASSIGN_OR_RETURN(const WireField f, r.Next());
    // int32 fields use two's-complement 64-bit varints for negatives.
    const auto as_int32 = static_cast<int32_t>(static_cast<int64_t>(f.varint));
    switch (f.number) {
      case 3:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "TrainerSpec.model_type"));
        t.model_type = as_int32;
        break;
      case 24:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "TrainerSpec.treat_whitespace_as_suffix"));
        t.treat_whitespace_as_suffix = f.varint != 0;
        break;
      case 35:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "TrainerSpec.byte_fallback"));
        t.byte_fallback = f.varint != 0;
        break;
      case 40:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "TrainerSpec.unk_id"));
        t.unk_id = as_int32;
        break;
      case 41:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "TrainerSpec.bos_id"));
        t.bos_id = as_int32;
        break;
      case 42:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "TrainerSpec.eos_id"));
        t.eos_id = as_int32;
        break;
      default:
        break;
    }
  }
  return t;
}

absl::StatusOr<NormalizerSpec> ParseNormalizerSpec(std::string_view data) {
  NormalizerSpec n;
  WireReader r(data);
  while (!r.done()) {
    ASSIGN_OR_RETURN(const WireField f, r.Next());
    switch (f.number) {
      case 1:
        RETURN_IF_ERROR(ExpectWireType(f, 2, "NormalizerSpec.name"));
        n.name = std::string(f.bytes);
        break;
      case 2:
        RETURN_IF_ERROR(ExpectWireType(f, 2, "NormalizerSpec.precompiled_charsmap"));
        n.has_charsmap = !f.bytes.empty();
        break;
      case 3:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "NormalizerSpec.add_dummy_prefix"));
        n.add_dummy_prefix = f.varint != 0;
        break;
      case 4:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "NormalizerSpec.remove_extra_whitespaces"));
        n.remove_extra_whitespaces = f.varint != 0;
        break;
      case 5:
        RETURN_IF_ERROR(ExpectWireType(f, 0, "NormalizerSpec.escape_whitespaces"));
        n.escape_whitespaces = f.varint != 0;
        break;
      default:
        break;
    }
  }
  return n;
}

// Every split of a mergeable piece into two pieces that SentencePiece's BPE
// could hold as adjacent symbols becomes a merge; its rank orders the
// merged piece's score from highest (rank 0) down, equal scores sharing a
// rank so that ties go to the leftmost pair as in SentencePiece.
std::vector<BpeMerges::Merge> MergesFromScores(const std::vector<Piece>& pieces) {
  auto mergeable = [](int type) { return type == 1 || type == 4 || type == 5; };
  absl::flat_hash_map<std::string, int32_t> ids;
  ids.reserve(pieces.size());
  std::vector<float> scores;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!mergeable(pieces[i].type)) continue;
    ids.emplace(pieces[i].text, static_cast<int32_t>(i));
    scores.push_back(pieces[i].score);
  }
  std::sort(scores.begin(), scores.end(), std::greater<float>());
  scores.erase(std::unique(scores.begin(), scores.end()), scores.end());
  std::vector<BpeMerges::Merge> merges;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    if (!mergeable(p.type)) continue;
    const auto rank = static_cast<int32_t>(
        std::lower_bound(scores.begin(), scores.end(), p.score, std::greater<float>()) - scores.begin());
    size_t split = DecodeUtf8(p.text, 0).length;
    while (split < p.text.size()) {
      const auto left = ids.find(ToAbslView(std::string_view(p.text).substr(0, split)));
      const auto right = ids.find(ToAbslView(std::string_view(p.text).substr(split)));
      if (left != ids.end() && right != ids.end()) {
        merges.push_back({left->second, right->second, static_cast<int32_t>(i), rank});
      }
      split += DecodeUtf8(p.text, split).length;
    }
  }
  return merges;
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseSentencePieceModel(std::string_view bytes) {
  std::vector<Piece> pieces;
  TrainerSpec trainer;
  NormalizerSpec normalizer;
  WireReader r(bytes);
  while (!r.done()) {
    ASSIGN_OR_RETURN(const WireField f, r.Next());
    if (f.number == 1) {
      RETURN_IF_ERROR(ExpectWireType(f, 2, "ModelProto.pieces"));
      ASSIGN_OR_RETURN(Piece p, ParsePiece(f.bytes));
      pieces.push_back(std::move(p));
    } else if (f.number == 2) {
      RETURN_IF_ERROR(ExpectWireType(f, 2, "ModelProto.trainer_spec"));
      ASSIGN_OR_RETURN(trainer, ParseTrainerSpec(f.bytes));
    } else if (f.number == 3) {
      RETURN_IF_ERROR(ExpectWireType(f, 2, "ModelProto.normalizer_spec"));
      ASSIGN_OR_RETURN(normalizer, ParseNormalizerSpec(f.bytes));
    }
  }
  if (pieces.empty()) return absl::InvalidArgumentError("tokenizer.model: no pieces (not a SentencePiece model?)");
  if (trainer.model_type != 2) {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer.model: model_type ", trainer.model_type,
        " is not supported (tern implements SentencePiece BPE, model_type 2; 1 is Unigram)"));
  }
  if (normalizer.has_charsmap) {
    return absl::UnimplementedError(absl::StrCat("tokenizer.model: normalizer \"", normalizer.name,
                                                 "\" with a precompiled character map is not supported"));
  }
  if (!normalizer.escape_whitespaces || trainer.treat_whitespace_as_suffix) {
    return absl::UnimplementedError(
        "tokenizer.model: escape_whitespaces=false or treat_whitespace_as_suffix=true is not supported");
  }

  TokenizerSpec spec;
  spec.model = TokenizerSpec::Model::kSentencePieceBpe;
  const auto size = static_cast<int32_t>(pieces.size());
  for (int32_t i = 0; i < size; ++i) {
    const Piece& p = pieces[i];
    if (p.type < 1 || p.type > 6) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.model: piece ", i, " has unknown type ", p.type));
    }
    if (p.text.empty()) return absl::InvalidArgumentError(absl::StrCat("tokenizer.model: piece ", i, " is empty"));
    const auto type = static_cast<TokenType>(p.type);
    if (type == TokenType::kControl || type == TokenType::kUnknown || type == TokenType::kUserDefined) {
      AddedToken token;
      token.id = i;
      token.content = p.text;
      token.special = type != TokenType::kUserDefined;
      spec.added_tokens.push_back(std::move(token));
    }
    spec.pieces.push_back(p.text);
    spec.types.push_back(type);
  }
  spec.merges = MergesFromScores(pieces);
  spec.byte_fallback = trainer.byte_fallback;
  spec.fuse_unk = true;
  if (trainer.unk_id >= 0 && trainer.unk_id < size) spec.unk_id = trainer.unk_id;
  spec.prepend = normalizer.add_dummy_prefix ? PrependScheme::kFirst : PrependScheme::kNever;
  spec.strip_leading_space = normalizer.add_dummy_prefix;
  spec.remove_extra_whitespaces = normalizer.remove_extra_whitespaces;
  if (trainer.bos_id >= 0 && trainer.bos_id < size) {
    spec.bos_id = trainer.bos_id;
    spec.prefix_ids = {trainer.bos_id};
  }
  if (trainer.eos_id >= 0 && trainer.eos_id < size) spec.eos_ids = {trainer.eos_id};
  return spec;
}

}  // namespace tern::runtime
