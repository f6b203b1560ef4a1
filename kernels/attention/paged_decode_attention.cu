// Split-context decode attention. A thread block of kThreads threads owns one
// (sequence, kv head, partition) and every query head of that kv head's
// group. Lanes work in teams of kLanes threads, one token per team at a time,
// each lane holding 16 bytes of the token's K or V row, so a row is one
// coalesced read. Three phases per partition:
//   1. scores: each team dots its tokens' K rows with the group's queries
//      (held in registers, pre-scaled by scale * log2(e)), sums the lanes'
//      partial dots of kUnroll tokens at once with each lane keeping a share
//      (TransposeSum: kUnroll * group - 1 shuffles a lane, not
//      kUnroll * group * log2(kLanes), which bound GQA groups over 8-bit
//      caches), and leaves them in shared memory;
//   2. softmax: one warp per head takes the partition's max and the sum of
//      exp2(score - max), rewriting the scores as weights;
//   3. values: each team accumulates weight * V over its tokens in fp32; the
//      teams' sums are folded by shuffles within a warp, then across warps
//      through shared memory.
// Partitions of a multi-partition sequence leave (max, sum, unnormalized
// output) in the workspace; DecodeMergeKernel rescales and sums them.
//
// Quantized caches (kv_quant.h): a lane holds 8 bytes (8 elements) of a row
// instead of 16, so it keeps as many values in registers as with fp16. fp8's
// per-head K scale is folded into the query and its V scale into the output;
// int8's per-token scales are staged in shared memory beside the slots and
// multiply each token's score (K) and softmax weight (V).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "kernels/attention/kv_quant.cuh"
#include "kernels/attention/paged_decode_attention.h"
#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/common/streaming_load.cuh"

namespace tern::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kPart = kDecodePartitionTokens;  // shared-memory capacity of one partition
constexpr int32_t kMinDecodePartitionTokens = 64;
// Partitions shrink (down to 64 tokens) until a launch has this many blocks,
// so that small batches at short contexts still spread over the SMs.
constexpr int64_t kTargetBlocks = 256;
constexpr int kUnroll = 4;  // tokens per team in flight, for memory-level parallelism
constexpr int kMaxGroup = 8;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxSeqs = 65535;

// Converts 16 loaded bytes of T into 16 / sizeof(T) floats.
template <typename T>
__device__ __forceinline__ void ToFloats(const uint4& raw, float* out);
template <>
__device__ __forceinline__ void ToFloats<float>(const uint4& raw, float* out) {
  out[0] = __uint_as_float(raw.x);
  out[1] = __uint_as_float(raw.y);
  out[2] = __uint_as_float(raw.z);
  out[3] = __uint_as_float(raw.w);
}
template <>
__device__ __forceinline__ void ToFloats<__half>(const uint4& raw, float* out) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}
template <>
__device__ __forceinline__ void ToFloats<__nv_bfloat16>(const uint4& raw, float* out) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// How a lane reads its piece of a cached row: kVec elements of 16 bytes
// (native T) or 8 bytes (fp8, int8), as floats before any scale.
template <typename T, KvElement E>
struct KvLane {
  using Raw = uint4;
  using Elem = T;
  static constexpr int kVec = 16 / sizeof(T);
  static __device__ __forceinline__ Raw Load(const Elem* ptr) { return LoadStreaming16(ptr); }
  static __device__ __forceinline__ Raw Zero() { return make_uint4(0, 0, 0, 0); }
  static __device__ __forceinline__ void Convert(const Raw& raw, float* out) { ToFloats<T>(raw, out); }
};
template <typename T>
struct KvLane<T, KvElement::kFp8E4M3> {
  using Raw = uint2;
  using Elem = uint8_t;
  static constexpr int kVec = 8;
  static __device__ __forceinline__ Raw Load(const Elem* ptr) { return LoadStreaming8(ptr); }
  static __device__ __forceinline__ Raw Zero() { return make_uint2(0, 0); }
  static __device__ __forceinline__ void Convert(const Raw& raw, float* out) {
    DecodeKv8<KvElement::kFp8E4M3>(raw, out);
  }
};
template <typename T>
struct KvLane<T, KvElement::kInt8> {
  using Raw = uint2;
  using Elem = uint8_t;
  static constexpr int kVec = 8;
  static __device__ __forceinline__ Raw Load(const Elem* ptr) { return LoadStreaming8(ptr); }
  static __device__ __forceinline__ Raw Zero() { return make_uint2(0, 0); }
  static __device__ __forceinline__ void Convert(const Raw& raw, float* out) { DecodeKv8<KvElement::kInt8>(raw, out); }
};

