// Host side of the weight-only GEMV (weight_only_gemv.h): the launch plan and
// the backend's choice of kernel. No CUDA here, so the CPU tests check it.
#include <algorithm>
#include <climits>

#include "kernels/gemm/weight_only_gemv.h"

namespace tern::kernels {
namespace {

// Shared row stride of x in 16-bit elements: the chunks' columns, padded so
// that rows g and g + 1 fall on different banks when lanes (g, t) read their
// 16-byte pieces (4 bits: lane t reads 32 bytes at 32 t of the chunk, so the
// stride is 16 mod 32 bytes; 8 bits: 16 bytes at 16 t of a 64-byte chunk, so
// the stride is 64 mod 128 bytes).
int64_t SharedRowElements(const WeightOnlyLayout& l) {
  const int64_t bytes = l.k_chunks() * l.chunk_cols() * 2;
  const int64_t modulus = l.bits == 4 ? 32 : 128;
  const int64_t want = l.bits == 4 ? 16 : 64;
  const int64_t pad = ((want - bytes % modulus) % modulus + modulus) % modulus;
  return (bytes + pad) / 2;
}

}  // namespace

bool WeightOnlyLayoutSupported(const WeightOnlyLayout& l) {
  return (l.bits == 4 || l.bits == 8) && l.n > 0 && l.k > 0 && l.k % 2 == 0 && l.groups > 0 &&
         l.group_size * l.groups == l.k && (l.groups == 1 || l.group_size % 16 == 0) && l.n < INT32_MAX &&
         l.k < INT32_MAX / 2;
}

WeightOnlyGemvPlan PlanWeightOnlyGemv(const WeightOnlyLayout& l, int64_t rows, bool half_scales, bool has_zeros,
                                      int32_t sms, int32_t slices_wanted, int64_t max_shared_bytes) {
  WeightOnlyGemvPlan plan;
  if (!WeightOnlyLayoutSupported(l) || rows < 1 || rows > kWeightOnlyGemvMaxRows) return plan;
  const int64_t per_tile = l.groups * kWeightOnlyTileRows * ((half_scales ? 2 : 4) + (has_zeros ? 1 : 0));
  if (per_tile > kWeightOnlyGemvSharedBudget) return plan;
  const int64_t row_elements = SharedRowElements(l);
  const int64_t x_bytes = rows * row_elements * 2;
  // x in shared memory at two blocks an SM, else at one, else from global memory.
  int64_t budget = kWeightOnlyGemvSharedBudget;
  bool x_shared = x_bytes + per_tile <= budget;
  if (!x_shared && x_bytes + per_tile <= max_shared_bytes) {
    budget = max_shared_bytes;
    x_shared = true;
  }
  const int64_t x_part = x_shared ? x_bytes : 0;
  const int64_t tiles = l.n_tiles(), chunks = l.k_chunks();
  const int64_t min_blocks = int64_t(kWeightOnlyGemvMinBlocksPerSm) * std::max<int32_t>(sms, 1);
  int32_t slices = kWeightOnlyGemvWarps;
  if (slices_wanted != 0) {
    if (slices_wanted != 1 && slices_wanted != 2 && slices_wanted != 4 && slices_wanted != 8) return plan;
    if (x_part + (kWeightOnlyGemvWarps / slices_wanted) * per_tile > budget) return plan;
    slices = slices_wanted;
  }
  while (slices_wanted == 0 && slices > 1) {
    const int32_t next = slices / 2;
    const int64_t tiles_per_block = kWeightOnlyGemvWarps / next;
    const int64_t blocks = (tiles + tiles_per_block - 1) / tiles_per_block;
    if (x_part + tiles_per_block * per_tile > budget) break;
    // Fewer slices while the SMs stay busy, or while some slices would be empty.
    if (blocks < min_blocks && chunks >= slices) break;
    slices = next;
  }
  plan.slices = slices;
  plan.tiles_per_block = kWeightOnlyGemvWarps / slices;
  plan.slice_chunks = int32_t((chunks + slices - 1) / slices);
  plan.blocks = (tiles + plan.tiles_per_block - 1) / plan.tiles_per_block;
  plan.x_shared = x_shared;
  plan.x_row_elements = x_shared ? row_elements : 0;
  plan.x_bytes = x_part;
  plan.staged_bytes = plan.tiles_per_block * per_tile;
  plan.shared_bytes = plan.x_bytes + plan.staged_bytes;
  plan.shared_limit = budget;
  return plan;
}

WeightOnlyKernel SelectWeightOnlyKernel(int64_t rows, bool gemv_supported, bool gemm_supported) {
  if (rows <= kWeightOnlyGemvMaxRows && gemv_supported) return WeightOnlyKernel::kGemv;
  if (rows <= kWeightOnlyGemmFastRows && gemm_supported) return WeightOnlyKernel::kGemm;
  return WeightOnlyKernel::kDequantizeGemm;
}

}  // namespace tern::kernels
