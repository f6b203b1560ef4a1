#include "runtime/model/windowed_perplexity.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {

double WindowedNll::TokenPerplexity() const { return tokens > 0 ? std::exp(nll_sum / double(tokens)) : 0.0; }

int32_t CacheBlocks(int32_t window, int32_t block_size) { return (window + block_size - 1) / block_size; }

namespace {

// -ln softmax(row)[target], in double (max-shifted log-sum-exp).
double TokenNll(const float* row, int64_t vocab, int32_t target) {
  const float max = *std::max_element(row, row + vocab);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - double(max));
  return std::log(sum) + double(max) - double(row[target]);
}

}  // namespace

absl::StatusOr<WindowedNll> ScoreWindows(LlamaModel& model, KvCache& cache, absl::Span<const int32_t> ids,
                                         const WindowedPerplexityOptions& options) {
  const int64_t vocab = model.config().vocab_size;
  if (options.window < 2) return absl::InvalidArgumentError(absl::StrCat("window must be >= 2, got ", options.window));
  if (options.chunk_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_tokens must be >= 1, got ", options.chunk_tokens));
  }
  const int32_t block_size = cache.spec().block_size;
  if (cache.spec().num_blocks < CacheBlocks(options.window, block_size)) {
    return absl::InvalidArgumentError(absl::StrCat("the cache holds ", cache.spec().num_blocks, " blocks; a window of ",
                                                   options.window, " needs ",
                                                   CacheBlocks(options.window, block_size)));
  }
  if (options.window > model.config().max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("window ", options.window, " exceeds the model's context ",
                                                   model.config().max_position_embeddings));
  }
  if (ids.empty()) return absl::InvalidArgumentError("no tokens to score");
  if (options.bos_id < 0 || options.bos_id >= vocab) {
    return absl::InvalidArgumentError(absl::StrCat("bos id ", options.bos_id, " is outside the vocabulary"));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token ", i, " has id ", ids[i], ", outside the vocabulary"));
    }
  }

  WindowedNll result;
  const size_t step = size_t(options.window - 1);
  std::vector<int32_t> window;
  std::vector<float> logits;
  ForwardBatch batch;
  for (size_t begin = 0; begin < ids.size(); begin += step) {
    const size_t n = std::min(step, ids.size() - begin);
    window.assign({options.bos_id});
    window.insert(window.end(), ids.begin() + begin, ids.begin() + begin + n);
    // Position p predicts window[p + 1]; the last position predicts nothing.
    const int32_t len = int32_t(window.size());
    for (int32_t start = 0; start < len - 1; start += options.chunk_tokens) {
      const int32_t end = std::min(len - 1, start + options.chunk_tokens);
      batch = ForwardBatch{};
      batch.query_start = {0, end - start};
      batch.context_lens = {end};
      batch.block_indptr = {0};
      for (int32_t p = start; p < end; ++p) {
        batch.token_ids.push_back(window[p]);
        batch.positions.push_back(p);
        batch.slots.push_back(p);  // blocks 0.. in order: slot = block * block_size + offset = p
        batch.logits_rows.push_back(p - start);
      }
      const int32_t blocks = (end + block_size - 1) / block_size;
      for (int32_t b = 0; b < blocks; ++b) batch.block_ids.push_back(b);
      batch.block_indptr.push_back(blocks);
      RETURN_IF_ERROR(model.Forward(batch, cache, &logits));
      if (int64_t(logits.size()) != int64_t(end - start) * vocab) {
        return absl::InternalError(absl::StrCat("the model returned ", logits.size(), " logits for ", end - start,
                                                " rows of ", vocab));
      }
      for (int32_t p = start; p < end; ++p) {
        result.nll_sum += TokenNll(logits.data() + int64_t(p - start) * vocab, vocab, window[p + 1]);
      }
    }
    result.tokens += int64_t(n);
    ++result.windows;
  }
  return result;
}

}  // namespace tern::runtime