// The cached tokens one (sequence, kv head) block reads: [0, sink_end) then
// [band, context), as one run of `length` tokens split into `parts`
// partitions. Dense: no sink, band = 0 (or the window's first token). With
// MoA spans: the union over the group's query heads, the sink up to the
// longest sink of the group and the band from the earliest band start;
// each head then masks the keys outside its own sink and band. Freed blocks
// lie outside every head's range, so they are never read.
struct Span {
  int32_t sink_end, band, length, parts;
  // The cache position of run index t.
  __device__ __forceinline__ int32_t Token(int32_t t) const { return t < sink_end ? t : band + (t - sink_end); }
};

__device__ __forceinline__ Span SequenceSpan(const PagedAttentionParams& p, int32_t context, int32_t kv_head,
                                             int32_t part_tokens) {
  int32_t sink_end = 0, band;
  if (p.spans.active()) {
    const int32_t group = p.num_heads / p.num_kv_heads;
    band = context;
    for (int32_t g = 0; g < group; ++g) {
      const int32_t head = kv_head * group + g;
      sink_end = max(sink_end, p.spans.SinkEnd(head, context));
      band = min(band, p.spans.BandStart(p.num_heads, head, context));
    }
    band = max(band, sink_end);
  } else {
    band = p.sliding_window > 0 ? max(0, context - p.sliding_window) : 0;
  }
  const int32_t length = max(0, sink_end + context - band);
  return {sink_end, band, length, (length + part_tokens - 1) / part_tokens};
}

// Workspace layout: [entries] maxima, [entries] sums (each padded to 64
// floats), then [entries, head_dim] outputs, entry = (seq * num_heads + head)
// * parts + part.
int64_t PaddedEntries(int64_t entries) { return (entries + 63) / 64 * 64; }

int64_t WorkspaceFloats(int64_t entries, int32_t head_dim) { return 2 * PaddedEntries(entries) + entries * head_dim; }

// Sums kCount values across a team's kLanes lanes (an xor butterfly over
// offsets kLanes / 2 .. 1), leaving each lane a different share of the
// totals: while a lane holds more than one value, each stage hands its
// partner the half of its values that the partner's lane bit selects and
// adds the half the partner hands back, so kCount values cost kCount - 1
// shuffles instead of kCount * log2(kLanes). Afterwards v[i] holds the total
// of value index *first + i for i < max(1, kCount / kLanes); a lane whose
// total another lane also holds (kCount < kLanes) has *owner false.
template <int kCount, int kOffset>
__device__ __forceinline__ void TransposeSum(float* v, int sub, int* first, bool* owner) {
  if constexpr (kOffset >= 1) {
    if constexpr (kCount > 1) {
      constexpr int kHalf = kCount / 2;
      const bool upper = (sub & kOffset) != 0;
#pragma unroll
      for (int i = 0; i < kHalf; ++i) {
        const float send = upper ? v[i] : v[i + kHalf];
        const float keep = upper ? v[i + kHalf] : v[i];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, kOffset);
      }
      if (upper) *first += kHalf;
      TransposeSum<kHalf, kOffset / 2>(v, sub, first, owner);
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], kOffset);
      if ((sub & kOffset) != 0) *owner = false;
      TransposeSum<1, kOffset / 2>(v, sub, first, owner);
    }
  }
}

