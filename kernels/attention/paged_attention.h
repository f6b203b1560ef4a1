// Causal attention of a batch of query tokens over a paged KV cache.
//
// KV cache layout (one layer, K and V alike): [num_blocks, block_size,
// num_kv_heads, head_dim], row-major. A sequence's token j lives in block
// block_ids[block_indptr[s] + j / block_size] at offset j % block_size.
//
// Queries are packed: sequence s owns query rows [query_start[s],
// query_start[s+1]), which are its LAST n_s tokens: query i has absolute
// position context_lens[s] - n_s + i and attends to keys 0..that position
// (and only the last `sliding_window` of them when sliding_window > 0).
// Grouped-query attention: query head h reads kv head h / (num_heads /
// num_kv_heads). The cache must already hold this step's keys and values.
//
// Per-head spans (MoA, attention_spans.h): with params.spans active, query
// head h at position p attends only to its sink and its band (keys j with
// spans.Attends(num_heads, h, p, j)); heads of one GQA group may differ.
// Keys outside every head's sink and band are never read, so a caller may
// leave their blocks unmapped: a block_ids entry of -1 (a block the
// scheduler freed) is allowed only where no head of the step reads.
// Spans and sliding_window are exclusive.
//
// Quantized caches (kv_quant.h): with kv_element fp8 or int8 the caches hold
// one byte per element in the same layout, and k_scales / v_scales say how
// to dequantize them; kernels compute attention over the dequantized values.
#pragma once

#include <cstdint>

#include "kernels/attention/attention_spans.h"
#include "kernels/attention/kv_quant.h"

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

struct PagedAttentionParams {
  int32_t num_seqs = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 0;
  float scale = 1.0f;          // usually 1/sqrt(head_dim)
  int32_t sliding_window = 0;  // 0: none
  const int32_t* query_start = nullptr;   // [num_seqs + 1] offsets into query rows
  const int32_t* context_lens = nullptr;  // [num_seqs] tokens in cache, this step's included
  const int32_t* block_indptr = nullptr;  // [num_seqs + 1] offsets into block_ids
  const int32_t* block_ids = nullptr;     // [block_indptr[num_seqs]] physical block per logical block
  int64_t q_row_stride = 0;    // elements between query rows (>= num_heads * head_dim)
  int64_t out_row_stride = 0;  // elements between output rows
  KvElement kv_element = KvElement::kNative;  // how k_cache and v_cache store elements
  // fp8: [num_kv_heads] head scales of the layer; int8: [num_blocks *
  // block_size, num_kv_heads] token scales of the layer; native: unused.
  const float* k_scales = nullptr;
  const float* v_scales = nullptr;
  // MoA per-head spans of this layer (pointers in the kernel's memory);
  // inactive (num_buckets == 0) for dense attention.
  AttentionSpanRules spans;
};

// fp32 reference: q [rows, q_row_stride], out [rows, out_row_stride]; softmax
// in double so it is strictly more accurate than the kernels it judges.
// Only sequences [seq_begin, seq_end) are computed, so callers can split the
// batch across threads ([0, num_seqs) for all).
void PagedAttentionReference(const PagedAttentionParams& params, const float* q, const float* k_cache,
                             const float* v_cache, float* out, int32_t seq_begin, int32_t seq_end);
// The same over a quantized cache (params.kv_element fp8 or int8; caches of
// bytes, host scales): each K and V head row is dequantized per kv_quant.h
// and then used as the fp32 reference uses it.
void PagedAttentionQuantizedReference(const PagedAttentionParams& params, const float* q, const uint8_t* k_cache,
                                      const uint8_t* v_cache, float* out, int32_t seq_begin, int32_t seq_end);

// Where token `slot` (= block * block_size + offset) of a layer's cache
// starts: slot * num_kv_heads * head_dim elements from the base. A negative
// slot marks a padding row (a CUDA-graph batch padded to its bucket): its k
// and v are not stored.
void WriteKvReference(int64_t num_tokens, int32_t num_kv_heads, int32_t head_dim, const float* k,
                      int64_t k_row_stride, const float* v, int64_t v_row_stride, const int32_t* slots,
                      float* k_cache, float* v_cache);

#if defined(TERN_WITH_CUDA)
// GPU paged attention for prefill chunks and decode alike: one block per
// (query row, head), warps splitting the keys with an online softmax in
// fp32. All pointers in `params` are device pointers; `row_seq`
// [num_rows] maps each query row to its sequence. head_dim is at most 256
// (fastest at multiples of 32). q and out are of `type`; the caches too, or
// bytes when params.kv_element is fp8 or int8 (scales on the device).
cudaError_t LaunchPagedAttention(ScalarType type, const PagedAttentionParams& params, int32_t num_rows,
                                 const int32_t* row_seq, const void* q, const void* k_cache, const void* v_cache,
                                 void* out, cudaStream_t stream);

// Stores k and v rows (of `type`) at their cache slots (device pointers).
cudaError_t LaunchWriteKv(ScalarType type, int64_t num_tokens, int32_t num_kv_heads, int32_t head_dim, const void* k,
                          int64_t k_row_stride, const void* v, int64_t v_row_stride, const int32_t* slots,
                          void* k_cache, void* v_cache, cudaStream_t stream);

// Stores k and v rows (of `type`) quantized per kv_quant.h
// (WriteKvQuantizedReference, bit for bit on the rows' values): one warp per
// (token, kv head). Device pointers; head_dim at most 256.
cudaError_t LaunchWriteKvQuantized(ScalarType type, const KvWriteQuantParams& params, const void* k, const void* v,
                                   const int32_t* slots, uint8_t* k_cache, uint8_t* v_cache, float* k_scales,
                                   float* v_scales, cudaStream_t stream);
#endif

}  // namespace tern::kernels
