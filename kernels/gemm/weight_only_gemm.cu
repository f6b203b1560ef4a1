// Weight-only GEMM for small row counts on the tensor cores, after the
// layout in weight_only_pack.h. Per block: one 16-row tile of outputs and
// kWarps warps; warp w takes chunks w, w + kWarps, ... of the input columns
// in batches of kBatch chunks (512 bytes each per warp). Each warp keeps
// kStages - 1 batches in flight with cp.async into its own ring of shared
// memory (each lane copies and later reads back only its own 16 bytes, so
// no barrier is needed), which keeps enough bytes in flight to reach the
// copy bandwidth without holding them in registers. Per k16 step a lane
// turns its 8 codes into the 4 registers of an m16n8k16 A fragment (c - zero,
// exact in fp16 and bf16), loads x's B fragment for each 8 rows of x (zero
// past the rows and past k) and runs the MMA into a per-group fp32 partial,
// which the group's scale multiplies into the accumulator when the group
// ends. The warps' accumulators meet in shared memory (the ring, reused);
// the bias is added and each output rounded once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <type_traits>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/common/tensor_core.cuh"
#include "kernels/gemm/weight_only_fragment.cuh"
#include "kernels/gemm/weight_only_gemm.h"

namespace tern::kernels {
namespace {

using weight_only::Bits;
using weight_only::FromBits;
using weight_only::LoadScale;
using weight_only::MakeZero;
using weight_only::StepFragment;
using weight_only::ZeroForms;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kBatch = 4;   // chunks a warp requests at once
constexpr int kStages = 4;  // batches in a warp's ring (kStages - 1 in flight)
// Bytes of a block's cp.async rings.
constexpr int64_t kRingBytes = int64_t(kWarps) * kStages * kBatch * kWeightOnlyChunkBytes;

// What the kernels need of a layer and a call, in device-friendly types.
struct Shape {
  int32_t n = 0;
  int32_t k = 0;
  int32_t chunks = 0;  // k_chunks
  int32_t groups = 0;
  int32_t group_size = 0;
  int32_t group_shift = -1;  // log2(group_size) when a power of two, else -1
  int32_t mid = 8;           // the symmetric zero code
  int32_t rows = 0;
  int64_t x_row_stride = 0;
  int64_t y_row_stride = 0;
};

Shape MakeShape(const WeightOnlyLayout& l) {
  Shape s;
  s.n = int32_t(l.n);
  s.k = int32_t(l.k);
  s.chunks = int32_t(l.k_chunks());
  s.groups = int32_t(l.groups);
  s.group_size = int32_t(l.group_size);
  for (int32_t shift = 0; shift < 31; ++shift) {
    if ((int64_t(1) << shift) == l.group_size) s.group_shift = shift;
  }
  s.mid = 1 << (l.bits - 1);
  return s;
}

__device__ __forceinline__ int32_t GroupOf(const Shape& s, int32_t col) {
  if (s.groups == 1) return 0;
  const int32_t g = s.group_shift >= 0 ? col >> s.group_shift : col / s.group_size;
  return g < s.groups ? g : s.groups - 1;
}

// Bytes of dynamic shared memory that stage a tile's scales and zero codes
// (kStaged): [groups][16] scales as stored, then [groups][16] zero codes when
// the layer has them. Both parts are multiples of 16 bytes.
int64_t StagedBytes(const WeightOnlyLayout& l, bool half_scales, bool zeros) {
  return l.groups * 16 * ((half_scales ? 2 : 4) + (zeros ? 1 : 0));
}

// Dynamic shared memory: the warps' rings (kRingBytes; the partial sums of
// the final reduction reuse them), then the staged scales and zeros.
// kStaged: the block copies its tile's scales and zero codes into shared
// memory once (16-byte loads, issued with the first codes, before the wait
// for x), so the loop never waits on a scale; otherwise each group's scale is
// read from global memory when the group starts (layers whose scales do not
// fit the shared memory budget, or unaligned scale or zero arrays).
// kChunkInGroup: every chunk lies inside one group (the group size is a
// multiple of the chunk's columns, or one group), so the scale and zero are
// looked up once per chunk instead of once per k16 step.
template <typename T, int kBits, int kTiles, bool kHalfScales, bool kStaged, bool kChunkInGroup>
__global__ void __launch_bounds__(kThreads)
    WeightOnlyGemmKernel(Shape s, const uint4* __restrict__ codes, const void* __restrict__ scales,
                         const uint8_t* __restrict__ zeros, const T* __restrict__ x, const T* __restrict__ bias,
                         T* __restrict__ y) {
  constexpr int kSteps = kBits == 4 ? 4 : 2;  // k16 steps per chunk
  constexpr int kChunkCols = 16 * kSteps;
  constexpr int kScaleVecsPerGroup = kHalfScales ? 2 : 4;  // 16-byte vectors of one group's 16 scales
  static_assert(int64_t(kWarps) * kTiles * 4 * 32 * 4 <= kRingBytes, "the partial sums must fit the rings");
  extern __shared__ uint4 shared[];
  uint4* const staged = shared + kRingBytes / 16;
  PdlAllowDependents();
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t tile = blockIdx.x;
  const uint4* tile_codes = codes + tile * int64_t(s.chunks) * 32 + lane;
  // This lane's slot of batch slot b, chunk u: ring[warp][b][u][lane].
  uint4* const ring = shared + int64_t(warp) * kStages * kBatch * 32 + lane;

  // The warp's chunks are warp + kWarps i; batch b holds i in [b kBatch, (b + 1) kBatch).
  const int32_t own_chunks = warp < s.chunks ? (s.chunks - warp + kWarps - 1) / kWarps : 0;
  const int32_t batches = (own_chunks + kBatch - 1) / kBatch;
  const auto request = [&](int32_t b) {
    if (b < batches) {
      uint4* slot = ring + (b % kStages) * kBatch * 32;
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int32_t c = warp + kWarps * (b * kBatch + u);
        CopyAsync16(SharedAddress(slot + u * 32), tile_codes + int64_t(c < s.chunks ? c : 0) * 32, c < s.chunks);
      }
    }
    CopyAsyncCommit();
  };

