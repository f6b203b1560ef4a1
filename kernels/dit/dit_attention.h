// Non-causal multi-head self-attention within each sample, for the diffusion
// transformer: no mask, no KV cache, every token of a sample attends to all
// of the sample's tokens. Reference: CpuDitOps::Attention
// (runtime/dit/cpu_dit_ops.cc), compared in tests/runtime/dit/cuda_dit_ops_test.cc.
//
// qkv [batch*tokens, qkv_stride]: q in columns [0, H*d), k in [H*d, 2*H*d),
// v in [2*H*d, 3*H*d), head h at offset h*d of each; out [batch*tokens,
// out_stride], head h in columns [h*d, (h+1)*d). Device pointers.
//
// Two kernels, the same contract:
// - fp16 and bf16 with head_dim 32, 48, 64, 72, 80, 96 or 128, scale > 0,
//   qkv_stride a multiple of 8, out_stride even, qkv 16-byte and out 4-byte
//   aligned: flash attention on tensor cores (mma.sync m16n8k16, fp32
//   accumulation). A CTA of 4 warps takes 128 query rows of one (sample,
//   head) (64 at head_dim 128), each warp 16 or 32 of them, and walks the
//   sample's keys 64 at a time through two cp.async shared-memory stages
//   shared by the warps; scores, the online softmax (exp2 of scores scaled
//   by scale * log2(e), fp32) and the output accumulators stay in registers.
//   head_dim 72 (DiT-XL/2) is zero-padded to 80 for Q K^T only. P is rounded
//   to the element type before the P V product, and the softmax denominator
//   sums the rounded values. Needs compute capability 8.0.
// - anything else (fp32 always; head_dim up to 512): one warp per query
//   row, scores and accumulation in fp32 on CUDA cores, the same online
//   softmax. The reference-grade path, not a fast one: CudaDitOps runs
//   head dims above 128 (the VAE decoder's single-head mid-block attention)
//   as two GEMMs and kernels/dit/dit_softmax.h instead.
// A (sample, head)'s output depends on that sample's rows alone (batch
// invariance); the grid follows from the arguments (graph capture is fine).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"

namespace tern::kernels {

struct DitAttentionShape {
  int64_t batch = 0;
  int32_t tokens = 0;     // per sample
  int32_t num_heads = 0;
  int32_t head_dim = 0;   // <= 512
  float scale = 1.0f;     // applied to q.k
  int64_t qkv_stride = 0;  // elements
  int64_t out_stride = 0;
  // DiTFastAttn's window attention: device int32 [batch], or null (every
  // sample full). Sample b with windows[b] >= 0 attends, from query i, the
  // keys j with |i - j| <= windows[b] (a 1-D band over the token order); the
  // tensor-core kernel walks only the key tiles some query of its CTA needs.
  // A negative window, or null, is full attention with the same arithmetic.
  const int32_t* windows = nullptr;
};

// True when the tensor-core kernel takes this shape, given aligned pointers
// (else the fallback runs).
bool DitAttentionUsesTensorCores(ScalarType type, const DitAttentionShape& shape);

// Launches on `stream`. cudaErrorInvalidValue for a non-positive shape,
// head_dim over 512, or batch / tokens beyond the grid's limits
// (batch <= 65535); else the launch status.
cudaError_t LaunchDitAttention(ScalarType type, const DitAttentionShape& shape, const void* qkv, void* out,
                               cudaStream_t stream);

}  // namespace tern::kernels
