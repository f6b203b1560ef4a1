// DiTFastAttn at run time: a block's self-attention as the model's attention
// plan (dit_attention_plan.h) says for each row's own denoising step, inside
// one forward pass of samples at different steps.
//
// Rows and caches. Each forward row (a sample's conditional row, and its
// unconditional row when guided) carries a DitRowAttention: the plan step
// it is at (-1: exact attention, the plan does not apply), its cache slot,
// and for an unconditional row the index of its conditional row. A slot
// holds, per layer that needs them, the row's window residual (full minus
// window attention output, before the projection, from the layer's last full
// step) and its attention output (after the projection, for the next step to
// reuse): [tokens, hidden] each in the ops' compute dtype. Slots come from
// one pool allocated at load (`capacity` rows: the engine's row budget), so
// the bytes are known at start-up and a step allocates nothing; a sample
// holds its slots (DitAttentionSlots) and returns them when it finishes or is
// destroyed (cancel, deadline, drain).
//
// One layer of a pass (RunLayer): rows whose method computes attention are
// gathered (conditional rows of +cfg methods among them; full rows whose
// residual a later step reads first, then other full rows, then window rows),
// go through the qkv linear, WindowAttention (full rows unbanded, window rows
// banded, then plus their residual), and the projection, and are scattered
// back; full rows that store a residual run the banded attention too and keep
// the difference. Reuse rows copy their slot's output; +cfg unconditional
// rows copy their conditional row's result (and its residual). A row's
// result is the same alone or batched: the ops compute it with the same
// arithmetic wherever it sits (dit_ops.h). The ops a pass issues depend only
// on each row's plan step (DitModel hashes them into DitStep::variant, so a
// CUDA graph per combination replays); slots and row indices are data.
//
// Not thread-safe; the model's thread drives it. Slots may be returned from
// any thread that destroys a sample while the model is idle (the engine's).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/dit_attention_plan.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_ops.h"

namespace tern::runtime {

// One forward row's attention state in a pass.
struct DitRowAttention {
  int32_t plan_step = -1;  // the step of the plan this row is at; -1: exact attention
  int32_t slot = -1;       // its cache slot (needed when plan_step >= 0)
  int32_t cond_row = -1;   // an unconditional row's conditional row in the pass; else -1
};

class DitAttentionCache;

// A sample's cache slots (one per forward row); returned to the pool when
// destroyed, even after the pool's model is gone.
class DitAttentionSlots {
 public:
  ~DitAttentionSlots();
  DitAttentionSlots(const DitAttentionSlots&) = delete;
  DitAttentionSlots& operator=(const DitAttentionSlots&) = delete;
  int32_t slot(size_t row) const { return slots_[row]; }
  size_t size() const { return slots_.size(); }

 private:
  friend class DitAttentionCache;
  struct FreeList {
    std::mutex mu;
    std::vector<int32_t> free;
  };
  DitAttentionSlots(std::weak_ptr<FreeList> pool, std::vector<int32_t> slots)
      : pool_(std::move(pool)), slots_(std::move(slots)) {}
  std::weak_ptr<FreeList> pool_;
  std::vector<int32_t> slots_;
};

class DitAttentionCache {
 public:
  // Allocates `capacity` rows of caches for the layers `plan` needs them in.
  // INVALID_ARGUMENT for a capacity < 1; the ops' error when memory runs out.
  static absl::StatusOr<std::unique_ptr<DitAttentionCache>> Create(std::shared_ptr<const DitAttentionPlan> plan,
                                                                   const DitConfig& config, DitOps* ops,
                                                                   int32_t capacity);

  const DitAttentionPlan& plan() const { return *plan_; }
  int32_t capacity() const { return capacity_; }
  // Device (or host) bytes of the pool, and per row.
  size_t bytes() const { return bytes_; }
  size_t bytes_per_row() const { return capacity_ > 0 ? bytes_ / size_t(capacity_) : 0; }
  int32_t slots_in_use() const;

  // `rows` slots; RESOURCE_EXHAUSTED when fewer are free.
  absl::StatusOr<std::unique_ptr<DitAttentionSlots>> Acquire(int32_t rows);

  // One block's attention sublayer for the pass's rows: normed [R*L, D] in,
  // branch [R*L, D] out (the projection's output: what the gated add takes).
  // qkv_weight and proj are the block's layers; `layer` its index.
  void RunLayer(DitOps& ops, int32_t layer, absl::Span<const DitRowAttention> rows, const DitLinear& qkv_weight,
                const DitLinear& proj, const DitAttentionParams& params, Tensor normed, Tensor branch);

 private:
  DitAttentionCache(std::shared_ptr<const DitAttentionPlan> plan, int32_t capacity, int64_t tokens)
      : plan_(std::move(plan)), capacity_(capacity), tokens_(tokens) {}

  std::shared_ptr<const DitAttentionPlan> plan_;
  int32_t capacity_;
  int64_t tokens_;
  size_t bytes_ = 0;
  std::shared_ptr<DitAttentionSlots::FreeList> free_ = std::make_shared<DitAttentionSlots::FreeList>();
  // Per layer: [capacity * tokens, hidden], or null where the plan needs none.
  std::vector<std::unique_ptr<DitBuffer>> residual_, output_;

  // One layer's row lists, reused.
  std::vector<int32_t> gather_, gather_slots_, windows_, iota_, residual_rows_, residual_slots_;
  std::vector<int32_t> window_slots_, reuse_rows_, reuse_slots_, shared_rows_, shared_from_;
  std::vector<int32_t> shared_residual_from_, shared_residual_to_, output_rows_, output_slots_, band_;
};

}  // namespace tern::runtime
