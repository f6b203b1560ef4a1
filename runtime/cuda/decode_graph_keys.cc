#include "runtime/cuda/decode_graph_keys.h"

#include <algorithm>

namespace tern::runtime {

int32_t GraphBatchBucket(int32_t num_seqs) {
  if (num_seqs <= 0 || num_seqs > kMaxGraphBatch) return 0;
  if (num_seqs <= 2) return num_seqs;
  if (num_seqs <= 4) return 4;
  return (num_seqs + 7) / 8 * 8;
}

bool IsGraphBucket(int32_t num_seqs) { return num_seqs > 0 && GraphBatchBucket(num_seqs) == num_seqs; }

int32_t ContextCapacity(const std::vector<int32_t>& context_lens) {
  int32_t longest = 0;
  for (int32_t c : context_lens) longest = std::max(longest, c);
  int32_t capacity = 256;
  while (capacity < longest) capacity *= 2;
  return capacity;
}

std::vector<std::pair<int32_t, int32_t>> DecodeGraphKeyShapes(int32_t max_seqs, int32_t max_context) {
  std::vector<std::pair<int32_t, int32_t>> shapes;
  const int32_t top = GraphBatchBucket(std::min(max_seqs, kMaxGraphBatch));
  if (top <= 0 || max_context <= 0) return shapes;
  // The largest key first, so its buffers are the largest any later step
  // asks for. Buffers are sized by the capacity, so each key is warmed at
  // the shortest context that maps to it (half the attention work of the
  // longest).
  for (int32_t capacity = ContextCapacity({max_context}); capacity >= 256; capacity /= 2) {
    const int32_t context = capacity == 256 ? 1 : capacity / 2 + 1;
    for (int32_t n = top; n >= 1; --n) {
      if (IsGraphBucket(n)) shapes.emplace_back(n, context);
    }
  }
  return shapes;
}

}  // namespace tern::runtime
