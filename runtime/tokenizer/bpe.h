// The byte-pair-encoding merge loop shared by the byte-level (GPT-2 /
// Llama-3) and SentencePiece (Llama-2) tokenizers. A merge table maps an
// adjacent pair of token ids to the merged id and a rank; merging applies
// the lowest rank first and, among equal ranks, the leftmost pair — the
// order of Hugging Face's BPE (rank = merge index) and of SentencePiece's
// BPE (rank = order of the merged piece's score, highest score first).
// Immutable after construction; const methods are thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace tern::runtime {

class BpeMerges {
 public:
  struct Merge {
    int32_t left;
    int32_t right;
    int32_t merged;
    int32_t rank;  // lower merges first; equal ranks merge leftmost first
  };

  // `unused[id]` marks SentencePiece UNUSED pieces: a merge may produce one,
  // but it is split back into the pieces it was merged from at the end
  // (SentencePiece's "resegment"). May be empty (no unused pieces).
  // When two merges share a pair the first one wins.
  BpeMerges(const std::vector<Merge>& merges, std::vector<bool> unused);

  // Merges the symbol ids in `ids` (one word, in text order) in place.
  void Apply(std::vector<int32_t>* ids) const;

  size_t size() const { return table_.size(); }

 private:
  struct Value {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const Value* Find(int32_t left, int32_t right) const;
  bool IsUnused(int32_t id) const {
    return has_unused_ && id >= 0 && id < static_cast<int32_t>(unused_.size()) && unused_[id];
  }
  void Resegment(int32_t id, const absl::flat_hash_map<int32_t, std::pair<int32_t, int32_t>>& children,
                 std::vector<int32_t>* out) const;

  absl::flat_hash_map<uint64_t, Value> table_;
  std::vector<bool> unused_;
  bool has_unused_ = false;
};

}  // namespace tern::runtime
