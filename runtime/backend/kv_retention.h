// KvRetention: which cached tokens of a sequence some query may still read,
// so that the scheduler frees the others' blocks (docs/architecture.md,
// "KV retention"). One rule per model, over every head of every layer:
//
//   tokens [0, sink_tokens)                  are kept for the sequence's life;
//   tokens [sink_tokens, FreeBefore(c))      are never read again once c
//                                            tokens are computed, by any head
//                                            of any layer, at any later length;
//   tokens [FreeBefore(c), c)                are kept.
//
// It is built from the earliest key any head reads at each length n
// (band_min[n]: MoA's smallest band start, or n - window for a sliding
// window) by a minimum over all later lengths, so a plan whose band start
// moves back (a later length bucket with a wider band) frees only what no
// later length needs. Immutable after Create; safe to share across threads.
#pragma once

#include <cstdint>
#include <vector>

namespace tern::runtime {

class KvRetention {
 public:
  // `band_min` [max_context + 1]: band_min[n] (n >= 1) is the earliest
  // non-sink key any head reads for a query that sees n tokens (0 <= it <= n
  // - 1); band_min[0] is unused. `sink_tokens` >= 0: the longest sink.
  static KvRetention Create(int32_t sink_tokens, const std::vector<int32_t>& band_min);
  // A sliding window of `window` tokens (Mistral): no sink, band n - window.
  static KvRetention SlidingWindow(int32_t window, int32_t max_context);

  int32_t sink_tokens() const { return sink_tokens_; }
  int32_t max_context() const { return static_cast<int32_t>(free_before_.size()) - 1; }
  // The end of the range no query reads again once `computed` tokens are
  // cached (a query at position >= computed sees more than `computed`
  // tokens); never above `computed`. Below sink_tokens: nothing to free.
  int32_t FreeBefore(int32_t computed) const;
  // Whether band_min never decreases (every later length reads no earlier
  // key): then FreeBefore(c) is band_min[c + 1] itself.
  bool monotone() const { return monotone_; }
  // Whole blocks of `block_size` tokens in [sink_tokens, FreeBefore(c)):
  // those a sequence with c computed tokens holds no longer.
  int32_t FreedBlocks(int32_t computed, int32_t block_size) const;
  // The most blocks a sequence holds while it grows from 0 to `tokens`
  // tokens in steps of at most `chunk` tokens (a step's new blocks are taken
  // before the step and the unread ones given back after it).
  int64_t PeakBlocks(int64_t tokens, int32_t block_size, int32_t chunk) const;

 private:
  int32_t sink_tokens_ = 0;
  std::vector<int32_t> free_before_;  // [max_context + 1]
  bool monotone_ = true;
};

}  // namespace tern::runtime