template <typename T, KvElement E, int kHeadDim, int kGroup>
__global__ void __launch_bounds__(kThreads)
    DecodePartitionKernel(PagedAttentionParams p, int32_t max_context, int32_t part_tokens, int32_t stride_parts,
                          const T* __restrict__ q, const void* __restrict__ k_raw, const void* __restrict__ v_raw,
                          T* __restrict__ out, float* __restrict__ part_max, float* __restrict__ part_sum,
                          float* __restrict__ part_out) {
  PdlAllowDependents();
  PdlWaitForPrior();
  using Lane = KvLane<T, E>;
  using Elem = typename Lane::Elem;
  const Elem* __restrict__ k_cache = static_cast<const Elem*>(k_raw);
  const Elem* __restrict__ v_cache = static_cast<const Elem*>(v_raw);
  constexpr bool kTokenScales = E == KvElement::kInt8;
  constexpr int kVec = Lane::kVec;
  constexpr int kLanes = kHeadDim / kVec;  // threads per token row: 8, 16 or 32
  constexpr int kTeams = kThreads / kLanes;
  static_assert(kLanes <= 32 && 32 % kLanes == 0, "a token row must fit in one warp");

  const int32_t part = blockIdx.x;
  const int32_t kv_head = blockIdx.y;
  const int32_t s = blockIdx.z;
  const int32_t group = p.num_heads / p.num_kv_heads;
  const int32_t head0 = kv_head * group;
  const int32_t context = p.context_lens[s];
  T* out_row = out + int64_t(s) * p.out_row_stride + int64_t(head0) * kHeadDim;
  if (context <= 0 || context > max_context) {
    // Nothing to attend to (zeros), or more than the launch was sized for (NaN).
    if (part == 0) {
      const float fill = context <= 0 ? 0.0f : __int_as_float(0x7fc00000);
      for (int i = threadIdx.x; i < group * kHeadDim; i += kThreads) out_row[i] = FromFloat<T>(fill);
    }
    return;
  }
  const Span span = SequenceSpan(p, context, kv_head, part_tokens);
  if (part >= span.parts) return;
  const int32_t run0 = part * part_tokens;  // this partition's first run index
  const int32_t n = min(part_tokens, span.length - part * part_tokens);

  __shared__ int32_t slots[kPart];
  __shared__ float k_token_scale[kTokenScales ? kPart : 1], v_token_scale[kTokenScales ? kPart : 1];
  __shared__ float scores[kGroup][kPart];
  __shared__ float folded[kWarps][kGroup][kHeadDim];
  __shared__ float head_max[kGroup], head_sum[kGroup];

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int sub = tid % kLanes;  // which 16 bytes of the row
  const int team = tid / kLanes;

  const int32_t* blocks = p.block_ids + p.block_indptr[s];
  for (int t = tid; t < n; t += kThreads) {
    const int32_t j = span.Token(run0 + t);
    slots[t] = blocks[j / p.block_size] * p.block_size + j % p.block_size;
    if constexpr (kTokenScales) {
      const int64_t scale_index = int64_t(slots[t]) * p.num_kv_heads + kv_head;
      k_token_scale[t] = p.k_scales[scale_index];
      v_token_scale[t] = p.v_scales[scale_index];
    }
  }

  // MoA: each query head of the group keeps the keys of its own sink and
  // band; the others score -inf (weight 0). The last key is in every band,
  // so a head's softmax over the whole run always has a key.
  int32_t head_sink[kGroup], head_band[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    head_sink[g] = 0;
    head_band[g] = 0;
    if (p.spans.active() && g < group) {
      head_sink[g] = p.spans.SinkEnd(head0 + g, context);
      head_band[g] = p.spans.BandStart(p.num_heads, head0 + g, context);
    }
  }

  float qf[kGroup][kVec];
  {
    const T* q_row = q + int64_t(s) * p.q_row_stride + int64_t(head0) * kHeadDim + sub * kVec;
    float q_scale = p.scale * kLog2e;
    if constexpr (E == KvElement::kFp8E4M3) q_scale *= p.k_scales[kv_head];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) qf[g][i] = g < group ? ToFloat(q_row[g * kHeadDim + i]) * q_scale : 0.0f;
    }
  }
  __syncthreads();

  const int64_t token_stride = int64_t(p.num_kv_heads) * kHeadDim;
  const int64_t row_offset = int64_t(kv_head) * kHeadDim + sub * kVec;

  // 1. Scores. The loop bounds are uniform over the block so every lane of a
  // warp reaches the shuffles; teams past the end dot zeros and store nothing.
  for (int base = 0; base < n; base += kTeams * kUnroll) {
    typename Lane::Raw raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kTeams + team;
      raw[u] = t < n ? Lane::Load(k_cache + int64_t(slots[t]) * token_stride + row_offset) : Lane::Zero();
    }
    // The lane's partial dots of its kUnroll tokens with the group's
    // queries, index u * kGroup + g; summed across the team with each lane
    // keeping a share (TransposeSum), which then writes its scores.
    constexpr int kDots = kUnroll * kGroup;
    float dot[kDots];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[kVec];
      Lane::Convert(raw[u], kf);
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < kVec; ++i) d = fmaf(qf[g][i], kf[i], d);
        dot[u * kGroup + g] = d;
      }
    }
    int first = 0;
    bool owner = true;
    TransposeSum<kDots, kLanes / 2>(dot, sub, &first, &owner);
    constexpr int kKept = kDots >= kLanes ? kDots / kLanes : 1;
    if (owner) {
#pragma unroll
      for (int i = 0; i < kKept; ++i) {
        const int index = first + i;
        const int u = index / kGroup, g = index % kGroup;
        const int t = base + u * kTeams + team;
        if (t < n) {
          const float k_scale = kTokenScales ? k_token_scale[t] : 1.0f;
          bool kept = true;
          if (p.spans.active()) {
            // The head's sink and band by selects, not an index into the
            // arrays (which would put them in local memory).
            int32_t sink = 0, band = 0;
#pragma unroll
            for (int h = 0; h < kGroup; ++h) {
              sink = h == g ? head_sink[h] : sink;
              band = h == g ? head_band[h] : band;
            }
            const int32_t j = span.Token(run0 + t);
            kept = j < sink || j >= band;
          }
          scores[g][t] = kept ? dot[i] * k_scale : -INFINITY;
        }
      }
    }
  }
  __syncthreads();

  // 2. Softmax within the partition (base-2 exponent: the scores carry log2(e)).
  for (int g = warp; g < group; g += kWarps) {
    float m = -FLT_MAX;
    for (int t = lane; t < n; t += 32) m = fmaxf(m, scores[g][t]);
    m = WarpMax(m);
    float l = 0.0f;
    for (int t = lane; t < n; t += 32) {
      const float e = exp2f(scores[g][t] - m);
      scores[g][t] = e;
      l += e;
    }
    l = WarpSum(l);
    if (lane == 0) {
      head_max[g] = m;
      head_sum[g] = l;
    }
  }
  __syncthreads();

  // 3. Values.
  float acc[kGroup][kVec];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
