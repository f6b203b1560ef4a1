#include <cmath>
#include <cstdint>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/tensor_core.cuh"
#include "kernels/dit/dit_attention.h"

namespace tern::kernels {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
// The per-row kernel holds head_dim / 32 accumulators a lane: up to 512
// (the VAE mid-block attention: one head of 512 channels).
constexpr int kMaxHeadDim = 512;

// ---------------------------------------------------------------------------
// Fallback: one warp per query row, CUDA cores, fp32 throughout.

constexpr int kRowWarps = 4;

template <typename T>
__global__ void __launch_bounds__(kRowWarps * 32)
    RowAttentionKernel(DitAttentionShape s, float scale_log2, const T* qkv, T* out) {
  __shared__ float q_shared[kRowWarps][kMaxHeadDim];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t b = blockIdx.z;
  const int h = blockIdx.y;
  const int t = blockIdx.x * kRowWarps + warp;
  if (t >= s.tokens) return;  // no block-wide barrier below
  const int hd = s.head_dim;
  const int64_t width = int64_t(s.num_heads) * hd;
  const T* sample = qkv + b * s.tokens * s.qkv_stride + int64_t(h) * hd;
  float* q = q_shared[warp];
  for (int d = lane; d < hd; d += 32) q[d] = ToFloat(sample[int64_t(t) * s.qkv_stride + d]) * scale_log2;
  __syncwarp();
  constexpr int kPerLane = kMaxHeadDim / 32;
  float o[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) o[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  // Keys [k_lo, k_end): every key, or the band |t - j| <= window; chunks of
  // 32 start at a multiple of 32, the first holding key k_lo (so every
  // chunk's max is finite from the first on).
  const int window = s.windows != nullptr ? s.windows[b] : -1;
  const int k_lo = window < 0 ? 0 : max(0, t - window);
  const int k_end = window < 0 ? s.tokens : min(s.tokens, t + window + 1);
  for (int k0 = k_lo / 32 * 32; k0 < k_end; k0 += 32) {
    const int j = k0 + lane;
    float score = -INFINITY;
    if (j < k_end && j >= k_lo) {
      const T* k = sample + width + int64_t(j) * s.qkv_stride;
      score = 0.0f;
      for (int d = 0; d < hd; ++d) score += q[d] * ToFloat(k[d]);
    }
    const float m_new = fmaxf(m, WarpMax(score));
    const float alpha = exp2f(m - m_new);
    const float p = exp2f(score - m_new);
    l = l * alpha + WarpSum(p);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) o[i] *= alpha;
    const int keys = min(32, k_end - k0);
    for (int jj = 0; jj < keys; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      const T* v = sample + 2 * width + int64_t(k0 + jj) * s.qkv_stride;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) o[i] += pj * ToFloat(v[d]);
      }
    }
    m = m_new;
  }
  const float inv = 1.0f / l;
  T* dst = out + (b * s.tokens + t) * s.out_stride + int64_t(h) * hd;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) dst[d] = FromFloat<T>(o[i] * inv);
  }
}

// ---------------------------------------------------------------------------
// Tensor cores (mma.sync m16n8k16, fp32 accumulation).
//
// A CTA of 4 warps takes kTileM query rows of one (sample, head); each warp
// owns kMBlocks blocks of 16 rows, so every K and V fragment read from shared
// memory feeds kMBlocks products. The sample's keys are walked 64 at a time:
// K and V tiles are copied with cp.async into two shared-memory stages, so the
// next tile's copy overlaps this tile's math, and every warp reads the same
// tile. Per tile a warp computes S = Q K^T from ldmatrix fragments, updates
// the running max and sum of its rows in registers (exp2 of scores scaled by
// scale * log2(e)), and adds P V with P re-packed to 16 bits straight from the
// accumulators (the m16n8 accumulator layout of two adjacent key octets is the
// A layout of one k16 step). Shared rows are kPitch = kDims + 8 elements, so
// the 8 row addresses of an ldmatrix fall into distinct banks. A head_dim
// that is no multiple of 16 (72) is zero-padded to kDims in shared memory for
// the Q K^T steps; P V computes only the real dim octets.

