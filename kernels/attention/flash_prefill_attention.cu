// Flash-attention style prefill over the paged KV cache.
//
// CTA (head, tile): 4 warps, each owning 32 of the tile's 128 query rows as
// two m16 row blocks, so every K and V fragment read from shared memory feeds
// two tensor-core products. The Q tile stays in shared memory and is read as
// mma.sync A fragments per k step. K and V tiles of 64 keys are gathered page
// by page with cp.async into two shared-memory buffers, so the next tile's
// copy overlaps this tile's math. Per tile each warp computes S = Q K^T
// (m16n8k16, fp32 accumulators), masks only the tiles that cross the causal
// diagonal, the sliding-window edge or a MoA head's sink/band edge, updates the running max and sum in the
// log2 domain (exp2f with scale * log2(e) folded in), and adds P V with the
// scores re-packed to 16 bits straight from the accumulator registers (the
// m16n8 accumulator layout of two adjacent key octets is the A layout of one
// k16 step). Shared-memory rows are padded by 16 bytes so the ldmatrix row
// addresses of a warp fall into distinct banks.
//
// Tiles map to sequences on the device: sequence s owns tiles starting at
// query_start[s] / 128 + s, so a binary search over query_start finds a CTA's
// sequence and the grid needs only the row and sequence counts. Tiles are
// taken in reverse so the long causal tiles start first.
//
// Quantized caches (fp8 e4m3, int8; kernels/attention/kv_quant.h): the bytes
// of the next K and V tiles (and int8's token scales) go with cp.async into
// two staging buffers, so the copy of tile t + 1 still overlaps the math of
// tile t. Before a tile's math the CTA converts the staged tile into the
// fp16/bf16 K and V tiles (one buffer each) that the tensor-core part reads
// as it reads a native cache. V is dequantized there, x' = float(code) *
// scale in fp32, then rounded to the compute type. K's codes go into the K
// tile as they are (int8 and e4m3 values are exact in fp16 and bf16) and
// K's scale multiplies each fp32 score: q . x' = scale * (q . code), with no
// rounding of x' to 16 bits on the way.
#include <cmath>
#include <type_traits>

#include "kernels/attention/flash_prefill_attention.h"
#include "kernels/attention/kv_quant.cuh"
#include "kernels/common/dispatch.cuh"
#include "kernels/common/tensor_core.cuh"

