#include "runtime/tokenizer/bpe.h"

#include <algorithm>
#include <queue>
#include <utility>

namespace tern::runtime {
namespace {

// A candidate merge of the symbol at `left_pos` with its right neighbour.
// Entries go stale when either symbol changes; they are checked on pop
// (a symbol's id only changes by growing, so a changed id never repeats).
struct Candidate {
  int32_t rank;
  int32_t left_pos;
  int32_t left_id;
  int32_t right_id;
  int32_t merged;
};

struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left_pos > b.left_pos;
  }
};

}  // namespace

BpeMerges::BpeMerges(const std::vector<Merge>& merges, std::vector<bool> unused)
    : unused_(std::move(unused)) {
  table_.reserve(merges.size());
  for (const Merge& m : merges) table_.try_emplace(Key(m.left, m.right), Value{m.rank, m.merged});
  has_unused_ = std::find(unused_.begin(), unused_.end(), true) != unused_.end();
}

const BpeMerges::Value* BpeMerges::Find(int32_t left, int32_t right) const {
  if (left < 0 || right < 0) return nullptr;
  const auto it = table_.find(Key(left, right));
  return it == table_.end() ? nullptr : &it->second;
}

void BpeMerges::Apply(std::vector<int32_t>* ids) const {
  std::vector<int32_t>& sym = *ids;
  const int32_t n = static_cast<int32_t>(sym.size());
  if (n < 2) return;
  if (n == 2 && !has_unused_) {
    // A common case; skip the queue.
    if (const Value* v = Find(sym[0], sym[1])) sym = {v->merged};
    return;
  }
  // Doubly linked list over positions; merged-away positions are dead.
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  std::vector<Candidate> heap_storage;
  heap_storage.reserve(n);
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateAfter> queue(
      CandidateAfter(), std::move(heap_storage));
  auto push = [&](int32_t left_pos) {
    const int32_t right_pos = next[left_pos];
    if (right_pos < 0) return;
    if (const Value* v = Find(sym[left_pos], sym[right_pos])) {
      queue.push({v->rank, left_pos, sym[left_pos], sym[right_pos], v->merged});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);

  absl::flat_hash_map<int32_t, std::pair<int32_t, int32_t>> children;
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int32_t right_pos = next[c.left_pos];
    if (sym[c.left_pos] != c.left_id || right_pos < 0 || sym[right_pos] != c.right_id) continue;
    if (IsUnused(c.merged)) children[c.merged] = {c.left_id, c.right_id};
    sym[c.left_pos] = c.merged;
    sym[right_pos] = -1;
    next[c.left_pos] = next[right_pos];
    if (next[right_pos] >= 0) prev[next[right_pos]] = c.left_pos;
    if (prev[c.left_pos] >= 0) push(prev[c.left_pos]);
    push(c.left_pos);
  }

  std::vector<int32_t> out;
  out.reserve(n);
  for (int32_t i = 0; i >= 0; i = next[i]) {
    if (has_unused_) {
      Resegment(sym[i], children, &out);
    } else {
      out.push_back(sym[i]);
    }
  }
  sym = std::move(out);
}

void BpeMerges::Resegment(int32_t id,
                          const absl::flat_hash_map<int32_t, std::pair<int32_t, int32_t>>& children,
                          std::vector<int32_t>* out) const {
  if (IsUnused(id)) {
    const auto it = children.find(id);
    if (it != children.end()) {
      Resegment(it->second.first, children, out);
      Resegment(it->second.second, children, out);
      return;
    }
  }
  out->push_back(id);
}

}  // namespace tern::runtime