constexpr int kFlashWarps = 4;
constexpr int kFlashThreads = kFlashWarps * 32;
constexpr int kTileK = 64;  // keys per tile
constexpr int kKeyOctets = kTileK / 8;

template <int kHeadDim>
struct FlashConfig {
  static constexpr int kDims = (kHeadDim + 15) / 16 * 16;  // padded for the k16 steps
  static constexpr int kPitch = kDims + 8;                  // elements per shared row
  static constexpr int kChunks = kHeadDim / 8;              // 16-byte pieces of a real row
  static constexpr int kPadChunks = kDims / 8 - kChunks;    // zero pieces (0 or 1)
  static constexpr int kKSteps = kDims / 16;                // k16 steps of Q K^T
  static constexpr int kDimOctets = kHeadDim / 8;           // n8 tiles of P V
  // Two row blocks a warp up to head_dim 96 (fits 255 registers unspilled);
  // one above, where the accumulators alone would take 128 registers.
  static constexpr int kMBlocks = kHeadDim <= 96 ? 2 : 1;
  static constexpr int kTileM = kFlashWarps * 16 * kMBlocks;
  static constexpr size_t kSharedBytes = size_t(kTileM + 4 * kTileK) * kPitch * 2;  // Q, 2 x K, 2 x V
};

