#include <mma.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/dispatch.cuh"
#include "kernels/dit/dit_attention.h"

namespace tern::kernels {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxHeadDim = 256;

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
  for (int k0 = 0; k0 < s.tokens; k0 += 32) {
    const int j = k0 + lane;
    float score = -INFINITY;
    if (j < s.tokens) {
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
    const int keys = min(32, s.tokens - k0);
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
// Tensor cores: 64 query rows x 64 keys a tile, 4 warps of 16 query rows.

constexpr int kTileQ = 64;
constexpr int kTileK = 64;
constexpr int kFlashThreads = 128;
constexpr int kMaxFlashHeadDim = 128;

// Rows [first, first + 64) of one head's q, k or v (`src` at the head's
// column offset) into shared [64, dp], zero beyond `tokens` and head_dim.
template <typename T>
__device__ __forceinline__ void LoadTile(T* dst, const T* src, int first, int tokens, int hd, int dp, int64_t stride,
                                         bool vec) {
  if (vec) {
    // 16-byte pieces: hd, the stride and the base are multiples of 8
    // elements (checked by the launcher), so a piece is all in or all out.
    const int pieces = dp / 8;
    for (int i = threadIdx.x; i < kTileQ * pieces; i += kFlashThreads) {
      const int r = i / pieces, c = (i - r * pieces) * 8;
      uint4 value = make_uint4(0, 0, 0, 0);
      if (first + r < tokens && c < hd) value = *reinterpret_cast<const uint4*>(src + int64_t(first + r) * stride + c);
      *reinterpret_cast<uint4*>(dst + r * dp + c) = value;
    }
  } else {
    for (int i = threadIdx.x; i < kTileQ * dp; i += kFlashThreads) {
      const int r = i / dp, c = i - r * dp;
      dst[i] = (first + r < tokens && c < hd) ? src[int64_t(first + r) * stride + c] : FromFloat<T>(0.0f);
    }
  }
}

size_t FlashSharedBytes(int dp, size_t element_bytes) {
  return (size_t(kTileQ) * dp + 2 * size_t(kTileK) * dp) * element_bytes  // q, k, v
         + size_t(kTileQ) * kTileK * 4                                     // scores
         + size_t(kTileQ) * kTileK * element_bytes                         // probabilities
         + size_t(kTileQ) * dp * 4                                         // output accumulators
         + 2 * size_t(kTileQ) * 4;                                         // row max, row sum
}

template <typename T>
__global__ void __launch_bounds__(kFlashThreads)
    FlashAttentionKernel(DitAttentionShape s, int dp, float scale_log2, bool vec, const T* qkv, T* out) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem[];
  T* qs = reinterpret_cast<T*>(smem);
  T* ks = qs + kTileQ * dp;
  T* vs = ks + kTileK * dp;
  float* ss = reinterpret_cast<float*>(vs + kTileK * dp);
  T* ps = reinterpret_cast<T*>(ss + kTileQ * kTileK);
  float* os = reinterpret_cast<float*>(ps + kTileQ * kTileK);
  float* ms = os + kTileQ * dp;
  float* ls = ms + kTileQ;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t b = blockIdx.z;
  const int h = blockIdx.y;
  const int q0 = blockIdx.x * kTileQ;
  const int hd = s.head_dim;
  const int64_t width = int64_t(s.num_heads) * hd;
  const T* sample = qkv + b * s.tokens * s.qkv_stride + int64_t(h) * hd;

  LoadTile(qs, sample, q0, s.tokens, hd, dp, s.qkv_stride, vec);
  for (int i = threadIdx.x; i < kTileQ * dp; i += kFlashThreads) os[i] = 0.0f;
  if (threadIdx.x < kTileQ) {
    ms[threadIdx.x] = -INFINITY;
    ls[threadIdx.x] = 0.0f;
  }
  const int row0 = warp * 16;  // this warp's query rows in the tile
  for (int k0 = 0; k0 < s.tokens; k0 += kTileK) {
    __syncthreads();  // the previous tile's k and v are consumed (first time: q and the state are written)
    LoadTile(ks, sample + width, k0, s.tokens, hd, dp, s.qkv_stride, vec);
    LoadTile(vs, sample + 2 * width, k0, s.tokens, hd, dp, s.qkv_stride, vec);
    __syncthreads();

    // Scores of the warp's 16 rows against the 64 keys.
    for (int nb = 0; nb < kTileK / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kb = 0; kb < dp / 16; ++kb) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bk;
        wmma::load_matrix_sync(a, qs + row0 * dp + kb * 16, dp);
        wmma::load_matrix_sync(bk, ks + nb * 16 * dp + kb * 16, dp);  // K^T: K [key, dim] read column-major
        wmma::mma_sync(acc, a, bk, acc);
      }
      wmma::store_matrix_sync(ss + row0 * kTileK + nb * 16, acc, kTileK, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax, one row at a time across the warp (2 keys a lane).
    for (int rr = 0; rr < 16; ++rr) {
      const int row = row0 + rr;
      const float s0 = k0 + lane < s.tokens ? ss[row * kTileK + lane] * scale_log2 : -INFINITY;
      const float s1 = k0 + lane + 32 < s.tokens ? ss[row * kTileK + lane + 32] * scale_log2 : -INFINITY;
      const float m_old = ms[row];
      const float m_new = fmaxf(m_old, WarpMax(fmaxf(s0, s1)));  // finite: key k0 exists
      const float alpha = exp2f(m_old - m_new);
      const T p0 = FromFloat<T>(exp2f(s0 - m_new));
      const T p1 = FromFloat<T>(exp2f(s1 - m_new));
      ps[row * kTileK + lane] = p0;
      ps[row * kTileK + lane + 32] = p1;
      const float sum = WarpSum(ToFloat(p0) + ToFloat(p1));
      for (int c = lane; c < dp; c += 32) os[row * dp + c] *= alpha;
      if (lane == 0) {  // every lane read ms[row] before the shuffles above
        ms[row] = m_new;
        ls[row] = ls[row] * alpha + sum;
      }
    }
    __syncwarp();

    // O += P V for the warp's rows.
    for (int nb = 0; nb < dp / 16; ++nb) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, os + row0 * dp + nb * 16, dp, wmma::mem_row_major);
      for (int kb = 0; kb < kTileK / 16; ++kb) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bv;
        wmma::load_matrix_sync(a, ps + row0 * kTileK + kb * 16, kTileK);
        wmma::load_matrix_sync(bv, vs + kb * 16 * dp + nb * 16, dp);
        wmma::mma_sync(acc, a, bv, acc);
      }
      wmma::store_matrix_sync(os + row0 * dp + nb * 16, acc, dp, wmma::mem_row_major);
    }
    __syncwarp();
  }

  for (int rr = 0; rr < 16; ++rr) {
    const int row = row0 + rr;
    const int t = q0 + row;
    if (t >= s.tokens) break;
    const float inv = 1.0f / ls[row];
    T* dst = out + (b * s.tokens + t) * s.out_stride + int64_t(h) * hd;
    for (int c = lane; c < hd; c += 32) dst[c] = FromFloat<T>(os[row * dp + c] * inv);
  }
}

