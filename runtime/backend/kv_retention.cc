#include "runtime/backend/kv_retention.h"

#include <algorithm>

#include "runtime/base/check.h"

namespace tern::runtime {

KvRetention KvRetention::Create(int32_t sink_tokens, const std::vector<int32_t>& band_min) {
  CHECK(!band_min.empty());
  CHECK_GE(sink_tokens, 0);
  KvRetention r;
  r.sink_tokens_ = sink_tokens;
  const int32_t max_context = static_cast<int32_t>(band_min.size()) - 1;
  r.free_before_.assign(band_min.size(), 0);
  // free_before[c] = min over n in (c, max_context] of band_min[n]; with no
  // later query (c = max_context) everything before c could go.
  int32_t later = max_context;
  r.free_before_[size_t(max_context)] = max_context;
  for (int32_t c = max_context - 1; c >= 0; --c) {
    const int32_t b = band_min[size_t(c) + 1];
    CHECK(b >= 0 && b <= c) << "band start " << b << " for a query that sees " << c + 1 << " tokens";
    later = std::min(later, b);
    r.free_before_[size_t(c)] = later;
  }
  for (int32_t n = 2; n <= max_context; ++n) {
    if (band_min[size_t(n)] < band_min[size_t(n) - 1]) r.monotone_ = false;
  }
  return r;
}

KvRetention KvRetention::SlidingWindow(int32_t window, int32_t max_context) {
  CHECK_GT(window, 0);
  CHECK_GE(max_context, 1);
  std::vector<int32_t> band_min(size_t(max_context) + 1, 0);
  for (int32_t n = 1; n <= max_context; ++n) band_min[size_t(n)] = std::max(0, n - window);
  return Create(0, band_min);
}

int32_t KvRetention::FreeBefore(int32_t computed) const {
  if (computed <= 0) return 0;
  if (computed >= max_context()) return computed;
  return free_before_[size_t(computed)];
}

int32_t KvRetention::FreedBlocks(int32_t computed, int32_t block_size) const {
  const int32_t first = (sink_tokens_ + block_size - 1) / block_size;  // first block past the sinks
  const int32_t end = FreeBefore(computed) / block_size;              // blocks wholly before FreeBefore
  return std::max(0, end - first);
}

int64_t KvRetention::PeakBlocks(int64_t tokens, int32_t block_size, int32_t chunk) const {
  CHECK_GT(block_size, 0);
  CHECK_GT(chunk, 0);
  int64_t peak = 0;
  for (int64_t a = 0; a < tokens; ++a) {
    const int64_t b = std::min(tokens, a + chunk);
    const int64_t held = (b + block_size - 1) / block_size -
                         FreedBlocks(static_cast<int32_t>(std::min<int64_t>(a, INT32_MAX)), block_size);
    peak = std::max(peak, held);
  }
  return peak;
}

}  // namespace tern::runtime