namespace tern::kernels {
namespace {

constexpr int kTileM = kFlashQueryTile;
constexpr int kTileN = 64;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = kTileM / kWarps;
constexpr int kMBlocks = kRowsPerWarp / 16;  // m16 row blocks per warp
static_assert(kMBlocks * 16 * kWarps == kTileM, "the query tile must split into m16 blocks per warp");
constexpr float kLog2e = 1.4426950408889634f;

// Two floats as one 32-bit register of T, `lo` in the low half.
template <typename T>
__device__ __forceinline__ uint32_t Pack(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t Pack<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t Pack<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

template <int kHeadDim>
__host__ __device__ constexpr int SharedStride() {
  return kHeadDim + 8;  // elements per shared row: 16 bytes of padding
}

// Native caches: Q, 2 x K, 2 x V tiles of T. Quantized: Q, K, V tiles of T,
// 2 x (K, V) tiles of codes and, for int8, 2 x (K, V) token scales.
template <typename T, int kHeadDim, KvElement E>
constexpr size_t SharedBytes() {
  constexpr size_t row_bytes = size_t(SharedStride<kHeadDim>()) * sizeof(T);
  if constexpr (E == KvElement::kNative) {
    return (kTileM + 4 * kTileN) * row_bytes;
  } else {
    return (kTileM + 2 * kTileN) * row_bytes + size_t(4 * kTileN) * kHeadDim +
           (E == KvElement::kInt8 ? size_t(4 * kTileN) * sizeof(float) : 0);
  }
}

// Eight stored codes at `src` (8-byte aligned, shared) stored at `dst`
// (16-byte aligned, shared) as eight values of T: dequantized per kv_quant.h,
// x' = float(code) * scale in fp32, when kScaled; else the codes' own values,
// which T holds exactly.
template <typename T, KvElement E, bool kScaled>
__device__ __forceinline__ void ConvertOctet(const uint8_t* src, float scale, T* dst) {
  const uint2 raw = *reinterpret_cast<const uint2*>(src);
  float x[8];
  DecodeKv8<E>(raw, x);
  if constexpr (kScaled) {
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] *= scale;
  }
  uint4 packed;
  packed.x = Pack<T>(x[0], x[1]);
  packed.y = Pack<T>(x[2], x[3]);
  packed.z = Pack<T>(x[4], x[5]);
  packed.w = Pack<T>(x[6], x[7]);
  *reinterpret_cast<uint4*>(dst) = packed;
}

// k_cache / v_cache hold T (native) or one byte per element (fp8, int8).
template <typename T, int kHeadDim, KvElement E>
__global__ void __launch_bounds__(kThreads) FlashPrefillKernel(PagedAttentionParams p, const T* __restrict__ q,
                                                               const void* __restrict__ k_cache,
                                                               const void* __restrict__ v_cache,
                                                               T* __restrict__ out) {
  constexpr bool kQuantized = E != KvElement::kNative;
  using Cache = std::conditional_t<kQuantized, uint8_t, T>;
  constexpr int kStride = SharedStride<kHeadDim>();
  constexpr int kChunks = kHeadDim / 8;      // 16-byte chunks per row of T
  constexpr int kKSteps = kHeadDim / 16;     // k16 steps of Q K^T
  constexpr int kDimTiles = kHeadDim / 8;    // n8 tiles of P V
  constexpr int kKeyTiles = kTileN / 8;      // n8 tiles of Q K^T
  constexpr int kKvBuffers = kQuantized ? 1 : 2;  // K and V tiles of T
  static_assert(kDimTiles % 2 == 0, "head_dim must be a multiple of 16");

  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* sq = reinterpret_cast<T*>(shared_raw);  // [kTileM][kStride]
  T* sk = sq + kTileM * kStride;             // [kKvBuffers][kTileN][kStride]
  T* sv = sk + kKvBuffers * kTileN * kStride;  // [kKvBuffers][kTileN][kStride]
  // Quantized: [2][K, V][kTileN][kHeadDim] codes, then (int8) [2][K, V][kTileN] token scales.
  uint8_t* codes = reinterpret_cast<uint8_t*>(sv + kKvBuffers * kTileN * kStride);

  const int head = blockIdx.x;
  const int tile_id = int(gridDim.y - 1 - blockIdx.y);
  // The sequence whose tiles contain tile_id: the last s with first tile <= tile_id.
  int lo = 0, hi = p.num_seqs;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (p.query_start[mid] / kTileM + mid <= tile_id) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const int s = lo;
  const int q_begin = p.query_start[s];
  const int n_q = p.query_start[s + 1] - q_begin;
  const int row0 = (tile_id - (q_begin / kTileM + s)) * kTileM;
  if (row0 >= n_q) return;  // the spare tile of this sequence

  const int rows = min(kTileM, n_q - row0);
  const int pos0 = p.context_lens[s] - n_q + row0;  // position of the tile's first row
  const int pos_last = pos0 + rows - 1;
  const int window = p.sliding_window;
  const int kv_end = pos_last + 1;
  const int tid = threadIdx.x;
  // Key tiles: the sink's, then the band's up to the diagonal. Dense: no
  // sink, the band from key 0 or from the window of the first row. MoA
  // spans: this head's sink and, over the tile's rows, the earliest (band_min)
  // and latest (band_max) band start; keys in neither are never loaded, so
  // blocks the scheduler freed (outside every head's spans) are never read.
  const bool spans = p.spans.active();
  int sink = 0, band_min = window > 0 ? max(0, pos0 - window + 1) : 0, band_max = band_min;
  if (spans) {
    __shared__ int shared_band[2];
    if (tid == 0) {
      shared_band[0] = kv_end;
      shared_band[1] = 0;
    }
    __syncthreads();
    int lo = kv_end, hi = 0;
    for (int r = tid; r < rows; r += kThreads) {
      const int start = p.spans.BandStart(p.num_heads, head, pos0 + r + 1);
      lo = min(lo, start);
      hi = max(hi, start);
    }
    atomicMin(&shared_band[0], lo);
    atomicMax(&shared_band[1], hi);
    __syncthreads();
    band_min = shared_band[0];
    band_max = shared_band[1];
    sink = min(p.spans.sinks[head], kv_end);
  }
  const int sink_tiles = (sink + kTileN - 1) / kTileN;
  const int band_tile = max(sink_tiles, band_min / kTileN);
  const int num_kv_tiles = sink_tiles + max(0, (kv_end + kTileN - 1) / kTileN - band_tile);
  // First key of kv tile t.
  const auto tile_start = [&](int t) { return (t < sink_tiles ? t : band_tile + (t - sink_tiles)) * kTileN; };
  const int32_t* blocks = p.block_ids + p.block_indptr[s];
  const int block_size = p.block_size;
  // Pages are nearly always a power of two: shift and mask instead of dividing.
  const bool pow2_pages = (block_size & (block_size - 1)) == 0;
  const int page_shift = __ffs(block_size) - 1;
  const int kv_head = head / (p.num_heads / p.num_kv_heads);
  const int64_t token_stride = int64_t(p.num_kv_heads) * kHeadDim;  // elements (bytes when quantized) per slot
  const Cache* k_head = static_cast<const Cache*>(k_cache) + kv_head * kHeadDim;
  const Cache* v_head = static_cast<const Cache*>(v_cache) + kv_head * kHeadDim;
  // fp8: the layer's scale of this kv head, for every K (V) row.
  float k_head_scale = 1.0f, v_head_scale = 1.0f;
  if constexpr (E == KvElement::kFp8E4M3) {
    k_head_scale = p.k_scales[kv_head];
    v_head_scale = p.v_scales[kv_head];
  }
  // Key j is read when it is causal and in the sink or past band_min; its cache slot.
  const auto key_valid = [&](int j) { return j < kv_end && (j < sink || j >= band_min); };
  const auto slot_of = [&](int j) {
    const int page = pow2_pages ? j >> page_shift : j / block_size;
    const int slot_in_page = pow2_pages ? j & (block_size - 1) : j % block_size;
    return int64_t(blocks[page]) * block_size + slot_in_page;
  };

  for (int i = tid; i < kTileM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const bool valid = r < rows;
    const T* src = q + int64_t(q_begin + row0 + (valid ? r : 0)) * p.q_row_stride + head * kHeadDim + c * 8;
    CopyAsync16(SharedAddress(sq + r * kStride + c * 8), src, valid);
  }
  CopyAsyncCommit();
  // Keys past kv_end are zero-filled so that masked scores never meet garbage values.
  // Quantized caches stage codes (zeros, and zero scales, for keys not read).
  auto load_kv = [&](int tile, int buffer) {
    const int k0 = tile_start(tile);
    if constexpr (!kQuantized) {
      T* dk = sk + buffer * kTileN * kStride;
      T* dv = sv + buffer * kTileN * kStride;
      for (int i = tid; i < kTileN * kChunks; i += kThreads) {
        const int r = i / kChunks, c = i % kChunks;
        const int j = k0 + r;
        const bool valid = key_valid(j);
        int64_t offset = c * 8;
        if (valid) offset += slot_of(j) * token_stride;
        CopyAsync16(SharedAddress(dk + r * kStride + c * 8), k_head + offset, valid);
        CopyAsync16(SharedAddress(dv + r * kStride + c * 8), v_head + offset, valid);
      }
    } else {
      constexpr int kCodeChunks = kHeadDim / 16;  // 16-byte chunks per row of codes
      uint8_t* dk = codes + buffer * 2 * kTileN * kHeadDim;
      uint8_t* dv = dk + kTileN * kHeadDim;
      for (int i = tid; i < kTileN * kCodeChunks; i += kThreads) {
        const int r = i / kCodeChunks, c = i % kCodeChunks;
        const int j = k0 + r;
        const bool valid = key_valid(j);
        int64_t offset = c * 16;
        if (valid) offset += slot_of(j) * token_stride;
        CopyAsync16(SharedAddress(dk + r * kHeadDim + c * 16), k_head + offset, valid);
        CopyAsync16(SharedAddress(dv + r * kHeadDim + c * 16), v_head + offset, valid);
      }
      if constexpr (E == KvElement::kInt8) {
        // Entry i < kTileN: K's scale of key k0 + i; kTileN + i: V's.
        float* ds = reinterpret_cast<float*>(codes + 4 * kTileN * kHeadDim) + buffer * 2 * kTileN;
        for (int i = tid; i < 2 * kTileN; i += kThreads) {
          const int j = k0 + i % kTileN;
          const bool valid = key_valid(j);
          const float* scales = i < kTileN ? p.k_scales : p.v_scales;
          const int64_t index = (valid ? slot_of(j) * p.num_kv_heads : 0) + kv_head;
          CopyAsync4(SharedAddress(ds + i), scales + index, valid);
        }
      }
    }
  };
  // int8: the staged token scales of buffer `buffer`, K's [kTileN] then V's.
  const auto staged_scales = [&](int buffer) {
    return reinterpret_cast<const float*>(codes + 4 * kTileN * kHeadDim) + buffer * 2 * kTileN;
  };
  // Quantized caches: the staged tile `buffer` into the K tile (codes) and
  // the V tile (dequantized values) of T.
  auto convert_kv = [&](int buffer) {
    if constexpr (kQuantized) {
      constexpr int kOctets = kHeadDim / 8;
      const uint8_t* ck = codes + buffer * 2 * kTileN * kHeadDim;
      const uint8_t* cv = ck + kTileN * kHeadDim;
      for (int i = tid; i < kTileN * kOctets; i += kThreads) {
        const int r = i / kOctets, c = i % kOctets;
        float v_scale = v_head_scale;
        if constexpr (E == KvElement::kInt8) v_scale = staged_scales(buffer)[kTileN + r];
        ConvertOctet<T, E, false>(ck + r * kHeadDim + c * 8, 1.0f, sk + r * kStride + c * 8);
        ConvertOctet<T, E, true>(cv + r * kHeadDim + c * 8, v_scale, sv + r * kStride + c * 8);
      }
    }
  };
  load_kv(0, 0);
  CopyAsyncCommit();

  // Warp w owns rows [w * kRowsPerWarp, (w + 1) * kRowsPerWarp): kMBlocks blocks of 16.
  const int warp = tid / 32, lane = tid % 32;
  const int quad_row = lane / 4, quad_col = lane % 4;
  const int warp_row = warp * kRowsPerWarp;
  const float scale_log2 = p.scale * kLog2e;

  float o[kMBlocks][kDimTiles][4];
  float m_run[kMBlocks][2], l_run[kMBlocks][2];
#pragma unroll
  for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
    for (int d = 0; d < kDimTiles; ++d) o[mb][d][0] = o[mb][d][1] = o[mb][d][2] = o[mb][d][3] = 0.0f;
    m_run[mb][0] = m_run[mb][1] = -INFINITY;
    l_run[mb][0] = l_run[mb][1] = 0.0f;
  }

