// Paged attention, one thread block per (query row, head). Each of the
// block's warps walks a strided share of the keys; per key the warp computes
// q.k with a shuffle reduction and folds the value into an online softmax
// (running max m, running sum l, accumulator acc). The warps' partial states
// are merged through shared memory at the end. Quantized caches are
// dequantized element by element (kv_quant.h).
#include <cfloat>

#include "kernels/attention/kv_quant.cuh"
#include "kernels/attention/paged_attention.h"
#include "kernels/common/dispatch.cuh"

namespace tern::kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kPerLane = kMaxHeadDim / 32;

// Element `index` of a cache of E (native: of T), unscaled.
template <typename T, KvElement E>
__device__ __forceinline__ float CacheValue(const void* cache, int64_t index) {
  if constexpr (E == KvElement::kNative) {
    return ToFloat(static_cast<const T*>(cache)[index]);
  } else {
    return DecodeKv1<E>(static_cast<const uint8_t*>(cache)[index]);
  }
}

template <typename T, KvElement E>
__global__ void PagedAttentionKernel(PagedAttentionParams p, const int32_t* __restrict__ row_seq, const T* q,
                                     const void* __restrict__ k_cache, const void* __restrict__ v_cache, T* out) {
  const int32_t row = blockIdx.x;
  const int32_t head = blockIdx.y;
  const int32_t warp = threadIdx.x / 32;
  const int32_t lane = threadIdx.x % 32;
  const int32_t s = row_seq[row];
  const int32_t n_q = p.query_start[s + 1] - p.query_start[s];
  const int32_t position = p.context_lens[s] - n_q + (row - p.query_start[s]);
  // The keys of this head: [0, sink_end) then [band, position] (dense: no
  // sink; band 0 or the window's first key; MoA: the head's own spans).
  int32_t sink_end = 0;
  int32_t band = p.sliding_window > 0 ? max(0, position - p.sliding_window + 1) : 0;
  if (p.spans.active()) {
    sink_end = p.spans.SinkEnd(head, position + 1);
    band = max(sink_end, p.spans.BandStart(p.num_heads, head, position + 1));
  }
  const int32_t run = sink_end + position + 1 - band;
  const int32_t* blocks = p.block_ids + p.block_indptr[s];
  const int32_t kv_head = head / (p.num_heads / p.num_kv_heads);
  const int64_t token_stride = int64_t(p.num_kv_heads) * p.head_dim;
  const int32_t per_lane = (p.head_dim + 31) / 32;

  // Lane `lane` owns dimensions lane, lane + 32, ...; lanes past head_dim hold zeros.
  float qv[kPerLane];
  const T* qh = q + int64_t(row) * p.q_row_stride + int64_t(head) * p.head_dim;
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < p.head_dim ? ToFloat(qh[d]) * p.scale : 0.0f;
  }

  float m = -FLT_MAX, l = 0.0f, acc[kPerLane];
  for (int i = 0; i < kPerLane; ++i) acc[i] = 0.0f;
  for (int32_t t = warp; t < run; t += kWarps) {
    const int32_t j = t < sink_end ? t : band + (t - sink_end);
    const int64_t slot = int64_t(blocks[j / p.block_size]) * p.block_size + j % p.block_size;
    const int64_t row_base = slot * token_stride + int64_t(kv_head) * p.head_dim;
    const float k_scale = KvRowScale<E>(p.k_scales, slot, p.num_kv_heads, kv_head);
    const float v_scale = KvRowScale<E>(p.v_scales, slot, p.num_kv_heads, kv_head);
    float dot = 0.0f;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + 32 * i;
      if (d < p.head_dim) dot += qv[i] * (CacheValue<T, E>(k_cache, row_base + d) * k_scale);
    }
    const float score = WarpSum(dot);
    const float m_new = fmaxf(m, score);
    const float rescale = __expf(m - m_new);
    const float weight = __expf(score - m_new);
    l = l * rescale + weight;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + 32 * i;
      acc[i] = acc[i] * rescale + (d < p.head_dim ? weight * (CacheValue<T, E>(v_cache, row_base + d) * v_scale) : 0.0f);
    }
    m = m_new;
  }

  __shared__ float warp_m[kWarps], warp_l[kWarps];
  __shared__ float warp_acc[kWarps][kMaxHeadDim];
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
  for (int i = 0; i < per_lane; ++i) {
    if (lane + 32 * i < p.head_dim) warp_acc[warp][lane + 32 * i] = acc[i];
  }
  __syncthreads();
  float m_all = -FLT_MAX;
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, warp_m[w]);
  float l_all = 0.0f;
  for (int w = 0; w < kWarps; ++w) l_all += warp_l[w] * __expf(warp_m[w] - m_all);
  T* oh = out + int64_t(row) * p.out_row_stride + int64_t(head) * p.head_dim;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) sum += warp_acc[w][d] * __expf(warp_m[w] - m_all);
    oh[d] = FromFloat<T>(sum / l_all);
  }
}

template <typename T>
__global__ void WriteKvKernel(int64_t width, const T* k, int64_t k_stride, const T* v, int64_t v_stride,
                              const int32_t* slots, T* k_cache, T* v_cache) {
  const int64_t t = blockIdx.x;
  if (slots[t] < 0) return;  // a padding row: nothing to store
  const int64_t base = int64_t(slots[t]) * width;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    k_cache[base + c] = k[t * k_stride + c];
    v_cache[base + c] = v[t * v_stride + c];
  }
}