// Two floats rounded to T as one 32-bit register, `lo` in the low half; `sum`
// gains the two rounded values.
template <typename T>
__device__ __forceinline__ uint32_t PackAndSum(float lo, float hi, float& sum);
template <>
__device__ __forceinline__ uint32_t PackAndSum<__half>(float lo, float hi, float& sum) {
  const __half2 v = __floats2half2_rn(lo, hi);
  const float2 r = __half22float2(v);
  sum += r.x + r.y;
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t PackAndSum<__nv_bfloat16>(float lo, float hi, float& sum) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  const uint32_t bits = *reinterpret_cast<const uint32_t*>(&v);
  sum += __uint_as_float(bits << 16) + __uint_as_float(bits & 0xffff0000u);
  return bits;
}

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

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kFlashThreads)
    FlashAttentionKernel(DitAttentionShape s, float scale_log2, const T* __restrict__ qkv, T* __restrict__ out) {
  using C = FlashConfig<kHeadDim>;
  constexpr int kPitch = C::kPitch, kChunks = C::kChunks, kMBlocks = C::kMBlocks, kTileM = C::kTileM;
  constexpr int kDimOctets = C::kDimOctets;

  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* sq = reinterpret_cast<T*>(shared_raw);  // [kTileM][kPitch]
  T* sk = sq + kTileM * kPitch;              // [2][kTileK][kPitch]
  T* sv = sk + 2 * kTileK * kPitch;          // [2][kTileK][kPitch]

  const int tid = threadIdx.x;
  const int q0 = blockIdx.x * kTileM;
  const int h = blockIdx.y;
  const int64_t b = blockIdx.z;
  const int tokens = s.tokens;
  const int64_t stride = s.qkv_stride;
  const int64_t width = int64_t(s.num_heads) * kHeadDim;
  // A band sample walks only the key tiles that meet some query's band.
  const int window = s.windows != nullptr ? s.windows[b] : -1;
  const int num_tiles = (tokens + kTileK - 1) / kTileK;
  const int t_begin = window < 0 ? 0 : max(0, q0 - window) / kTileK;
  const int t_end = window < 0 ? num_tiles : min(tokens - 1, q0 + kTileM - 1 + window) / kTileK + 1;
  const T* q_head = qkv + b * tokens * stride + int64_t(h) * kHeadDim;
  const T* k_head = q_head + width;
  const T* v_head = k_head + width;

  // The padding piece of every row (head_dim 72: dims 72..79) is zero once
  // and for all; the copies below never touch it.
  if constexpr (C::kPadChunks > 0) {
    for (int r = tid; r < kTileM + 4 * kTileK; r += kFlashThreads) {
      *reinterpret_cast<uint4*>(sq + r * kPitch + kChunks * 8) = make_uint4(0, 0, 0, 0);
    }
  }
  // Rows past the sample's tokens are zero-filled: query rows compute
  // harmless zeros, masked keys never meet garbage values.
  for (int i = tid; i < kTileM * kChunks; i += kFlashThreads) {
    const int r = i / kChunks, c = i - r * kChunks;
    const bool valid = q0 + r < tokens;
    CopyAsync16(SharedAddress(sq + r * kPitch + c * 8), q_head + (valid ? int64_t(q0 + r) * stride + c * 8 : 0),
                valid);
  }
  CopyAsyncCommit();
  auto load_kv = [&](int k0, int stage) {
    T* dk = sk + stage * kTileK * kPitch;
    T* dv = sv + stage * kTileK * kPitch;
    for (int i = tid; i < kTileK * kChunks; i += kFlashThreads) {
      const int r = i / kChunks, c = i - r * kChunks;
      const bool valid = k0 + r < tokens;
      const int64_t offset = valid ? int64_t(k0 + r) * stride + c * 8 : 0;
      CopyAsync16(SharedAddress(dk + r * kPitch + c * 8), k_head + offset, valid);
      CopyAsync16(SharedAddress(dv + r * kPitch + c * 8), v_head + offset, valid);
    }
  };
  load_kv(t_begin * kTileK, 0);
  CopyAsyncCommit();

  const int warp = tid / 32, lane = tid % 32;
  const int quad_row = lane / 4, quad_col = lane % 4;
  const int warp_row = warp * 16 * kMBlocks;

  float o[kMBlocks][kDimOctets][4];
  float m_run[kMBlocks][2], l_run[kMBlocks][2];
#pragma unroll
  for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
    for (int d = 0; d < kDimOctets; ++d) o[mb][d][0] = o[mb][d][1] = o[mb][d][2] = o[mb][d][3] = 0.0f;
    m_run[mb][0] = m_run[mb][1] = -INFINITY;
    l_run[mb][0] = l_run[mb][1] = 0.0f;
  }

  for (int t = t_begin; t < t_end; ++t) {
    const int stage = (t - t_begin) & 1;
    if (t + 1 < t_end) {
      load_kv((t + 1) * kTileK, stage ^ 1);
      CopyAsyncCommit();
      CopyAsyncWait<1>();
    } else {
      CopyAsyncWait<0>();
    }
    __syncthreads();

    // S = Q K^T for the warp's rows and the tile's 64 keys.
    const T* kb = sk + stage * kTileK * kPitch;
    float sc[kMBlocks][kKeyOctets][4];
#pragma unroll
    for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
      for (int n = 0; n < kKeyOctets; ++n) sc[mb][n][0] = sc[mb][n][1] = sc[mb][n][2] = sc[mb][n][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < C::kKSteps; ++kk) {
      uint32_t qa[kMBlocks][4];
#pragma unroll
      for (int mb = 0; mb < kMBlocks; ++mb) {
        LoadMatrixX4(SharedAddress(sq + (warp_row + mb * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * kPitch + kk * 16 +
                                   (lane / 16) * 8),
                     qa[mb]);
      }
#pragma unroll
      for (int n = 0; n < kKeyOctets; n += 2) {
        // Key octets n and n + 1, dims kk * 16 .. + 15.
        uint32_t kf[4];
        LoadMatrixX4(SharedAddress(kb + (n * 8 + (lane / 16) * 8 + lane % 8) * kPitch + kk * 16 + ((lane / 8) % 2) * 8),
                     kf);
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
          Mma<T>(sc[mb][n], qa[mb], kf[0], kf[1]);
          Mma<T>(sc[mb][n + 1], qa[mb], kf[2], kf[3]);
        }
      }
    }

    const int k0 = t * kTileK;
    if (k0 + kTileK > tokens) {  // the last tile, partly past the sample's keys
#pragma unroll
      for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
        for (int n = 0; n < kKeyOctets; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            if (k0 + n * 8 + 2 * quad_col + (e & 1) >= tokens) sc[mb][n][e] = -INFINITY;
          }
        }
      }
    }

    // A band: scores of keys outside |query - key| <= window are -inf
    // (tiles wholly inside every row's band skip the test).
    if (window >= 0 && (k0 < q0 + kTileM - 1 - window || k0 + kTileK - 1 > q0 + window)) {
#pragma unroll
      for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
        for (int n = 0; n < kKeyOctets; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int row = q0 + warp_row + mb * 16 + quad_row + 8 * (e >> 1);
            const int col = k0 + n * 8 + 2 * quad_col + (e & 1);
            if (col - row > window || row - col > window) sc[mb][n][e] = -INFINITY;
          }
        }
      }
    }

    // Online softmax in the log2 domain; a row's 64 scores live in the 4
    // lanes of a quad. Without a band key k0 exists, so every row's max is
    // finite from the first tile on (the first correction is exp2(-inf) =
    // 0); a band row may see no key of its band in a tile, and keeps base 0
    // there (every p and the correction are then 0).
    uint32_t pa[kMBlocks][kTileK / 16][4];  // P as the A fragments of P V