// Opts a kernel into more than 48 KB of dynamic shared memory, once per
// size increase (host state; not a stream operation, so capture is fine).
template <typename Kernel>
cudaError_t AllowSharedBytes(Kernel kernel, size_t bytes, size_t* allowed) {
  if (bytes <= *allowed) return cudaSuccess;
  const cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (error == cudaSuccess) *allowed = bytes;
  return error;
}

bool BadShape(const DitAttentionShape& s) {
  return s.batch < 0 || s.tokens <= 0 || s.num_heads <= 0 || s.head_dim <= 0 || s.head_dim > kMaxHeadDim ||
         s.batch > 65535 || s.num_heads > 65535 || s.qkv_stride < 3 * int64_t(s.num_heads) * s.head_dim ||
         s.out_stride < int64_t(s.num_heads) * s.head_dim;
}

}  // namespace

bool DitAttentionUsesTensorCores(ScalarType type, const DitAttentionShape& shape) {
  return type != ScalarType::kF32 && shape.head_dim <= kMaxFlashHeadDim;
}

cudaError_t LaunchDitAttention(ScalarType type, const DitAttentionShape& shape, const void* qkv, void* out,
                               cudaStream_t stream) {
  if (BadShape(shape)) return cudaErrorInvalidValue;
  if (shape.batch == 0) return cudaSuccess;
  const float scale_log2 = shape.scale * kLog2e;
  if (!DitAttentionUsesTensorCores(type, shape)) {
    const dim3 grid(unsigned((shape.tokens + kRowWarps - 1) / kRowWarps), unsigned(shape.num_heads),
                    unsigned(shape.batch));
    TERN_DISPATCH_SCALAR(type, T,
                         RowAttentionKernel<T><<<grid, kRowWarps * 32, 0, stream>>>(
                             shape, scale_log2, static_cast<const T*>(qkv), static_cast<T*>(out)));
    return cudaGetLastError();
  }
  const int dp = (shape.head_dim + 15) / 16 * 16;
  const bool vec = shape.head_dim % 8 == 0 && shape.qkv_stride % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(qkv) % 16 == 0;
  const size_t bytes = FlashSharedBytes(dp, 2);
  const dim3 grid(unsigned((shape.tokens + kTileQ - 1) / kTileQ), unsigned(shape.num_heads), unsigned(shape.batch));
  if (type == ScalarType::kF16) {
    static size_t allowed = 48 << 10;
    if (cudaError_t e = AllowSharedBytes(FlashAttentionKernel<__half>, bytes, &allowed); e != cudaSuccess) return e;
    FlashAttentionKernel<__half><<<grid, kFlashThreads, bytes, stream>>>(
        shape, dp, scale_log2, vec, static_cast<const __half*>(qkv), static_cast<__half*>(out));
  } else {
    static size_t allowed = 48 << 10;
    if (cudaError_t e = AllowSharedBytes(FlashAttentionKernel<__nv_bfloat16>, bytes, &allowed); e != cudaSuccess) {
      return e;
    }
    FlashAttentionKernel<__nv_bfloat16><<<grid, kFlashThreads, bytes, stream>>>(
        shape, dp, scale_log2, vec, static_cast<const __nv_bfloat16*>(qkv), static_cast<__nv_bfloat16*>(out));
  }
  return cudaGetLastError();
}

}  // namespace tern::kernels
