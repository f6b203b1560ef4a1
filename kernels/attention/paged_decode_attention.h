// Paged attention for decode steps: one query row per sequence, the context
// split into partitions (Flash-Decoding) of PagedDecodePartitionTokens tokens:
// kDecodePartitionTokens, halved down to 64 while the launch would have fewer
// than 256 thread blocks, so a small batch at a short context still spreads
// over the GPU.
//
// Same parameters and cache layout as paged_attention.h, with these
// differences:
//   - Query row s (of q and out) belongs to sequence s; query_start is not
//     read. The row attends to cached tokens [first, context_lens[s]) where
//     first = max(0, context_lens[s] - sliding_window) with a window, else 0;
//     with MoA spans (params.spans), each query head to its own sink and
//     band: the block reads the union of its group's ranges once (the
//     longest sink, then from the earliest band start) and masks per head.
//   - One thread block handles one (sequence, kv head, partition) and all
//     num_heads / num_kv_heads query heads of that kv head, so each K and V
//     row is read from memory once per step.
//   - The launch grid depends only on num_seqs and the caller's
//     `max_context` capacity, never on the context lengths, which are read on
//     the device: the launch can be captured once in a CUDA graph and replayed
//     with new context_lens and block tables. Blocks past a sequence's
//     context exit at once. A sequence longer than `max_context` gets NaN
//     rows (never an out-of-bounds access); a sequence with no context gets
//     zeros.
//   - When a sequence needs more than one partition, each partition leaves
//     its running max, sum and unnormalized output (fp32) in the workspace
//     and a second kernel merges them; a sequence of one partition is written
//     directly.
//
// Supported: fp32, fp16 and bf16; head_dim 64 or 128; num_heads /
// num_kv_heads from 1 to 8; any block_size; sliding windows; native, fp8 or
// int8 caches (params.kv_element, kv_quant.h; dequantized in registers, a
// quantized row read as 8 bytes a lane, scales on the device and required).
// Softmax and accumulation are fp32. K and V caches must be 16-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/attention/paged_attention.h"

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

// Tokens of one context partition at most.
inline constexpr int32_t kDecodePartitionTokens = 256;

#if defined(TERN_WITH_CUDA)
// Whether the decode kernel handles this shape (num_heads, num_kv_heads,
// head_dim, block_size of `params`); when false, use LaunchPagedAttention.
bool SupportsPagedDecodeAttention(const PagedAttentionParams& params);

// Tokens per partition of a launch for params.num_seqs sequences of at most
// max_context tokens (depends on num_seqs, num_kv_heads, sliding_window).
int32_t PagedDecodePartitionTokens(const PagedAttentionParams& params, int32_t max_context);

// Workspace bytes LaunchPagedDecodeAttention needs for that launch (0 when
// one partition suffices).
size_t PagedDecodeAttentionWorkspaceBytes(const PagedAttentionParams& params, int32_t max_context);

// Decode attention over the paged cache. Device pointers: q [num_seqs,
// q_row_stride], out [num_seqs, out_row_stride] of `type`, k_cache and
// v_cache as in paged_attention.h (of `type`, or bytes when quantized); the int32 tables of `params` on the
// device. `workspace` (device, caller-owned, at least
// PagedDecodeAttentionWorkspaceBytes(params, max_context) bytes, 256-byte
// aligned; may be null when that is 0) holds the
// partials between the two kernels, so one workspace must not serve two
// launches in flight on different streams. num_seqs == 0 launches nothing.
// cudaErrorInvalidValue for an unsupported shape, a negative max_context,
// num_seqs above 65535, a workspace too small, a misaligned cache, or spans
// together with a sliding window.
// `pdl`: both kernels launched with programmatic dependent launch
// (common/pdl.cuh).
cudaError_t LaunchPagedDecodeAttention(ScalarType type, const PagedAttentionParams& params, int32_t max_context,
                                       const void* q, const void* k_cache, const void* v_cache, void* out,
                                       void* workspace, size_t workspace_bytes, cudaStream_t stream,
                                       bool pdl = true);
#endif

}  // namespace tern::kernels