  for (int t = 0; t < num_kv_tiles; ++t) {
    const int buffer = t & 1;
    if (t + 1 < num_kv_tiles) {
      load_kv(t + 1, buffer ^ 1);
      CopyAsyncCommit();
      CopyAsyncWait<1>();
    } else {
      CopyAsyncWait<0>();
    }
    __syncthreads();
    if constexpr (kQuantized) {
      convert_kv(buffer);
      __syncthreads();
    }
    const int kv_buffer = kQuantized ? 0 : buffer;

    // S = Q K^T for this warp's rows and the tile's 64 keys; each K fragment
    // serves both row blocks.
    const T* kb = sk + kv_buffer * kTileN * kStride;
    float sc[kMBlocks][kKeyTiles][4];
#pragma unroll
    for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) sc[mb][n][0] = sc[mb][n][1] = sc[mb][n][2] = sc[mb][n][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      uint32_t qa[kMBlocks][4];
#pragma unroll
      for (int mb = 0; mb < kMBlocks; ++mb) {
        LoadMatrixX4(SharedAddress(sq + (warp_row + mb * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * kStride + kk * 16 +
                                   (lane / 16) * 8),
                     qa[mb]);
      }
#pragma unroll
      for (int n = 0; n < kKeyTiles; n += 2) {
        // Key octets n and n + 1, dims kk * 16 .. + 15.
        uint32_t b[4];
        LoadMatrixX4(SharedAddress(kb + (n * 8 + (lane / 16) * 8 + lane % 8) * kStride + kk * 16 +
                                   ((lane / 8) % 2) * 8),
                     b);
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
          Mma<T>(sc[mb][n], qa[mb], b[0], b[1]);
          Mma<T>(sc[mb][n + 1], qa[mb], b[2], b[3]);
        }
      }
    }

