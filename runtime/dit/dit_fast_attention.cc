#include "runtime/dit/dit_fast_attention.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace tern::runtime {
namespace {

// Workspace slots (DitOps::Scratch), apart from DitModel's.
enum Slot : int {
  kGatheredNormed = 100,  // [n*L, D]
  kGatheredQkv,           // [n*L, 3D]
  kGatheredAttention,     // [n*L, D]
  kGatheredBranch,        // [n*L, D]
  kBand,                  // [n_residual*L, D] window attention of full rows, then the residual
  kResidual,              // [n_window*L, D] window rows' residuals
};

}  // namespace

DitAttentionSlots::~DitAttentionSlots() {
  if (auto pool = pool_.lock()) {
    std::lock_guard<std::mutex> lock(pool->mu);
    pool->free.insert(pool->free.end(), slots_.begin(), slots_.end());
  }
}

absl::StatusOr<std::unique_ptr<DitAttentionCache>> DitAttentionCache::Create(
    std::shared_ptr<const DitAttentionPlan> plan, const DitConfig& config, DitOps* ops, int32_t capacity) {
  if (capacity < 1) {
    return absl::InvalidArgumentError(absl::StrCat("attention cache rows: ", capacity, " is not >= 1"));
  }
  const int64_t tokens = config.num_tokens();
  std::unique_ptr<DitAttentionCache> cache(new DitAttentionCache(plan, capacity, tokens));
  cache->residual_.resize(size_t(plan->num_layers));
  cache->output_.resize(size_t(plan->num_layers));
  for (int32_t l = 0; l < plan->num_layers; ++l) {
    if (plan->LayerUsesResidual(l)) {
      auto buffer = ops->AllocateBuffer(int64_t(capacity) * tokens, config.hidden_size);
      if (!buffer.ok()) return buffer.status();
      cache->bytes_ += (*buffer)->bytes();
      cache->residual_[size_t(l)] = *std::move(buffer);
    }
    if (plan->LayerUsesOutput(l)) {
      auto buffer = ops->AllocateBuffer(int64_t(capacity) * tokens, config.hidden_size);
      if (!buffer.ok()) return buffer.status();
      cache->bytes_ += (*buffer)->bytes();
      cache->output_[size_t(l)] = *std::move(buffer);
    }
  }
  for (int32_t s = capacity - 1; s >= 0; --s) cache->free_->free.push_back(s);
  return cache;
}

int32_t DitAttentionCache::slots_in_use() const {
  std::lock_guard<std::mutex> lock(free_->mu);
  return capacity_ - static_cast<int32_t>(free_->free.size());
}

absl::StatusOr<std::unique_ptr<DitAttentionSlots>> DitAttentionCache::Acquire(int32_t rows) {
  std::lock_guard<std::mutex> lock(free_->mu);
  if (rows < 0 || size_t(rows) > free_->free.size()) {
    return absl::ResourceExhaustedError(absl::StrCat("attention cache: ", rows, " rows asked, ", free_->free.size(),
                                                     " of ", capacity_, " free"));
  }
  std::vector<int32_t> slots(free_->free.end() - rows, free_->free.end());
  free_->free.resize(free_->free.size() - size_t(rows));
  return std::unique_ptr<DitAttentionSlots>(new DitAttentionSlots(free_, std::move(slots)));
}