  float acc[kTiles][4];
#pragma unroll
  for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[tt][i] = 0.0f;
  }

  // The group's scale and zero forms for output rows g (lo) and g + 8 (hi).
  float scale_lo = 0.0f, scale_hi = 0.0f;
  ZeroForms zero_lo, zero_hi;
  const auto load_group = [&](int32_t group) {
    if constexpr (kStaged) {
      const int32_t at = group * 16 + g;
      if constexpr (kHalfScales) {
        const __half* staged_scales = reinterpret_cast<const __half*>(staged);
        scale_lo = __half2float(staged_scales[at]);
        scale_hi = __half2float(staged_scales[at + 8]);
      } else {
        const float* staged_scales = reinterpret_cast<const float*>(staged);
        scale_lo = staged_scales[at];
        scale_hi = staged_scales[at + 8];
      }
      if (zeros != nullptr) {
        const uint8_t* staged_zeros = reinterpret_cast<const uint8_t*>(staged + s.groups * kScaleVecsPerGroup);
        zero_lo = MakeZero<T, kBits>(staged_zeros[at]);
        zero_hi = MakeZero<T, kBits>(staged_zeros[at + 8]);
      }
    } else {
      const int64_t at = (tile * s.groups + group) * 16 + g;
      scale_lo = LoadScale<kHalfScales>(scales, at);
      scale_hi = LoadScale<kHalfScales>(scales, at + 8);
      if (zeros != nullptr) {
        zero_lo = MakeZero<T, kBits>(__ldg(zeros + at));
        zero_hi = MakeZero<T, kBits>(__ldg(zeros + at + 8));
      }
    }
  };
  if (zeros == nullptr) {
    zero_lo = MakeZero<T, kBits>(s.mid);
    zero_hi = zero_lo;
  }

  // x's B fragments: lane (g, t) of row tile tt reads row 8 tt + g, columns
  // 2 t + {0, 1} and 2 t + 8 + {0, 1} of each k16 step.
  const T* x_lane[kTiles];
#pragma unroll
  for (int tt = 0; tt < kTiles; ++tt) {
    const int32_t row = tt * 8 + g;
    x_lane[tt] = row < s.rows ? x + row * s.x_row_stride + 2 * t : nullptr;
  }