    if constexpr (kQuantized) {
      // K's scale: per kv head (fp8) or per key (int8; zero for keys not read).
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
        float2 key_scale = make_float2(k_head_scale, k_head_scale);
        if constexpr (E == KvElement::kInt8) {
          key_scale = *reinterpret_cast<const float2*>(staged_scales(buffer) + n * 8 + 2 * quad_col);
        }
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
          sc[mb][n][0] *= key_scale.x;
          sc[mb][n][1] *= key_scale.y;
          sc[mb][n][2] *= key_scale.x;
          sc[mb][n][3] *= key_scale.y;
        }
      }
    }

    const int k0 = tile_start(t);
    const bool needs_mask = k0 + kTileN - 1 > pos0 || (window > 0 && k0 <= pos_last - window) ||
                            (spans && k0 + kTileN > sink && k0 < band_max);
#pragma unroll
    for (int mb = 0; mb < kMBlocks; ++mb) {
      const int pos_a = pos0 + warp_row + mb * 16 + quad_row;  // and pos_a + 8
      if (needs_mask) {
        // MoA: the band start of this lane's two rows.
        int row_band[2] = {0, 0};
        if (spans) {
          row_band[0] = p.spans.BandStart(p.num_heads, head, pos_a + 1);
          row_band[1] = p.spans.BandStart(p.num_heads, head, pos_a + 9);
        }
#pragma unroll
        for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = k0 + n * 8 + 2 * quad_col + (e & 1);
            const int pos = pos_a + (e < 2 ? 0 : 8);
            const bool outside_spans = spans && key >= sink && key < row_band[e < 2 ? 0 : 1];
            if (key > pos || (window > 0 && key <= pos - window) || outside_spans) sc[mb][n][e] = -INFINITY;
          }
        }
      }
      // Online softmax in the log2 domain; a row's 64 scores live in the 4 lanes of a quad.
      float base[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = m_run[mb][h];
#pragma unroll
        for (int n = 0; n < kKeyTiles; ++n) mx = fmaxf(mx, fmaxf(sc[mb][n][2 * h], sc[mb][n][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // A row with no key yet keeps max -inf; use 0 so exp2 gives 0, never NaN.
        base[h] = mx == -INFINITY ? 0.0f : mx * scale_log2;
        const float correction = exp2f(m_run[mb][h] * scale_log2 - base[h]);
        m_run[mb][h] = mx;
        l_run[mb][h] *= correction;
#pragma unroll
        for (int d = 0; d < kDimTiles; ++d) {
          o[mb][d][2 * h] *= correction;
          o[mb][d][2 * h + 1] *= correction;
        }
      }
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          sc[mb][n][e] = exp2f(fmaf(sc[mb][n][e], scale_log2, -base[e / 2]));
          l_run[mb][e / 2] += sc[mb][n][e];
        }
      }
    }

    // O += P V: the probabilities go to the tensor cores from registers, and
    // each V fragment serves both row blocks.
    const T* vb = sv + kv_buffer * kTileN * kStride;
