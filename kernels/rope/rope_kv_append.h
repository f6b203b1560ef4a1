// The decode step's seam between the QKV projection and attention, in one
// pass: rotate q in place (RoPE, see rope.h), rotate k and store it, with v,
// at each token's paged-cache slot. k itself is left as it was; only its
// rotated copy reaches the cache.
//
// Layouts: q [num_tokens, q_row_stride] holding num_heads heads of head_dim;
// k and v [num_tokens, *_row_stride] holding num_kv_heads heads; caches
// [slots, num_kv_heads * head_dim] (one row per slot, as LaunchWriteKv);
// positions and slots [num_tokens]. A negative slot marks a padding row whose
// k and v are not stored.
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

struct RopeKvAppendParams {
  int64_t num_tokens = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // even
  int64_t q_row_stride = 0;
  int64_t k_row_stride = 0;
  int64_t v_row_stride = 0;
};

// fp32 reference: RopeReference on q and on a copy of k, then the stores.
void RopeKvAppendReference(const RopeKvAppendParams& params, const int32_t* positions, const float* inv_freq,
                           const int32_t* slots, float* q, const float* k, const float* v, float* k_cache,
                           float* v_cache);

#if defined(TERN_WITH_CUDA)
// All pointers on the device; q, k, v and the caches of `type`. Rounds as
// LaunchRope followed by LaunchWriteKv does, so the two paths agree bit for
// bit. Launched with PDL (kernels/common/pdl.cuh) when `pdl`.
cudaError_t LaunchRopeKvAppend(ScalarType type, const RopeKvAppendParams& params, const int32_t* positions,
                               const float* inv_freq, const int32_t* slots, void* q, const void* k, const void* v,
                               void* k_cache, void* v_cache, cudaStream_t stream, bool pdl = true);
#endif

}  // namespace tern::kernels