  const auto process = [&](const uint4& v, int32_t chunk) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    const int32_t chunk_col = chunk * kChunkCols;
    const bool full = chunk_col + kChunkCols <= s.k;
    float part[kTiles][4];
    int32_t current = -1;
    const auto flush = [&] {
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) {
        acc[tt][0] = fmaf(scale_lo, part[tt][0], acc[tt][0]);
        acc[tt][1] = fmaf(scale_lo, part[tt][1], acc[tt][1]);
        acc[tt][2] = fmaf(scale_hi, part[tt][2], acc[tt][2]);
        acc[tt][3] = fmaf(scale_hi, part[tt][3], acc[tt][3]);
      }
    };
    if constexpr (kChunkInGroup) load_group(GroupOf(s, chunk_col));
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) part[tt][i] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kSteps; ++j) {
      const int32_t col0 = chunk_col + 16 * j;
      if constexpr (!kChunkInGroup) {
        const int32_t group = GroupOf(s, col0);
        if (group != current) {
          if (current >= 0) {
            flush();
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
              for (int i = 0; i < 4; ++i) part[tt][i] = 0.0f;
            }
          }
          current = group;
          load_group(group);
        }
      }
      uint32_t a[4];
      StepFragment<T, kBits>(w, j, zero_lo, zero_hi, a);
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) {
        uint32_t b0 = 0, b1 = 0;
        if (x_lane[tt] != nullptr) {
          const T* xr = x_lane[tt] + col0;
          if (full) {
            b0 = __ldg(reinterpret_cast<const unsigned int*>(xr));
            b1 = __ldg(reinterpret_cast<const unsigned int*>(xr + 8));
          } else {
            if (col0 + 2 * t < s.k) b0 = __ldg(reinterpret_cast<const unsigned int*>(xr));
            if (col0 + 2 * t + 8 < s.k) b1 = __ldg(reinterpret_cast<const unsigned int*>(xr + 8));
          }
        }
        Mma<T>(part[tt], a, b0, b1);
      }
    }
    flush();
  };

  // Codes, scales and zeros are constant: requested before the wait for x.
#pragma unroll
  for (int b = 0; b < kStages - 1; ++b) request(b);
  if constexpr (kStaged) {
    const int32_t scale_vecs = s.groups * kScaleVecsPerGroup;
    const uint4* scale_src = static_cast<const uint4*>(scales) + tile * scale_vecs;
#pragma unroll 4
    for (int32_t i = threadIdx.x; i < scale_vecs; i += kThreads) staged[i] = __ldg(scale_src + i);
    if (zeros != nullptr) {
      const uint4* zero_src = reinterpret_cast<const uint4*>(zeros) + tile * s.groups;
#pragma unroll 4
      for (int32_t i = threadIdx.x; i < s.groups; i += kThreads) staged[scale_vecs + i] = __ldg(zero_src + i);
    }
  }
  PdlWaitForPrior();
  if constexpr (kStaged) __syncthreads();
  for (int32_t b = 0; b < batches; ++b) {
    CopyAsyncWait<kStages - 2>();  // batch b has landed (this lane's part of it)
    request(b + kStages - 1);      // into the slot batch b - 1 left
    const uint4* slot = ring + (b % kStages) * kBatch * 32;
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int32_t c = warp + kWarps * (b * kBatch + u);
      if (c < s.chunks) process(slot[u * 32], c);
    }
  }
  CopyAsyncWait<0>();
  __syncthreads();  // every warp is done with its ring: it now holds the partial sums

  float (*partial)[kTiles][4][32] = reinterpret_cast<float (*)[kTiles][4][32]>(shared);
#pragma unroll
  for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][tt][i][lane] = acc[tt][i];
  }
  __syncthreads();
  // Accumulator register i of lane (g, t) is output feature g + 8 (i >> 1)
  // of the tile and x row 8 tt + 2 t + (i & 1).
  for (int o = threadIdx.x; o < kTiles * 128; o += kThreads) {
    const int tt = o / 128, i = (o / 32) % 4, ln = o % 32;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w][tt][i][ln];
    const int32_t feature = int32_t(tile) * 16 + ln / 4 + 8 * (i >> 1);
    const int32_t row = tt * 8 + 2 * (ln % 4) + (i & 1);
    if (feature < s.n && row < s.rows) {
      if (bias != nullptr) sum += ToFloat(bias[feature]);
      y[row * s.y_row_stride + feature] = FromFloat<T>(sum);
    }
  }
}

