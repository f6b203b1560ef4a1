// Tiled causal attention of packed query chunks over the paged KV cache, on
// tensor cores: the prefill kernel.
//
// Same contract as LaunchPagedAttention (kernels/attention/paged_attention.h):
// the same PagedAttentionParams, the same paged KV layout, query rows of
// sequence s are its LAST n_s tokens (so chunked prefill and prefix-cache hits
// read earlier context from the cache), GQA, sliding_window and MoA per-head
// spans alike (a CTA visits only its head's sink tiles and the band tiles of
// its rows, and loads no key outside them). It is
// correct for any mix of query lengths, one-row sequences included, but it
// pays off only when some sequence has many query rows.
//
// Each CTA computes one tile of kFlashQueryTile query rows of one sequence and
// one head (4 warps of 32 rows); K and V are gathered 64 keys at a time from
// the pages into shared memory, scores and the softmax run in fp32, products
// in fp16/bf16 on tensor cores with fp32 accumulation.
//
// Quantized caches (kv_element fp8 or int8, kernels/attention/kv_quant.h):
// the bytes are gathered the same way and converted in shared memory. K's
// codes enter the products as they are (exact in fp16 and bf16) and K's scale
// (per kv head, or per token for int8) multiplies each fp32 score; V is
// dequantized, x' = float(code) * scale in fp32, and rounded to the compute
// type. So the result is the attention over the dequantized cache of
// PagedAttentionQuantizedReference up to the rounding of x' (V only) to
// fp16/bf16.
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/attention/paged_attention.h"
#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

// Query rows per CTA.
inline constexpr int32_t kFlashQueryTile = 128;

// CTAs along the tile axis for `num_rows` packed query rows of `num_seqs`
// sequences: every sequence gets ceil(n_s / kFlashQueryTile) tiles or one
// more, whatever the split, so the grid follows from host-known counts alone.
inline int64_t FlashPrefillTileCount(int64_t num_rows, int32_t num_seqs) {
  return num_rows / kFlashQueryTile + num_seqs;
}

#if defined(TERN_WITH_CUDA)
// cudaSuccess when LaunchFlashPrefillAttention handles this shape, else
// cudaErrorNotSupported (the caller then uses LaunchPagedAttention).
// Supported: fp16 and bf16 (fp32 takes LaunchPagedAttention); head_dim 64, 80,
// 96 or 128; num_heads a multiple of num_kv_heads; q_row_stride a multiple of
// 8 elements and out_row_stride a multiple of 2; a native, fp8 or int8 cache;
// MoA spans or a sliding window, not both. Reads only the scalar fields of
// `params`.
cudaError_t SupportsFlashPrefillAttention(ScalarType type, const PagedAttentionParams& params);

// Launches the kernel on `stream`. All pointers in `params` and q, k_cache,
// v_cache, out are device pointers; q [num_rows, q_row_stride] and out
// [num_rows, out_row_stride] of `type`; k_cache/v_cache are one layer's cache
// (of `type`, or bytes when params.kv_element is fp8 or int8, with
// params.k_scales / v_scales on the device as kv_quant.h lays them out).
// q, k_cache and v_cache must be 16-byte aligned, out 4-byte aligned.
// num_rows must equal query_start[num_seqs]; it and num_seqs fix the grid, so
// nothing is read back from the device and the launch can be captured in a
// CUDA graph. Returns cudaErrorNotSupported for shapes the query above
// rejects, cudaErrorInvalidValue for misaligned pointers, a quantized cache
// without its scales or a batch too large for the grid, else the launch
// status.
cudaError_t LaunchFlashPrefillAttention(ScalarType type, const PagedAttentionParams& params, int32_t num_rows,
                                        const void* q, const void* k_cache, const void* v_cache, void* out,
                                        cudaStream_t stream);
#endif

}  // namespace tern::kernels
