// Negative log-likelihood of a token stream under a LlamaModel, windowed as
// tools/eval/eval_llm.py windows WikiText-2: the stream (tokenized without
// BOS) is cut into consecutive windows of `window - 1` tokens (the last may be
// shorter), each window is fed as [bos] + window from position 0, and every
// stream token is scored exactly once, conditioned on the BOS and the earlier
// tokens of its window. Each window is computed in forward passes of at most
// `chunk_tokens` tokens (a chunked prefill through the KV cache), with the
// logits of every row; log-softmax and the sum are taken in double.
//
// Single-thread, like the model it drives. The cache must hold at least
// CacheBlocks(window, its block size) blocks; block ids 0..CacheBlocks-1 are
// used and overwritten. Errors: INVALID_ARGUMENT for bad options, a cache too
// small, an empty stream or an id outside the vocabulary; the model's own
// errors pass through.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/backend/backend.h"
#include "runtime/model/llama_model.h"

namespace tern::runtime {

struct WindowedPerplexityOptions {
  int32_t window = 2048;       // tokens per forward window, BOS included (>= 2)
  int32_t bos_id = 0;          // the token that opens every window
  int32_t chunk_tokens = 512;  // most tokens in one Forward call (>= 1)
};

struct WindowedNll {
  int64_t tokens = 0;    // stream tokens scored
  int64_t windows = 0;   // windows fed
  double nll_sum = 0.0;  // sum of -ln p(token | BOS, earlier tokens of its window), nats
  double TokenPerplexity() const;  // exp(nll_sum / tokens)
};

// Cache blocks of `block_size` tokens that one window of `window` tokens needs.
int32_t CacheBlocks(int32_t window, int32_t block_size);

absl::StatusOr<WindowedNll> ScoreWindows(LlamaModel& model, KvCache& cache, absl::Span<const int32_t> ids,
                                         const WindowedPerplexityOptions& options);

}  // namespace tern::runtime