// Dequantize: one warp per (tile, chunk). Its lanes turn their 16 bytes of
// codes into the chunk's weights (positions as in weight_only_pack.h: step
// j, register p is row g + 8 (p & 1), columns 16 j + 2 t + 8 (p >> 1) +
// {0, 1}) in the warp's shared-memory tile, then the warp writes the tile's
// 16 rows of the chunk's columns, 16 bytes a store, so each row's part of
// the chunk goes out as whole sectors (the pairs alone would fill half of
// each). Rows are padded by 16 bytes: the pair writes of a warp then fall
// in 32 different banks.
constexpr int kDequantWarps = 8;

template <typename T>
__device__ __forceinline__ void StagePair(T* dst, float a, float b) {
  dst[0] = FromFloat<T>(a);
  dst[1] = FromFloat<T>(b);
}

template <typename T, bool kHalfScales>
__global__ void __launch_bounds__(kDequantWarps * 32)
    WeightOnlyDequantizeKernel(Shape s, int32_t bits, const uint8_t* __restrict__ codes,
                               const void* __restrict__ scales, const uint8_t* __restrict__ zeros,
                               int64_t tile_chunks, bool vector_rows, T* __restrict__ w) {
  constexpr int kVec = 16 / int(sizeof(T));     // elements a 16-byte store writes
  constexpr int kStride = 64 + kVec;            // a staged row: 64 columns and 16 bytes of padding
  __shared__ __align__(16) T stage[kDequantWarps][16 * kStride];
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
  const int64_t tile_chunk = int64_t(blockIdx.x) * kDequantWarps + warp;
  if (tile_chunk >= tile_chunks) return;  // only warp-level synchronization below
  const int32_t chunk = int32_t(tile_chunk % s.chunks);
  const int64_t tile = tile_chunk / s.chunks;
  const int steps = bits == 4 ? 4 : 2;
  const int32_t cols = 16 * steps;  // the chunk's columns
  T* tile_stage = stage[warp];
  const uint4 v = *reinterpret_cast<const uint4*>(codes + tile_chunk * 512 + lane * 16);
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
  const int g = lane / 4, t = lane % 4;
  for (int j = 0; j < steps; ++j) {
    for (int p = 0; p < 4; ++p) {
      uint32_t m;
      if (bits == 4) {
        m = (words[j] >> (4 * p)) & 0x000f000fu;
      } else {
        m = (words[2 * j + (p >> 1)] >> (8 * (p & 1))) & 0x00ff00ffu;
      }
      const int32_t c_lo = int32_t(m & 0xffffu), c_hi = int32_t(m >> 16);
      const int32_t r = g + 8 * (p & 1);
      const int32_t in_chunk = 16 * j + 2 * t + 8 * (p >> 1);
      const int32_t col = chunk * cols + in_chunk;
      const int64_t row = tile * 16 + r;
      float a = 0.0f, b = 0.0f;
      if (row < s.n && col < s.k) {  // k is even: col + 1 < k too
        const int64_t at = (tile * s.groups + GroupOf(s, col)) * 16 + r;
        const int32_t zero = zeros != nullptr ? zeros[at] : s.mid;
        const float scale = LoadScale<kHalfScales>(scales, at);
        a = float(c_lo - zero) * scale;
        b = float(c_hi - zero) * scale;
      }
      StagePair<T>(tile_stage + r * kStride + in_chunk, a, b);
    }
  }
  __syncwarp();
  const int32_t per_row = cols / kVec;
  for (int32_t idx = lane; idx < 16 * per_row; idx += 32) {
    const int32_t r = idx / per_row, in_chunk = (idx % per_row) * kVec;
    const int64_t row = tile * 16 + r;
    const int32_t col = chunk * cols + in_chunk;
    if (row >= s.n || col >= s.k) continue;
    const T* src = tile_stage + r * kStride + in_chunk;
    T* dst = w + row * s.k + col;
    if (vector_rows && col + kVec <= s.k) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    } else {
      for (int e = 0; e < kVec && col + e < s.k; ++e) dst[e] = src[e];
    }
  }
}