#pragma unroll
    for (int kk = 0; kk < kTileN / 16; ++kk) {
      uint32_t a[kMBlocks][4];
#pragma unroll
      for (int mb = 0; mb < kMBlocks; ++mb) {
        a[mb][0] = Pack<T>(sc[mb][2 * kk][0], sc[mb][2 * kk][1]);
        a[mb][1] = Pack<T>(sc[mb][2 * kk][2], sc[mb][2 * kk][3]);
        a[mb][2] = Pack<T>(sc[mb][2 * kk + 1][0], sc[mb][2 * kk + 1][1]);
        a[mb][3] = Pack<T>(sc[mb][2 * kk + 1][2], sc[mb][2 * kk + 1][3]);
      }
#pragma unroll
      for (int d = 0; d < kDimTiles; d += 2) {
        uint32_t b[4];
        LoadMatrixX4Trans(
            SharedAddress(vb + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kStride + d * 8 + (lane / 16) * 8), b);
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
          Mma<T>(o[mb][d], a[mb], b[0], b[1]);
          Mma<T>(o[mb][d + 1], a[mb], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // native: this buffer is refilled two tiles on; quantized: the K and V tiles next tile
  }

  T* out_tile = out + int64_t(q_begin + row0) * p.out_row_stride + head * kHeadDim;
#pragma unroll
  for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = l_run[mb][h];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const int r = warp_row + mb * 16 + quad_row + 8 * h;
      if (r >= rows) continue;
      T* dst = out_tile + int64_t(r) * p.out_row_stride + 2 * quad_col;
#pragma unroll
      for (int d = 0; d < kDimTiles; ++d) {
        *reinterpret_cast<uint32_t*>(dst + d * 8) = Pack<T>(o[mb][d][2 * h] * inv, o[mb][d][2 * h + 1] * inv);
      }
    }
  }
}