#pragma unroll
    for (int i = 0; i < kVec; ++i) acc[g][i] = 0.0f;
  }
  for (int base = 0; base < n; base += kTeams * kUnroll) {
    typename Lane::Raw raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kTeams + team;
      raw[u] = t < n ? Lane::Load(v_cache + int64_t(slots[t]) * token_stride + row_offset) : Lane::Zero();
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kTeams + team;
      if (t < n) {
        float vf[kVec];
        Lane::Convert(raw[u], vf);
        const float v_scale = kTokenScales ? v_token_scale[t] : 1.0f;
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
          if (kGroup > 1 && g >= group) break;
          const float w = scores[g][t] * v_scale;
#pragma unroll
          for (int i = 0; i < kVec; ++i) acc[g][i] = fmaf(w, vf[i], acc[g][i]);
        }
      }
    }
  }
#pragma unroll
  for (int offset = 16; offset >= kLanes; offset /= 2) {
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], offset);
    }
  }
  if (lane < kLanes) {
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) folded[warp][g][sub * kVec + i] = acc[g][i];
    }
  }
  __syncthreads();

  for (int idx = tid; idx < group * kHeadDim; idx += kThreads) {
    const int g = idx / kHeadDim;
    const int d = idx % kHeadDim;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += folded[w][g][d];
    if constexpr (E == KvElement::kFp8E4M3) sum *= p.v_scales[kv_head];
    if (span.parts == 1) {
      out_row[idx] = FromFloat<T>(sum / head_sum[g]);
    } else {
      const int64_t entry = (int64_t(s) * p.num_heads + head0 + g) * stride_parts + part;
      part_out[entry * kHeadDim + d] = sum;
      if (d == 0) {
        part_max[entry] = head_max[g];
        part_sum[entry] = head_sum[g];
      }
    }
  }
}