#pragma unroll
    for (int mb = 0; mb < kMBlocks; ++mb) {
      float base[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = m_run[mb][r];
#pragma unroll
        for (int n = 0; n < kKeyOctets; ++n) mx = fmaxf(mx, fmaxf(sc[mb][n][2 * r], sc[mb][n][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        base[r] = mx == -INFINITY ? 0.0f : mx * scale_log2;
        const float correction = exp2f(m_run[mb][r] * scale_log2 - base[r]);
        m_run[mb][r] = mx;
        l_run[mb][r] *= correction;
#pragma unroll
        for (int d = 0; d < kDimOctets; ++d) {
          o[mb][d][2 * r] *= correction;
          o[mb][d][2 * r + 1] *= correction;
        }
      }
#pragma unroll
      for (int n = 0; n < kKeyOctets; ++n) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float p0 = exp2f(fmaf(sc[mb][n][2 * r], scale_log2, -base[r]));
          const float p1 = exp2f(fmaf(sc[mb][n][2 * r + 1], scale_log2, -base[r]));
          // Octet n is half (n % 2) of k16 step n / 2: registers r, r + 2.
          pa[mb][n / 2][r + 2 * (n % 2)] = PackAndSum<T>(p0, p1, l_run[mb][r]);
        }
      }
    }

    // O += P V; each V fragment serves every row block of the warp.
    const T* vb = sv + stage * kTileK * kPitch;
#pragma unroll
    for (int kk = 0; kk < kTileK / 16; ++kk) {
#pragma unroll
      for (int d = 0; d < kDimOctets; d += 2) {
        // Dim octets d and d + 1 (d + 1 may be the zero padding: unused).
        uint32_t vf[4];
        LoadMatrixX4Trans(
            SharedAddress(vb + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kPitch + d * 8 + (lane / 16) * 8), vf);
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
          Mma<T>(o[mb][d], pa[mb][kk], vf[0], vf[1]);
          if (d + 1 < kDimOctets) Mma<T>(o[mb][d + 1], pa[mb][kk], vf[2], vf[3]);
        }
      }
    }
    __syncthreads();  // this stage is refilled two tiles on
  }

  T* out_tile = out + (b * tokens + q0) * s.out_stride + int64_t(h) * kHeadDim + 2 * quad_col;
#pragma unroll
  for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = l_run[mb][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = 1.0f / l;  // >= 1: the row's max contributes exp2(0)
      const int row = warp_row + mb * 16 + quad_row + 8 * r;
      if (q0 + row >= tokens) continue;
      T* dst = out_tile + int64_t(row) * s.out_stride;
#pragma unroll
      for (int d = 0; d < kDimOctets; ++d) {
        *reinterpret_cast<uint32_t*>(dst + d * 8) = Pack<T>(o[mb][d][2 * r] * inv, o[mb][d][2 * r + 1] * inv);
      }
    }
  }
}