template <typename T>
__global__ void GatherColumnsKernel(int64_t rows, int64_t k, const int32_t* __restrict__ order, const T* __restrict__ x,
                                    int64_t x_row_stride, T* __restrict__ out, int64_t out_row_stride) {
  const int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= rows * k) return;
  const int64_t r = index / k, j = index % k;
  out[r * out_row_stride + j] = x[r * x_row_stride + order[j]];
}

// Dynamic shared memory a block may use: the rings plus staged scales and
// zeros up to this budget (opted into once per kernel); layers with more
// groups read their scales from global memory.
constexpr int64_t kSharedBudget = 160 * 1024;

template <typename Kernel>
cudaError_t AllowSharedBudget(Kernel kernel) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSharedBudget));
}

template <typename T, int kBits, int kTiles, bool kHalfScales>
cudaError_t LaunchTiles(const Shape& s, const WeightOnlyDeviceWeight& w, dim3 grid, const void* x, const void* bias,
                        void* y, cudaStream_t stream, bool pdl) {
  const auto launch = [&](auto kernel, int64_t shared) {
    return LaunchWithPdl(pdl, kernel, grid, dim3(kThreads), size_t(shared), stream, s,
                         static_cast<const uint4*>(w.codes), w.scales, w.zeros, static_cast<const T*>(x),
                         static_cast<const T*>(bias), static_cast<T*>(y));
  };
  const auto kStagedInGroup = WeightOnlyGemmKernel<T, kBits, kTiles, kHalfScales, true, true>;
  const auto kStagedSplit = WeightOnlyGemmKernel<T, kBits, kTiles, kHalfScales, true, false>;
  const auto kUnstaged = WeightOnlyGemmKernel<T, kBits, kTiles, kHalfScales, false, false>;
  static const cudaError_t allowed = [&] {
    cudaError_t e = AllowSharedBudget(kStagedInGroup);
    if (e == cudaSuccess) e = AllowSharedBudget(kStagedSplit);
    if (e == cudaSuccess) e = AllowSharedBudget(kUnstaged);
    return e;
  }();
  if (allowed != cudaSuccess) return allowed;
  const int64_t staged = StagedBytes(w.layout, kHalfScales, w.zeros != nullptr);
  const bool aligned = reinterpret_cast<uintptr_t>(w.scales) % 16 == 0 && reinterpret_cast<uintptr_t>(w.zeros) % 16 == 0;
  if (aligned && kRingBytes + staged <= kSharedBudget) {
    const int64_t chunk_cols = w.layout.chunk_cols();
    const bool chunk_in_group = w.layout.groups == 1 || w.layout.group_size % chunk_cols == 0;
    return launch(chunk_in_group ? kStagedInGroup : kStagedSplit, kRingBytes + staged);
  }
  return launch(kUnstaged, kRingBytes);
}

template <typename T, int kBits, bool kHalfScales>
cudaError_t LaunchGemm(const Shape& s, const WeightOnlyDeviceWeight& w, dim3 grid, const void* x, const void* bias,
                       void* y, cudaStream_t stream, bool pdl) {
  if (s.rows <= 8) return LaunchTiles<T, kBits, 1, kHalfScales>(s, w, grid, x, bias, y, stream, pdl);
  if (s.rows <= 16) return LaunchTiles<T, kBits, 2, kHalfScales>(s, w, grid, x, bias, y, stream, pdl);
  if (s.rows <= 32) return LaunchTiles<T, kBits, 4, kHalfScales>(s, w, grid, x, bias, y, stream, pdl);
  return LaunchTiles<T, kBits, 8, kHalfScales>(s, w, grid, x, bias, y, stream, pdl);
}

template <typename T>
cudaError_t LaunchTyped(const Shape& s, const WeightOnlyDeviceWeight& w, const void* x, const void* bias, void* y,
                        cudaStream_t stream, bool pdl) {
  const dim3 grid(unsigned(w.layout.n_tiles()));
  if (w.layout.bits == 4) {
    return w.half_scales ? LaunchGemm<T, 4, true>(s, w, grid, x, bias, y, stream, pdl)
                         : LaunchGemm<T, 4, false>(s, w, grid, x, bias, y, stream, pdl);
  }
  return w.half_scales ? LaunchGemm<T, 8, true>(s, w, grid, x, bias, y, stream, pdl)
                       : LaunchGemm<T, 8, false>(s, w, grid, x, bias, y, stream, pdl);
}