// One warp per (token, kv head): absmax by shuffles (int8), then each lane
// quantizes its dimensions d = lane, lane + 32, ...
constexpr int kWriteWarps = 4;
template <typename T, KvElement E>
__global__ void WriteKvQuantizedKernel(KvWriteQuantParams p, const T* __restrict__ k, const T* __restrict__ v,
                                       const int32_t* __restrict__ slots, uint8_t* __restrict__ k_cache,
                                       uint8_t* __restrict__ v_cache, float* __restrict__ k_scales,
                                       float* __restrict__ v_scales) {
  const int64_t t = blockIdx.x;
  const int32_t head = blockIdx.y * kWriteWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (head >= p.num_kv_heads || slots[t] < 0) return;  // past the heads, or a padding row
  const int64_t slot = slots[t];
  for (int side = 0; side < 2; ++side) {
    const T* x = (side == 0 ? k + t * p.k_row_stride : v + t * p.v_row_stride) + int64_t(head) * p.head_dim;
    uint8_t* q = (side == 0 ? k_cache : v_cache) + (slot * p.num_kv_heads + head) * p.head_dim;
    float* scales = side == 0 ? k_scales : v_scales;
    float values[kPerLane];
    float absmax = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      values[i] = d < p.head_dim ? ToFloat(x[d]) : 0.0f;
      absmax = fmaxf(absmax, fabsf(values[i]));
    }
    float inv;
    if constexpr (E == KvElement::kInt8) {
      absmax = WarpMax(absmax);
      inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
      if (lane == 0) scales[slot * p.num_kv_heads + head] = absmax / 127.0f;
    } else {
      inv = 1.0f / scales[head];
    }
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < p.head_dim) q[d] = E == KvElement::kInt8 ? QuantizeInt8(values[i], inv) : QuantizeFp8(values[i], inv);
    }
  }
}

}  // namespace

cudaError_t LaunchWriteKvQuantized(ScalarType type, const KvWriteQuantParams& params, const void* k, const void* v,
                                   const int32_t* slots, uint8_t* k_cache, uint8_t* v_cache, float* k_scales,
                                   float* v_scales, cudaStream_t stream) {
  if (params.num_tokens == 0) return cudaSuccess;
  if (params.num_tokens < 0 || params.num_tokens > INT32_MAX || params.head_dim <= 0 ||
      params.head_dim > kMaxHeadDim || params.num_kv_heads <= 0 || params.element == KvElement::kNative) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(unsigned(params.num_tokens), unsigned((params.num_kv_heads + kWriteWarps - 1) / kWriteWarps));
  TERN_DISPATCH_SCALAR(type, T, {
    const T* kt = static_cast<const T*>(k);
    const T* vt = static_cast<const T*>(v);
    if (params.element == KvElement::kInt8) {
      WriteKvQuantizedKernel<T, KvElement::kInt8><<<grid, kWriteWarps * 32, 0, stream>>>(
          params, kt, vt, slots, k_cache, v_cache, k_scales, v_scales);
    } else {
      WriteKvQuantizedKernel<T, KvElement::kFp8E4M3><<<grid, kWriteWarps * 32, 0, stream>>>(
          params, kt, vt, slots, k_cache, v_cache, k_scales, v_scales);
    }
  });
  return cudaGetLastError();
}

cudaError_t LaunchPagedAttention(ScalarType type, const PagedAttentionParams& params, int32_t num_rows,
                                 const int32_t* row_seq, const void* q, const void* k_cache, const void* v_cache,
                                 void* out, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (params.head_dim <= 0 || params.head_dim > kMaxHeadDim || params.num_kv_heads <= 0 ||
      params.num_heads % params.num_kv_heads != 0 || params.num_heads > 65535 ||
      (params.spans.active() && params.sliding_window > 0)) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>(num_rows), static_cast<unsigned>(params.num_heads));
  TERN_DISPATCH_SCALAR(type, T, {
    const T* qt = static_cast<const T*>(q);
    T* ot = static_cast<T*>(out);
    switch (params.kv_element) {
      case KvElement::kNative:
        PagedAttentionKernel<T, KvElement::kNative>
            <<<grid, kWarps * 32, 0, stream>>>(params, row_seq, qt, k_cache, v_cache, ot);
        break;
      case KvElement::kFp8E4M3:
        PagedAttentionKernel<T, KvElement::kFp8E4M3>
            <<<grid, kWarps * 32, 0, stream>>>(params, row_seq, qt, k_cache, v_cache, ot);
        break;
      case KvElement::kInt8:
        PagedAttentionKernel<T, KvElement::kInt8>
            <<<grid, kWarps * 32, 0, stream>>>(params, row_seq, qt, k_cache, v_cache, ot);
        break;
    }
  });
  return cudaGetLastError();
}

cudaError_t LaunchWriteKv(ScalarType type, int64_t num_tokens, int32_t num_kv_heads, int32_t head_dim, const void* k,
                          int64_t k_row_stride, const void* v, int64_t v_row_stride, const int32_t* slots,
                          void* k_cache, void* v_cache, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  const int64_t width = int64_t(num_kv_heads) * head_dim;
  TERN_DISPATCH_SCALAR(type, T,
                       WriteKvKernel<T><<<static_cast<unsigned>(num_tokens), 256, 0, stream>>>(
                           width, static_cast<const T*>(k), k_row_stride, static_cast<const T*>(v), v_row_stride,
                           slots, static_cast<T*>(k_cache), static_cast<T*>(v_cache)));
  return cudaGetLastError();
}

}  // namespace tern::kernels
