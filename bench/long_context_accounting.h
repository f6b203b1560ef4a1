// The arithmetic of tern-long-context-bench (bench/long_context_bench.cc),
// apart from the engine it drives so that it is tested on its own
// (tests/bench/long_context_accounting_test.cc):
//
// - how many sequences of one context length hold their KV at once in a
//   cache of a given number of blocks, by the engine's own count;
// - how a sequence's context splits into prompt and output tokens so that
//   every sequence is still decoding when the last one finishes its prompt;
// - the steady decode window (every sequence decoding, graphs recorded) in
//   the delivery times of their tokens;
// - the KV bytes one decode step reads, for the byte floor.
//
// Pure functions; thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/backend/kv_cache_groups.h"
#include "runtime/backend/kv_cache_spec.h"
#include "runtime/backend/kv_retention.h"
#include "runtime/model/moa_plan.h"

namespace tern::bench {

// KV blocks one sequence of `context` tokens (prompt + max_tokens, >= 2)
// holds at its longest, as the engine counts it at Submit, summed over the
// KV-cache groups (`groups`; null: one group keeping every token): in each
// group the positions it writes (the last sampled token is never written)
// in blocks of `block_size`, or, when the group frees unread blocks (an MoA
// plan or a sliding window), the peak while it grows in prefill chunks of at
// most `chunk` tokens (KvRetention::PeakBlocks), whichever is smaller.
int64_t BlocksPerSequence(int32_t context, int32_t block_size, int32_t chunk, const runtime::KvCacheGroups* groups);

// Steps after a sequence's first token that are left out of the steady
// window: the first decode-only step of a batch runs eagerly and the second
// records its CUDA graph (docs/architecture.md, CUDA graphs).
inline constexpr int32_t kGraphWarmSteps = 2;

struct LongContextRun {
  int32_t num_seqs = 0;          // sequences submitted together; all hold their peak at once
  int64_t blocks_per_seq = 0;    // BlocksPerSequence
  int32_t prefill_steps = 0;     // bound on the engine steps until every prompt is computed
  int32_t prompt_tokens = 0;
  int32_t max_tokens = 0;        // prompt_tokens + max_tokens == context
};

// The run for sequences of `context` tokens in a cache of `num_blocks`
// blocks: as many sequences as hold their peak at once (at most
// `max_num_seqs`), and max_tokens = prefill_steps + kGraphWarmSteps +
// decode_steps + 1, where prefill_steps bounds the steps the engine spends
// on prompts (each step's budget of `max_num_batched_tokens` less one token
// per decoding sequence, plus one partial step per sequence), so that the
// first sequence still decodes `decode_steps` steps after the last one's
// graph warm-up. INVALID_ARGUMENT naming the quantity when no sequence fits,
// the budget does not exceed the sequences, or the context leaves no prompt.
absl::StatusOr<LongContextRun> PlanLongContextRun(int64_t num_blocks, int32_t context, int32_t block_size,
                                                  int32_t max_num_batched_tokens, int32_t max_num_seqs,
                                                  int32_t decode_steps, const runtime::KvCacheGroups* groups);

struct SteadyWindow {
  double start_s = 0, end_s = 0;  // (start, end] on the times' clock
  int64_t tokens = 0;             // tokens delivered in the window, all sequences
  double tokens_per_s = 0;
};

// `token_times[s]`: the delivery time (seconds, one clock) of each output
// token of sequence s, ascending. The window starts when the last sequence
// to start decoding delivers its token number kGraphWarmSteps + 1 (its
// first token comes from its prefill step, the next kGraphWarmSteps from
// the warm-up of the decode graph) and ends when the first sequence to
// finish delivers its last token: inside it every sequence decodes.
// INVALID_ARGUMENT when there is no sequence, a sequence has too few
// tokens, or the window is empty (the sequences did not overlap).
absl::StatusOr<SteadyWindow> SteadyDecodeWindow(const std::vector<std::vector<double>>& token_times);

// Bytes of K and V for one token of one kv head in one layer: the elements
// (the compute dtype's bytes, or one byte for fp8 and int8) and int8's two
// fp32 token scales (kv_cache_spec.h).
double KvBytesPerHeadToken(runtime::KvCacheDtype dtype, size_t compute_bytes, int32_t head_dim);

// K/V tokens the decode attention kernel reads for one sequence whose query
// sees n >= 1 tokens, summed over layers and kv heads: n each for dense
// attention (`plan` null); under an MoA plan, per kv head the union of its
// query heads' sinks and bands (the kernel reads the longest sink and
// everything from the earliest band start once: docs/architecture.md, MoA).
// `num_heads` is a multiple of `num_kv_heads`; the plan fits the model.
int64_t DecodeKvHeadTokens(const runtime::MoaPlan* plan, int32_t num_layers, int32_t num_heads, int32_t num_kv_heads,
                           int32_t n);

}  // namespace tern::bench