// One block per (head, sequence), one thread per output element.
template <typename T>
__global__ void DecodeMergeKernel(PagedAttentionParams p, int32_t max_context, int32_t part_tokens, int32_t stride_parts,
                                  const float* __restrict__ part_max, const float* __restrict__ part_sum,
                                  const float* __restrict__ part_out, T* __restrict__ out) {
  PdlAllowDependents();
  PdlWaitForPrior();
  const int32_t head = blockIdx.x;
  const int32_t s = blockIdx.y;
  const int32_t context = p.context_lens[s];
  if (context <= 0 || context > max_context) return;
  const Span span = SequenceSpan(p, context, head / (p.num_heads / p.num_kv_heads), part_tokens);
  if (span.parts <= 1) return;  // written by the partition kernel
  const int64_t entry0 = (int64_t(s) * p.num_heads + head) * stride_parts;
  float m = -FLT_MAX;
  for (int i = 0; i < span.parts; ++i) m = fmaxf(m, part_max[entry0 + i]);
  T* out_row = out + int64_t(s) * p.out_row_stride + int64_t(head) * p.head_dim;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int i = 0; i < span.parts; ++i) {
      const float w = exp2f(part_max[entry0 + i] - m);
      num = fmaf(w, part_out[(entry0 + i) * p.head_dim + d], num);
      den = fmaf(w, part_sum[entry0 + i], den);
    }
    out_row[d] = FromFloat<T>(num / den);
  }
}

int32_t CeilDiv(int64_t a, int64_t b) { return int32_t((a + b - 1) / b); }

template <typename T, KvElement E, int kHeadDim>
cudaError_t LaunchForHeadDim(int32_t group, dim3 grid, const PagedAttentionParams& p, int32_t max_context,
                             int32_t part_tokens, int32_t parts, const void* q, const void* k, const void* v, void* out,
                             float* part_max, float* part_sum, float* part_out, cudaStream_t stream, bool pdl) {
  const auto args = [&](auto kernel) {
    return LaunchWithPdl(pdl, kernel, grid, dim3(kThreads), 0, stream, p, max_context, part_tokens, parts,
                         static_cast<const T*>(q), k, v, static_cast<T*>(out), part_max, part_sum, part_out);
  };
  if (group == 1) return args(DecodePartitionKernel<T, E, kHeadDim, 1>);
  if (group == 2) return args(DecodePartitionKernel<T, E, kHeadDim, 2>);
  if (group <= 4) return args(DecodePartitionKernel<T, E, kHeadDim, 4>);
  return args(DecodePartitionKernel<T, E, kHeadDim, kMaxGroup>);
}

template <typename T, KvElement E>
cudaError_t LaunchForElement(int32_t group, dim3 grid, const PagedAttentionParams& p, int32_t max_context,
                             int32_t part_tokens, int32_t parts, const void* q, const void* k, const void* v,
                             void* out, float* part_max, float* part_sum, float* part_out, cudaStream_t stream,
                             bool pdl) {
  if (p.head_dim == 64) {
    return LaunchForHeadDim<T, E, 64>(group, grid, p, max_context, part_tokens, parts, q, k, v, out, part_max,
                                      part_sum, part_out, stream, pdl);
  }
  return LaunchForHeadDim<T, E, 128>(group, grid, p, max_context, part_tokens, parts, q, k, v, out, part_max,
                                     part_sum, part_out, stream, pdl);
}

}  // namespace

bool SupportsPagedDecodeAttention(const PagedAttentionParams& p) {
  if (p.head_dim != 64 && p.head_dim != 128) return false;
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_kv_heads > 65535 || p.block_size <= 0) return false;
  if (p.num_heads % p.num_kv_heads != 0) return false;
  return p.num_heads / p.num_kv_heads <= kMaxGroup;
}

int32_t PagedDecodePartitionTokens(const PagedAttentionParams& p, int32_t max_context) {
  // A window bounds the span as well as the context does.
  const int32_t span = p.sliding_window > 0 ? std::min(max_context, p.sliding_window) : max_context;
  const int64_t units = int64_t(std::max(p.num_seqs, 0)) * std::max(p.num_kv_heads, 1);
  int32_t part = kDecodePartitionTokens;
  while (part > kMinDecodePartitionTokens && units * CeilDiv(std::max(span, 1), part) < kTargetBlocks) part /= 2;
  return part;
}