bool LayoutOk(const WeightOnlyLayout& l) {
  return (l.bits == 4 || l.bits == 8) && l.n > 0 && l.k > 0 && l.k % 2 == 0 && l.groups > 0 &&
         l.group_size * l.groups == l.k && (l.groups == 1 || l.group_size % 16 == 0) && l.n < INT32_MAX &&
         l.k < INT32_MAX / 2;
}

}  // namespace

bool WeightOnlyGemmSupported(ScalarType type, const WeightOnlyDeviceWeight& weight, const WeightOnlyGemmParams& params,
                             const void* x) {
  return type != ScalarType::kF32 && LayoutOk(weight.layout) && params.rows >= 0 &&
         params.rows <= kWeightOnlyGemmMaxRows && params.x_row_stride % 2 == 0 &&
         params.x_row_stride >= weight.layout.k && params.y_row_stride >= weight.layout.n &&
         reinterpret_cast<uintptr_t>(x) % 4 == 0;
}

cudaError_t LaunchWeightOnlyGemm(ScalarType type, const WeightOnlyDeviceWeight& weight,
                                 const WeightOnlyGemmParams& params, const void* x, const void* bias, void* y,
                                 cudaStream_t stream, bool pdl) {
  if (params.rows == 0) return cudaSuccess;
  if (!WeightOnlyGemmSupported(type, weight, params, x)) return cudaErrorNotSupported;
  Shape s = MakeShape(weight.layout);
  s.rows = int32_t(params.rows);
  s.x_row_stride = params.x_row_stride;
  s.y_row_stride = params.y_row_stride;
  return type == ScalarType::kF16 ? LaunchTyped<__half>(s, weight, x, bias, y, stream, pdl)
                                  : LaunchTyped<__nv_bfloat16>(s, weight, x, bias, y, stream, pdl);
}

cudaError_t LaunchWeightOnlyDequantize(ScalarType type, const WeightOnlyDeviceWeight& weight, void* w,
                                       cudaStream_t stream) {
  if (!LayoutOk(weight.layout)) return cudaErrorNotSupported;
  const Shape s = MakeShape(weight.layout);
  const int64_t tile_chunks = weight.layout.n_tiles() * weight.layout.k_chunks();
  const dim3 grid(unsigned((tile_chunks + kDequantWarps - 1) / kDequantWarps));
  const auto* codes = static_cast<const uint8_t*>(weight.codes);
  TERN_DISPATCH_SCALAR(type, T, {
    // 16-byte stores need every row of w to start on a 16-byte boundary.
    const bool vector_rows = reinterpret_cast<uintptr_t>(w) % 16 == 0 && (size_t(s.k) * sizeof(T)) % 16 == 0;
    if (weight.half_scales) {
      WeightOnlyDequantizeKernel<T, true><<<grid, kDequantWarps * 32, 0, stream>>>(
          s, weight.layout.bits, codes, weight.scales, weight.zeros, tile_chunks, vector_rows, static_cast<T*>(w));
    } else {
      WeightOnlyDequantizeKernel<T, false><<<grid, kDequantWarps * 32, 0, stream>>>(
          s, weight.layout.bits, codes, weight.scales, weight.zeros, tile_chunks, vector_rows, static_cast<T*>(w));
    }
  });
  return cudaGetLastError();
}

cudaError_t LaunchGatherColumns(ScalarType type, int64_t rows, int64_t k, const int32_t* order, const void* x,
                                int64_t x_row_stride, void* out, int64_t out_row_stride, cudaStream_t stream) {
  if (rows == 0 || k == 0) return cudaSuccess;
  constexpr int kBlock = 256;
  const dim3 grid(unsigned((rows * k + kBlock - 1) / kBlock));
  TERN_DISPATCH_SCALAR(type, T, {
    GatherColumnsKernel<T><<<grid, kBlock, 0, stream>>>(rows, k, order, static_cast<const T*>(x), x_row_stride,
                                                        static_cast<T*>(out), out_row_stride);
  });
  return cudaGetLastError();
}

}  // namespace tern::kernels
