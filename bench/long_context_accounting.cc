#include "bench/long_context_accounting.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tern::bench {

int64_t BlocksPerSequence(int32_t context, int32_t block_size, int32_t chunk, const runtime::KvCacheGroups* groups) {
  const int64_t written = int64_t(context) - 1;
  const int64_t dense = (written + block_size - 1) / block_size;
  if (groups == nullptr) return dense;
  int64_t total = 0;
  for (int32_t g = 0; g < groups->num_groups(); ++g) {
    const runtime::KvRetention* retention = groups->group_retention(g);
    total += retention == nullptr ? dense : std::min(dense, retention->PeakBlocks(written, block_size, chunk));
  }
  return total;
}

absl::StatusOr<LongContextRun> PlanLongContextRun(int64_t num_blocks, int32_t context, int32_t block_size,
                                                  int32_t max_num_batched_tokens, int32_t max_num_seqs,
                                                  int32_t decode_steps, const runtime::KvCacheGroups* groups) {
  if (context < 2) return absl::InvalidArgumentError(absl::StrCat("a context of ", context, " tokens: at least 2"));
  if (block_size <= 0 || max_num_batched_tokens <= 0 || max_num_seqs <= 0 || decode_steps <= 0) {
    return absl::InvalidArgumentError("block size, token budget, sequence limit and decode steps must be positive");
  }
  LongContextRun run;
  run.blocks_per_seq = BlocksPerSequence(context, block_size, max_num_batched_tokens, groups);
  const int64_t fit = num_blocks / run.blocks_per_seq;
  if (fit == 0) {
    return absl::InvalidArgumentError(absl::StrCat("a sequence of ", context, " tokens holds ", run.blocks_per_seq,
                                                   " KV blocks at its longest; the cache has ", num_blocks));
  }
  run.num_seqs = int32_t(std::min<int64_t>(fit, max_num_seqs));
  const int64_t chunk = int64_t(max_num_batched_tokens) - run.num_seqs;
  if (chunk <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("the step budget of ", max_num_batched_tokens, " tokens leaves no ",
                                                   "prompt tokens beside ", run.num_seqs, " decoding sequences"));
  }
  // Every prompt token is computed in a step whose budget the decodes have
  // already shrunk to `chunk`; a sequence admitted late in a step may leave
  // the rest of that step unused once.
  const int64_t steps = (int64_t(run.num_seqs) * context + chunk - 1) / chunk + run.num_seqs;
  const int64_t max_tokens = steps + kGraphWarmSteps + decode_steps + 1;
  if (max_tokens >= context) {
    return absl::InvalidArgumentError(absl::StrCat("a context of ", context, " tokens leaves no prompt: ",
                                                   run.num_seqs, " sequences need ", max_tokens,
                                                   " output tokens each (", steps, " prefill steps + ",
                                                   kGraphWarmSteps, " graph warm-up + ", decode_steps, " decode + 1)"));
  }
  run.prefill_steps = int32_t(steps);
  run.max_tokens = int32_t(max_tokens);
  run.prompt_tokens = context - run.max_tokens;
  return run;
}

absl::StatusOr<SteadyWindow> SteadyDecodeWindow(const std::vector<std::vector<double>>& token_times) {
  if (token_times.empty()) return absl::InvalidArgumentError("no sequences");
  SteadyWindow w;
  w.start_s = -std::numeric_limits<double>::infinity();
  w.end_s = std::numeric_limits<double>::infinity();
  for (size_t s = 0; s < token_times.size(); ++s) {
    const std::vector<double>& t = token_times[s];
    if (t.size() <= size_t(kGraphWarmSteps) + 1) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, " delivered ", t.size(),
                                                     " tokens; the window needs more than ", kGraphWarmSteps + 1));
    }
    w.start_s = std::max(w.start_s, t[size_t(kGraphWarmSteps)]);
    w.end_s = std::min(w.end_s, t.back());
  }
  if (!(w.end_s > w.start_s)) {
    return absl::InvalidArgumentError("the sequences never all decoded at once (empty steady window)");
  }
  for (const std::vector<double>& t : token_times) {
    for (const double x : t) w.tokens += (x > w.start_s && x <= w.end_s) ? 1 : 0;
  }
  w.tokens_per_s = double(w.tokens) / (w.end_s - w.start_s);
  return w;
}

double KvBytesPerHeadToken(runtime::KvCacheDtype dtype, size_t compute_bytes, int32_t head_dim) {
  const double element = dtype == runtime::KvCacheDtype::kAuto ? double(compute_bytes) : 1.0;
  const double scales = dtype == runtime::KvCacheDtype::kInt8 ? 2.0 * sizeof(float) : 0.0;
  return 2.0 * head_dim * element + scales;
}

int64_t DecodeKvHeadTokens(const runtime::MoaPlan* plan, int32_t num_layers, int32_t num_heads, int32_t num_kv_heads,
                           int32_t n) {
  if (plan == nullptr) return int64_t(num_layers) * num_kv_heads * n;
  const int32_t group = num_heads / num_kv_heads;
  int64_t tokens = 0;
  for (int32_t l = 0; l < num_layers; ++l) {
    for (int32_t g = 0; g < num_kv_heads; ++g) {
      int32_t sink_end = 0, band_start = n;
      for (int32_t h = g * group; h < (g + 1) * group; ++h) {
        sink_end = std::max(sink_end, plan->SinkEnd(l, h, n));
        band_start = std::min(band_start, plan->BandStart(l, h, n));
      }
      tokens += std::min(sink_end, band_start) + (n - band_start);
    }
  }
  return tokens;
}

}  // namespace tern::bench