template <typename T, int kHeadDim, KvElement E>
cudaError_t Launch(const PagedAttentionParams& p, int64_t tiles, const void* q, const void* k_cache,
                   const void* v_cache, void* out, cudaStream_t stream) {
  constexpr size_t bytes = SharedBytes<T, kHeadDim, E>();
  auto kernel = FlashPrefillKernel<T, kHeadDim, E>;
  const cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (error != cudaSuccess) return error;
  const dim3 grid(static_cast<unsigned>(p.num_heads), static_cast<unsigned>(tiles));
  kernel<<<grid, kThreads, bytes, stream>>>(p, static_cast<const T*>(q), k_cache, v_cache, static_cast<T*>(out));
  return cudaGetLastError();
}

template <typename T, KvElement E>
cudaError_t LaunchForHeadDim(const PagedAttentionParams& p, int64_t tiles, const void* q, const void* k_cache,
                             const void* v_cache, void* out, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: return Launch<T, 64, E>(p, tiles, q, k_cache, v_cache, out, stream);
    case 80: return Launch<T, 80, E>(p, tiles, q, k_cache, v_cache, out, stream);
    case 96: return Launch<T, 96, E>(p, tiles, q, k_cache, v_cache, out, stream);
    case 128: return Launch<T, 128, E>(p, tiles, q, k_cache, v_cache, out, stream);
    default: return cudaErrorNotSupported;
  }
}

template <typename T>
cudaError_t LaunchForCache(const PagedAttentionParams& p, int64_t tiles, const void* q, const void* k_cache,
                           const void* v_cache, void* out, cudaStream_t stream) {
  switch (p.kv_element) {
    case KvElement::kNative: return LaunchForHeadDim<T, KvElement::kNative>(p, tiles, q, k_cache, v_cache, out, stream);
    case KvElement::kFp8E4M3:
      return LaunchForHeadDim<T, KvElement::kFp8E4M3>(p, tiles, q, k_cache, v_cache, out, stream);
    case KvElement::kInt8: return LaunchForHeadDim<T, KvElement::kInt8>(p, tiles, q, k_cache, v_cache, out, stream);
  }
  return cudaErrorNotSupported;
}

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

cudaError_t SupportsFlashPrefillAttention(ScalarType type, const PagedAttentionParams& params) {
  if (type != ScalarType::kF16 && type != ScalarType::kBF16) return cudaErrorNotSupported;
  if (params.kv_element != KvElement::kNative && params.kv_element != KvElement::kFp8E4M3 &&
      params.kv_element != KvElement::kInt8) {
    return cudaErrorNotSupported;
  }
  if (params.head_dim != 64 && params.head_dim != 80 && params.head_dim != 96 && params.head_dim != 128) {
    return cudaErrorNotSupported;
  }
  if (params.num_heads <= 0 || params.num_kv_heads <= 0 || params.num_heads % params.num_kv_heads != 0 ||
      params.num_heads > 65535 || params.block_size <= 0) {
    return cudaErrorNotSupported;
  }
  if (params.q_row_stride % 8 != 0 || params.out_row_stride % 2 != 0) return cudaErrorNotSupported;
  if (params.spans.active() && params.sliding_window > 0) return cudaErrorNotSupported;
  return cudaSuccess;
}

cudaError_t LaunchFlashPrefillAttention(ScalarType type, const PagedAttentionParams& params, int32_t num_rows,
                                        const void* q, const void* k_cache, const void* v_cache, void* out,
                                        cudaStream_t stream) {
  if (const cudaError_t e = SupportsFlashPrefillAttention(type, params); e != cudaSuccess) return e;
  if (num_rows == 0 || params.num_seqs == 0) return cudaSuccess;
  if (num_rows < 0 || params.num_seqs < 0) return cudaErrorInvalidValue;
  if (!Aligned(q, 16) || !Aligned(k_cache, 16) || !Aligned(v_cache, 16) || !Aligned(out, 4)) {
    return cudaErrorInvalidValue;
  }
  if (params.kv_element != KvElement::kNative && (params.k_scales == nullptr || params.v_scales == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const int64_t tiles = FlashPrefillTileCount(num_rows, params.num_seqs);
  if (tiles > 65535) return cudaErrorInvalidValue;
  if (type == ScalarType::kF16) return LaunchForCache<__half>(params, tiles, q, k_cache, v_cache, out, stream);
  return LaunchForCache<__nv_bfloat16>(params, tiles, q, k_cache, v_cache, out, stream);
}

}  // namespace tern::kernels
