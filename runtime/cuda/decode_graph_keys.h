// Which decode steps the CUDA backend replays as CUDA graphs, and how the
// graphs are keyed: (batch bucket, context capacity). Pure host arithmetic,
// shared by CudaBackend's step setup and its start-up warm-up list.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace tern::runtime {

// Decode steps of more sequences run op by op.
inline constexpr int32_t kMaxGraphBatch = 256;

// The bucket a decode step of `num_seqs` sequences is padded to: 1, 2, 4,
// then multiples of 8; 0 when num_seqs is outside [1, kMaxGraphBatch].
int32_t GraphBatchBucket(int32_t num_seqs);
bool IsGraphBucket(int32_t num_seqs);

// The smallest power of two >= the longest context, at least 256: graphs are
// keyed by it, and kernels whose grid depends on the context size it for it.
int32_t ContextCapacity(const std::vector<int32_t>& context_lens);

// (num_seqs, context) of one decode step per graph key for at most
// `max_seqs` sequences of at most `max_context` tokens, the largest key
// first; each at the shortest context of its capacity. See
// Backend::DecodeGraphShapes.
std::vector<std::pair<int32_t, int32_t>> DecodeGraphKeyShapes(int32_t max_seqs, int32_t max_context);

}  // namespace tern::runtime