template <typename T, int kHeadDim>
cudaError_t LaunchFlash(const DitAttentionShape& shape, float scale_log2, const void* qkv, void* out,
                        cudaStream_t stream) {
  using C = FlashConfig<kHeadDim>;
  auto kernel = FlashAttentionKernel<T, kHeadDim>;
  // Host state, set once per instantiation (not a stream operation, so
  // capture is fine): more than 48 KB of dynamic shared memory.
  static const cudaError_t allowed =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSharedBytes));
  if (allowed != cudaSuccess) return allowed;
  const dim3 grid(unsigned((shape.tokens + C::kTileM - 1) / C::kTileM), unsigned(shape.num_heads),
                  unsigned(shape.batch));
  kernel<<<grid, kFlashThreads, C::kSharedBytes, stream>>>(shape, scale_log2, static_cast<const T*>(qkv),
                                                             static_cast<T*>(out));
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchFlashForHeadDim(const DitAttentionShape& shape, float scale_log2, const void* qkv, void* out,
                                  cudaStream_t stream) {
  switch (shape.head_dim) {
    case 32: return LaunchFlash<T, 32>(shape, scale_log2, qkv, out, stream);
    case 48: return LaunchFlash<T, 48>(shape, scale_log2, qkv, out, stream);
    case 64: return LaunchFlash<T, 64>(shape, scale_log2, qkv, out, stream);
    case 72: return LaunchFlash<T, 72>(shape, scale_log2, qkv, out, stream);
    case 80: return LaunchFlash<T, 80>(shape, scale_log2, qkv, out, stream);
    case 96: return LaunchFlash<T, 96>(shape, scale_log2, qkv, out, stream);
    case 128: return LaunchFlash<T, 128>(shape, scale_log2, qkv, out, stream);
    default: return cudaErrorNotSupported;
  }
}

bool FlashHeadDim(int32_t head_dim) {
  switch (head_dim) {
    case 32:
    case 48:
    case 64:
    case 72:
    case 80:
    case 96:
    case 128:
      return true;
    default:
      return false;
  }
}

bool BadShape(const DitAttentionShape& s) {
  return s.batch < 0 || s.tokens <= 0 || s.num_heads <= 0 || s.head_dim <= 0 || s.head_dim > kMaxHeadDim ||
         s.batch > 65535 || s.num_heads > 65535 || s.qkv_stride < 3 * int64_t(s.num_heads) * s.head_dim ||
         s.out_stride < int64_t(s.num_heads) * s.head_dim;
}

}  // namespace

bool DitAttentionUsesTensorCores(ScalarType type, const DitAttentionShape& shape) {
  return type != ScalarType::kF32 && FlashHeadDim(shape.head_dim) && shape.scale > 0.0f &&
         shape.qkv_stride % 8 == 0 && shape.out_stride % 2 == 0;
}

cudaError_t LaunchDitAttention(ScalarType type, const DitAttentionShape& shape, const void* qkv, void* out,
                               cudaStream_t stream) {
  if (BadShape(shape)) return cudaErrorInvalidValue;
  if (shape.batch == 0) return cudaSuccess;
  const float scale_log2 = shape.scale * kLog2e;
  const bool aligned = reinterpret_cast<uintptr_t>(qkv) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 4 == 0;
  if (DitAttentionUsesTensorCores(type, shape) && aligned) {
    if (type == ScalarType::kF16) return LaunchFlashForHeadDim<__half>(shape, scale_log2, qkv, out, stream);
    return LaunchFlashForHeadDim<__nv_bfloat16>(shape, scale_log2, qkv, out, stream);
  }
  const dim3 grid(unsigned((shape.tokens + kRowWarps - 1) / kRowWarps), unsigned(shape.num_heads),
                  unsigned(shape.batch));
  TERN_DISPATCH_SCALAR(type, T,
                       RowAttentionKernel<T><<<grid, kRowWarps * 32, 0, stream>>>(
                           shape, scale_log2, static_cast<const T*>(qkv), static_cast<T*>(out)));
  return cudaGetLastError();
}

}  // namespace tern::kernels