void DitAttentionCache::RunLayer(DitOps& ops, int32_t layer, absl::Span<const DitRowAttention> rows,
                                 const DitLinear& qkv_weight, const DitLinear& proj, const DitAttentionParams& params,
                                 Tensor normed, Tensor branch) {
  const DitAttentionPlan& plan = *plan_;
  const int64_t L = tokens_;
  const int64_t d = branch.cols;
  CHECK_EQ(int64_t(rows.size()) * L, normed.rows);
  // Classify the rows: computed (residual-storing full, full, window),
  // reused, shared from the conditional row.
  std::vector<int32_t> full_rows, full_slots;
  gather_.clear();
  gather_slots_.clear();
  residual_rows_.clear();
  residual_slots_.clear();
  window_slots_.clear();
  reuse_rows_.clear();
  reuse_slots_.clear();
  shared_rows_.clear();
  shared_from_.clear();
  shared_residual_from_.clear();
  shared_residual_to_.clear();
  output_rows_.clear();
  output_slots_.clear();
  std::vector<int32_t> window_rows;
  for (size_t i = 0; i < rows.size(); ++i) {
    const DitRowAttention& row = rows[i];
    const int32_t r = static_cast<int32_t>(i);
    if (row.plan_step < 0) {
      full_rows.push_back(r);
      full_slots.push_back(-1);
      continue;
    }
    CHECK(row.plan_step < plan.num_steps && row.slot >= 0 && row.slot < capacity_);
    const DitAttentionMethod m = plan.method(row.plan_step, layer);
    const bool stores_residual = plan.StoresResidual(row.plan_step, layer);
    if (m == DitAttentionMethod::kReuse) {
      reuse_rows_.push_back(r);
      reuse_slots_.push_back(row.slot);
      continue;
    }
    if (plan.StoresOutput(row.plan_step, layer)) {
      output_rows_.push_back(r);
      output_slots_.push_back(row.slot);
    }
    if (SharesCfg(m) && row.cond_row >= 0) {
      shared_rows_.push_back(r);
      shared_from_.push_back(row.cond_row);
      if (stores_residual) {
        shared_residual_from_.push_back(rows[size_t(row.cond_row)].slot);
        shared_residual_to_.push_back(row.slot);
      }
      continue;
    }
    if (IsWindow(m)) {
      window_rows.push_back(r);
      window_slots_.push_back(row.slot);
    } else if (stores_residual) {
      residual_rows_.push_back(r);
      residual_slots_.push_back(row.slot);
    } else {
      full_rows.push_back(r);
      full_slots.push_back(row.slot);
    }
  }
  const int32_t n_residual = static_cast<int32_t>(residual_rows_.size());
  const int32_t n_full = n_residual + static_cast<int32_t>(full_rows.size());
  gather_ = residual_rows_;
  gather_.insert(gather_.end(), full_rows.begin(), full_rows.end());
  gather_.insert(gather_.end(), window_rows.begin(), window_rows.end());
  const int32_t n = static_cast<int32_t>(gather_.size());

  if (n > 0) {
    iota_.resize(size_t(n));
    for (int32_t i = 0; i < n; ++i) iota_[size_t(i)] = i;
    const bool in_place = n == int32_t(rows.size()) && std::equal(gather_.begin(), gather_.end(), iota_.begin());
    Tensor src = normed;
    if (!in_place) {
      src = ops.Scratch(kGatheredNormed, n * L, d);
      ops.CopySamples(normed, gather_, src, iota_, L);
    }
    Tensor qkv = ops.Scratch(kGatheredQkv, n * L, 3 * d);
    ops.LinearSamples(src, n, qkv_weight, qkv);
    windows_.assign(size_t(n_full), -1);
    windows_.resize(size_t(n), plan.window);
    Tensor attended = ops.Scratch(kGatheredAttention, n * L, d);
    ops.WindowAttention(qkv, params, windows_, attended);
    if (n_residual > 0) {
      // The residual: full minus window output of the same q, k, v.
      Tensor band = ops.Scratch(kBand, n_residual * L, d);
      band_.assign(size_t(n_residual), plan.window);
      ops.WindowAttention(qkv.Rows(0, n_residual * L), params, band_, band);
      ops.Subtract(attended.Rows(0, n_residual * L), band, band);
      ops.CopySamples(band, absl::MakeConstSpan(iota_).first(size_t(n_residual)), residual_[size_t(layer)]->tensor(),
                      residual_slots_, L);
    }
    const int32_t n_window = n - n_full;
    if (n_window > 0) {
      Tensor residual = ops.Scratch(kResidual, n_window * L, d);
      ops.CopySamples(residual_[size_t(layer)]->tensor(), window_slots_, residual,
                      absl::MakeConstSpan(iota_).first(size_t(n_window)), L);
      ops.Add(attended.Rows(n_full * L, n_window * L), residual);
    }
    Tensor out = in_place ? branch : ops.Scratch(kGatheredBranch, n * L, d);
    ops.LinearSamples(attended, n, proj, out);
    if (!in_place) ops.CopySamples(out, iota_, branch, gather_, L);
  }
  if (!reuse_rows_.empty()) {
    ops.CopySamples(output_[size_t(layer)]->tensor(), reuse_slots_, branch, reuse_rows_, L);
  }
  if (!shared_rows_.empty()) {
    ops.CopySamples(branch, shared_from_, branch, shared_rows_, L);
    if (!shared_residual_to_.empty()) {
      Tensor residual = residual_[size_t(layer)]->tensor();
      ops.CopySamples(residual, shared_residual_from_, residual, shared_residual_to_, L);
    }
  }
  if (!output_rows_.empty()) {
    ops.CopySamples(branch, output_rows_, output_[size_t(layer)]->tensor(), output_slots_, L);
  }
}

}  // namespace tern::runtime
