// Whole-block copies inside the paged KV cache, the copy-on-write a step
// makes before it writes (runtime::StepPlan::block_copies): for every pair i
// and every pool p, block dst[i] of pool p becomes a byte copy of block
// src[i] of pool p. A pool is one layer's K or V cache, num_blocks blocks of
// block_bytes bytes each; every (pair, pool) is one thread block of one
// launch, so a step's copies cost one launch per kCopyBlocksPairsPerLaunch
// pairs, not two per layer and pair.
//
// Pairs: no block is both a source and a destination, and destinations are
// distinct (as the scheduler makes them); otherwise the result is undefined.
// num_pairs == 0 is a no-op.
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace tern::kernels {

// Pairs one launch carries in its parameters (so no staging buffer).
inline constexpr int32_t kCopyBlocksPairsPerLaunch = 256;

struct CopyBlocksParams {
  // [num_pools] base pointers of the pools, each 16-byte aligned: for the
  // launcher an array in device memory of device pointers, for the
  // reference host pointers.
  void* const* pools = nullptr;
  int32_t num_pools = 0;  // at most 65535
  int32_t num_blocks = 0;     // blocks per pool; ids outside [0, num_blocks) are an error
  int64_t block_bytes = 0;    // bytes of one block of one pool, > 0
  int32_t num_pairs = 0;
  const int32_t* src = nullptr;  // [num_pairs] source block ids, host memory
  const int32_t* dst = nullptr;  // [num_pairs] destination block ids, host memory
};

// CPU reference (host pools). False, copying nothing, when a block id is out
// of range.
bool CopyBlocksReference(const CopyBlocksParams& params);

#if defined(TERN_WITH_CUDA)
// Enqueues the copies on `stream`: one launch per kCopyBlocksPairsPerLaunch
// pairs, 16-byte loads and stores when block_bytes and the pools allow.
// cudaErrorInvalidValue (nothing enqueued) for a block id out of range or a
// non-positive block_bytes; else the first launch error.
cudaError_t LaunchCopyBlocks(const CopyBlocksParams& params, cudaStream_t stream);
#endif

}  // namespace tern::kernels