size_t PagedDecodeAttentionWorkspaceBytes(const PagedAttentionParams& p, int32_t max_context) {
  const int32_t span = p.sliding_window > 0 ? std::min(max_context, p.sliding_window) : max_context;
  const int32_t parts = CeilDiv(std::max(span, 0), PagedDecodePartitionTokens(p, max_context));
  if (p.num_seqs <= 0 || parts <= 1) return 0;
  return size_t(WorkspaceFloats(int64_t(p.num_seqs) * p.num_heads * parts, p.head_dim)) * sizeof(float);
}

cudaError_t LaunchPagedDecodeAttention(ScalarType type, const PagedAttentionParams& params, int32_t max_context,
                                       const void* q, const void* k_cache, const void* v_cache, void* out,
                                       void* workspace, size_t workspace_bytes, cudaStream_t stream, bool pdl) {
  if (!SupportsPagedDecodeAttention(params) || max_context < 0 || params.num_seqs < 0 ||
      params.num_seqs > kMaxSeqs) {
    return cudaErrorInvalidValue;
  }
  if (params.num_seqs == 0) return cudaSuccess;
  if (reinterpret_cast<uintptr_t>(k_cache) % 16 != 0 || reinterpret_cast<uintptr_t>(v_cache) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (params.kv_element != KvElement::kNative && (params.k_scales == nullptr || params.v_scales == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (params.spans.active() && params.sliding_window > 0) return cudaErrorInvalidValue;
  // A window bounds the span as well as the context does.
  const int32_t span = params.sliding_window > 0 ? std::min(max_context, params.sliding_window) : max_context;
  const int32_t part_tokens = PagedDecodePartitionTokens(params, max_context);
  const int32_t parts = std::max(1, CeilDiv(span, part_tokens));
  float *part_max = nullptr, *part_sum = nullptr, *part_out = nullptr;
  if (parts > 1) {
    const int64_t entries = int64_t(params.num_seqs) * params.num_heads * parts;
    if (workspace == nullptr || workspace_bytes < size_t(WorkspaceFloats(entries, params.head_dim)) * sizeof(float)) {
      return cudaErrorInvalidValue;
    }
    part_max = static_cast<float*>(workspace);
    part_sum = part_max + PaddedEntries(entries);
    part_out = part_sum + PaddedEntries(entries);
  }
  const dim3 grid(unsigned(parts), unsigned(params.num_kv_heads), unsigned(params.num_seqs));
  const int32_t group = params.num_heads / params.num_kv_heads;
  cudaError_t error = cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T, {
    switch (params.kv_element) {
      case KvElement::kNative:
        error = LaunchForElement<T, KvElement::kNative>(group, grid, params, max_context, part_tokens, parts, q,
                                                        k_cache, v_cache, out, part_max, part_sum, part_out, stream,
                                                        pdl);
        break;
      case KvElement::kFp8E4M3:
        error = LaunchForElement<T, KvElement::kFp8E4M3>(group, grid, params, max_context, part_tokens, parts, q,
                                                         k_cache, v_cache, out, part_max, part_sum, part_out, stream,
                                                         pdl);
        break;
      case KvElement::kInt8:
        error = LaunchForElement<T, KvElement::kInt8>(group, grid, params, max_context, part_tokens, parts, q,
                                                      k_cache, v_cache, out, part_max, part_sum, part_out, stream,
                                                      pdl);
        break;
    }
    if (error == cudaSuccess && parts > 1) {
      error = LaunchWithPdl(pdl, DecodeMergeKernel<T>, dim3(unsigned(params.num_heads), unsigned(params.num_seqs)),
                            dim3(unsigned(params.head_dim)), 0, stream, params, max_context, part_tokens, parts,
                            static_cast<const float*>(part_max), static_cast<const float*>(part_sum),
                            static_cast<const float*>(part_out), static_cast<T*>(out));
    }
  });
  return error;
}

}  // namespace tern::kernels
