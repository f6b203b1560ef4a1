// Weight-only GEMV (weight_only_gemv.h): 1..16 rows of x against a layer
// packed by weight_only_pack.h. Per block: kWarps warps = tiles_per_block
// 16-row tiles times `slices` contiguous chunk ranges; warp w takes tile
// w / slices, slice w % slices. Before waiting for x (PDL) each lane issues
// its first two batches of four 16-byte code loads (ld.global.nc, no L1
// allocation: every byte is used once) and the block copies its tiles'
// group scales and zero codes into shared memory; then x's rows are staged
// in shared memory in B-fragment order (WeightOnlyGemvSharedSlot) and the
// warps stream their chunks, batch a computed while batch b is in flight and
// the reverse. Per chunk a lane reads its x pieces (one or two 16-byte
// shared loads per 8-row tile of x, rows past `rows` are zero registers),
// turns its codes into A fragments (weight_only_fragment.cuh) and runs one
// m16n8k16 MMA per k16 step and row tile into a per-group fp32 partial that the group's scale multiplies into
// the accumulator. The slices of a tile add up in shared memory in a fixed
// order; the bias is added and each output rounded once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/common/streaming_load.cuh"
#include "kernels/common/tensor_core.cuh"
#include "kernels/gemm/weight_only_fragment.cuh"
#include "kernels/gemm/weight_only_gemv.h"

namespace tern::kernels {
namespace {

using weight_only::MakeZero;
using weight_only::StepFragment;
using weight_only::ZeroForms;

constexpr int kWarps = kWeightOnlyGemvWarps;
constexpr int kThreads = kWarps * 32;
constexpr int kBatch = 4;  // 16-byte code loads a lane issues at once (two batches in flight)

// What the kernel needs of a layer, a call and its plan, in device-friendly types.
struct GemvShape {
  int32_t n = 0;
  int32_t k = 0;
  int32_t n_tiles = 0;
  int32_t chunks = 0;
  int32_t groups = 0;
  int32_t group_size = 0;
  int32_t group_shift = -1;  // log2(group_size) when a power of two, else -1
  int32_t mid = 8;           // the symmetric zero code
  int32_t rows = 0;
  int32_t slices = 1;
  int32_t tiles_per_block = 1;
  int32_t slice_chunks = 0;
  int32_t x_row_elements = 0;  // shared row stride of x (x staged)
  int32_t x_bytes = 0;         // where the staged scales start in dynamic shared memory
  int32_t scale_bytes = 0;     // staged scale bytes per tile: groups * 16 * (2 or 4)
  bool x_vector = false;       // x is staged with 16-byte loads (aligned, k % 8 == 0)
  int64_t x_row_stride = 0;
  int64_t y_row_stride = 0;
};

__device__ __forceinline__ int32_t GroupOf(const GemvShape& s, int32_t col) {
  if (s.groups == 1) return 0;
  const int32_t g = s.group_shift >= 0 ? col >> s.group_shift : col / s.group_size;
  return g < s.groups ? g : s.groups - 1;
}

// Dynamic shared memory: x [rows][x_row_elements] in the compute type (when
// kXShared; each chunk's columns in WeightOnlyGemvSharedSlot order, columns
// past k zero), then the block's scales [tiles_per_block][groups][16] as
// stored, then its zero codes [tiles_per_block][groups][16] when the layer
// has them. kChunkInGroup: every chunk lies in one group, so the scale and
// zero are looked up once per chunk instead of once per k16 step.
// kRowTiles: 8-row tiles of x (1: up to 8 rows, 2: up to 16), each one MMA per
// k16 step.
template <typename T, int kBits, int kRowTiles, bool kHalfScales, bool kChunkInGroup, bool kXShared>
__global__ void __launch_bounds__(kThreads, kRowTiles == 1 ? 3 : 2)
    WeightOnlyGemvKernel(GemvShape s, const uint4* __restrict__ codes, const void* __restrict__ scales,
                         const uint8_t* __restrict__ zeros, const T* __restrict__ x, const T* __restrict__ bias,
                         T* __restrict__ y) {
  constexpr int kSteps = kBits == 4 ? 4 : 2;  // k16 steps per chunk
  constexpr int kChunkCols = 16 * kSteps;
  extern __shared__ uint4 shared[];
  __shared__ float partial[kWarps][kRowTiles][4][32];
  PdlAllowDependents();
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int tile_local = warp / s.slices;
  const int32_t tile0 = int32_t(blockIdx.x) * s.tiles_per_block;
  const int32_t tile = tile0 + tile_local;
  const int32_t c_begin = (warp % s.slices) * s.slice_chunks;
  // Empty for a tile past the layer and for slices past the last chunk.
  const int32_t c_end = tile < s.n_tiles ? min(c_begin + s.slice_chunks, s.chunks) : c_begin;
  const uint4* const lane_codes = codes + int64_t(tile) * s.chunks * 32 + lane;

  uint4 batch_a[kBatch], batch_b[kBatch];
  const auto request = [&](uint4 (&batch)[kBatch], int32_t c) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (c + u < c_end) batch[u] = LoadStreaming16(lane_codes + int64_t(c + u) * 32);
    }
  };
  // Codes, scales and zeros are constant: requested before the wait for x.
  request(batch_a, c_begin);
  request(batch_b, c_begin + kBatch);

  uint8_t* const staged = reinterpret_cast<uint8_t*>(shared) + s.x_bytes;
  uint8_t* const staged_zeros = staged + int64_t(s.tiles_per_block) * s.scale_bytes;
  {
    const int32_t block_tiles = min(s.tiles_per_block, s.n_tiles - tile0);
    const int32_t scale_vecs = block_tiles * (s.scale_bytes / 16);
    const uint4* scale_src =
        reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(scales) + int64_t(tile0) * s.scale_bytes);
    for (int32_t i = threadIdx.x; i < scale_vecs; i += kThreads) reinterpret_cast<uint4*>(staged)[i] = __ldg(scale_src + i);
    if (zeros != nullptr) {
      const int32_t zero_vecs = block_tiles * s.groups;  // 16 zero codes per group and tile
      const uint4* zero_src = reinterpret_cast<const uint4*>(zeros + int64_t(tile0) * s.groups * 16);
      for (int32_t i = threadIdx.x; i < zero_vecs; i += kThreads) {
        reinterpret_cast<uint4*>(staged_zeros)[i] = __ldg(zero_src + i);
      }
    }
  }
  PdlWaitForPrior();

  T* const xs = reinterpret_cast<T*>(shared);
  if constexpr (kXShared) {
    if (s.x_vector) {
      // 8 columns per piece: pairs 0..3 of one half (b0 or b1 columns) of one k16 step.
      const int32_t row_pieces = s.chunks * (kChunkCols / 8);
      const int32_t total = s.rows * row_pieces;
      for (int32_t base = threadIdx.x; base < total; base += 4 * kThreads) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int32_t i = base + u * kThreads;
          v[u] = make_uint4(0, 0, 0, 0);
          if (i < total) {
            const int32_t m = i / row_pieces, col = (i % row_pieces) * 8;
            if (col < s.k) v[u] = __ldg(reinterpret_cast<const uint4*>(x + m * s.x_row_stride + col));
          }
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int32_t i = base + u * kThreads;
          if (i < total) {
            const int32_t m = i / row_pieces, col = (i % row_pieces) * 8;
            const int32_t in_chunk = col % kChunkCols;
            uint32_t* dst = reinterpret_cast<uint32_t*>(xs + m * s.x_row_elements + (col - in_chunk));
            const uint32_t words[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
            for (int q = 0; q < 4; ++q) dst[WeightOnlyGemvSharedSlot(kBits, in_chunk + 2 * q) / 2] = words[q];
          }
        }
      }
    } else {
      // One pair (two columns, 4 bytes) per piece.
      const int32_t row_pairs = s.chunks * (kChunkCols / 2);
      const int32_t total = s.rows * row_pairs;
      for (int32_t base = threadIdx.x; base < total; base += 4 * kThreads) {
        uint32_t v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int32_t i = base + u * kThreads;
          v[u] = 0;
          if (i < total) {
            const int32_t m = i / row_pairs, col = (i % row_pairs) * 2;
            if (col < s.k) v[u] = __ldg(reinterpret_cast<const unsigned int*>(x + m * s.x_row_stride + col));
          }
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int32_t i = base + u * kThreads;
          if (i < total) {
            const int32_t m = i / row_pairs, col = (i % row_pairs) * 2;
            const int32_t in_chunk = col % kChunkCols;
            uint32_t* dst = reinterpret_cast<uint32_t*>(xs + m * s.x_row_elements + (col - in_chunk));
            dst[WeightOnlyGemvSharedSlot(kBits, in_chunk) / 2] = v[u];
          }
        }
      }
    }
  }
  __syncthreads();  // staged scales, zeros and x are visible to every warp

  // The group's scale and zero forms for output rows g (lo) and g + 8 (hi).
  float scale_lo = 0.0f, scale_hi = 0.0f;
  ZeroForms zero_lo, zero_hi;
  if (zeros == nullptr) {
    zero_lo = MakeZero<T, kBits>(s.mid);
    zero_hi = zero_lo;
  }
  const int32_t tile_groups = tile_local * s.groups;
  const auto load_group = [&](int32_t group) {
    const int32_t at = (tile_groups + group) * 16 + g;
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
      zero_lo = MakeZero<T, kBits>(staged_zeros[at]);
      zero_hi = MakeZero<T, kBits>(staged_zeros[at + 8]);
    }
  };

  // Lane (g, t) of row tile tt multiplies x row 8 tt + g (B column g); rows
  // past `rows` are zeros.
  bool row_valid[kRowTiles];
  const T* x_shared_lane[kRowTiles];
  const T* x_global_lane[kRowTiles];
#pragma unroll
  for (int tt = 0; tt < kRowTiles; ++tt) {
    const int32_t row = 8 * tt + g;
    row_valid[tt] = row < s.rows;
    x_shared_lane[tt] = xs + row * s.x_row_elements + t * 4 * kSteps;
    x_global_lane[tt] = x + (row_valid[tt] ? row : 0) * s.x_row_stride + 2 * t;
  }

  float acc[kRowTiles][4];
#pragma unroll
  for (int tt = 0; tt < kRowTiles; ++tt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[tt][i] = 0.0f;
  }
  const auto process = [&](const uint4& v, int32_t chunk) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    const int32_t chunk_col = chunk * kChunkCols;
    // xb[tt][2 j], xb[tt][2 j + 1]: the B fragment (b0, b1) of step j for row tile tt.
    uint32_t xb[kRowTiles][2 * kSteps];
#pragma unroll
    for (int tt = 0; tt < kRowTiles; ++tt) {
      if constexpr (kXShared) {
        const uint4* piece = reinterpret_cast<const uint4*>(x_shared_lane[tt] + chunk_col);
#pragma unroll
        for (int q = 0; q < kSteps / 2; ++q) {
          const uint4 p = row_valid[tt] ? piece[q] : make_uint4(0, 0, 0, 0);
          xb[tt][4 * q] = p.x;
          xb[tt][4 * q + 1] = p.y;
          xb[tt][4 * q + 2] = p.z;
          xb[tt][4 * q + 3] = p.w;
        }
      } else {
#pragma unroll
        for (int j = 0; j < kSteps; ++j) {
          const int32_t col = chunk_col + 16 * j + 2 * t;
          const unsigned int* p = reinterpret_cast<const unsigned int*>(x_global_lane[tt] + chunk_col + 16 * j);
          xb[tt][2 * j] = row_valid[tt] && col < s.k ? __ldg(p) : 0u;
          xb[tt][2 * j + 1] = row_valid[tt] && col + 8 < s.k ? __ldg(p + 4) : 0u;
        }
      }
    }
    float part[kRowTiles][4];
#pragma unroll
    for (int tt = 0; tt < kRowTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) part[tt][i] = 0.0f;
    }
    const auto flush = [&] {
#pragma unroll
      for (int tt = 0; tt < kRowTiles; ++tt) {
        acc[tt][0] = fmaf(scale_lo, part[tt][0], acc[tt][0]);
        acc[tt][1] = fmaf(scale_lo, part[tt][1], acc[tt][1]);
        acc[tt][2] = fmaf(scale_hi, part[tt][2], acc[tt][2]);
        acc[tt][3] = fmaf(scale_hi, part[tt][3], acc[tt][3]);
      }
    };
    if constexpr (kChunkInGroup) load_group(GroupOf(s, chunk_col));
    int32_t current = -1;
#pragma unroll
    for (int j = 0; j < kSteps; ++j) {
      if constexpr (!kChunkInGroup) {
        const int32_t group = GroupOf(s, chunk_col + 16 * j);
        if (group != current) {
          if (current >= 0) {
            flush();
#pragma unroll
            for (int tt = 0; tt < kRowTiles; ++tt) {
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
      for (int tt = 0; tt < kRowTiles; ++tt) Mma<T>(part[tt], a, xb[tt][2 * j], xb[tt][2 * j + 1]);
    }
    flush();
  };

  // Batch a is used while batch b is in flight, then a is refilled, and so on.
  for (int32_t c = c_begin; c < c_end; c += 2 * kBatch) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (c + u < c_end) process(batch_a[u], c + u);
    }
    request(batch_a, c + 2 * kBatch);
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (c + kBatch + u < c_end) process(batch_b[u], c + kBatch + u);
    }
    request(batch_b, c + 3 * kBatch);
  }

  // Accumulator register i of lane (g, t) in row tile tt: output feature
  // g + 8 (i >> 1) of the tile, x row 8 tt + 2 t + (i & 1).
#pragma unroll
  for (int tt = 0; tt < kRowTiles; ++tt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][tt][i][lane] = acc[tt][i];
  }
  __syncthreads();
  for (int o = threadIdx.x; o < s.tiles_per_block * kRowTiles * 128; o += kThreads) {
    const int tl = o / (kRowTiles * 128), tt = (o / 128) % kRowTiles, i = (o / 32) % 4, ln = o % 32;
    float sum = 0.0f;
    for (int sl = 0; sl < s.slices; ++sl) sum += partial[tl * s.slices + sl][tt][i][ln];
    const int32_t feature = (tile0 + tl) * 16 + ln / 4 + 8 * (i >> 1);
    const int32_t row = 8 * tt + 2 * (ln % 4) + (i & 1);
    if (feature < s.n && row < s.rows) {
      if (bias != nullptr) sum += ToFloat(bias[feature]);
      y[row * s.y_row_stride + feature] = FromFloat<T>(sum);
    }
  }
}

// A device attribute of the current device, read once per device; `fallback`
// when it cannot be read.
template <cudaDeviceAttr kAttribute>
int32_t DeviceAttribute(int32_t fallback) {
  static std::atomic<int32_t> cache[64] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return fallback;
  }
  if (device >= 0 && device < 64) {
    const int32_t cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int value = 0;
  if (cudaDeviceGetAttribute(&value, kAttribute, device) != cudaSuccess || value <= 0) {
    cudaGetLastError();
    return fallback;
  }
  if (device >= 0 && device < 64) cache[device].store(value, std::memory_order_relaxed);
  return value;
}

int32_t DeviceSms() { return DeviceAttribute<cudaDevAttrMultiProcessorCount>(1); }


template <typename T, int kBits, int kRowTiles, bool kHalfScales, bool kChunkInGroup, bool kXShared>
cudaError_t LaunchVariant(const GemvShape& s, const WeightOnlyDeviceWeight& w, const WeightOnlyGemvPlan& plan,
                          const void* x, const void* bias, void* y, cudaStream_t stream, bool pdl) {
  const auto kernel = WeightOnlyGemvKernel<T, kBits, kRowTiles, kHalfScales, kChunkInGroup, kXShared>;
  // Every plan's limit: the budget of two blocks an SM, or the device's
  // per-block maximum for one-block-an-SM plans.
  static const cudaError_t allowed =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           int(std::max(WeightOnlyGemvDeviceSharedBytes(), kWeightOnlyGemvSharedBudget)));
  if (allowed != cudaSuccess) return allowed;
  return LaunchWithPdl(pdl, kernel, dim3(unsigned(plan.blocks)), dim3(kThreads), size_t(plan.shared_bytes), stream, s,
                       static_cast<const uint4*>(w.codes), w.scales, w.zeros, static_cast<const T*>(x),
                       static_cast<const T*>(bias), static_cast<T*>(y));
}

template <typename T, int kBits, int kRowTiles, bool kHalfScales>
cudaError_t LaunchScales(const GemvShape& s, const WeightOnlyDeviceWeight& w, const WeightOnlyGemvPlan& plan,
                         const void* x, const void* bias, void* y, cudaStream_t stream, bool pdl) {
  const bool in_group = w.layout.groups == 1 || w.layout.group_size % w.layout.chunk_cols() == 0;
  if (plan.x_shared) {
    return in_group ? LaunchVariant<T, kBits, kRowTiles, kHalfScales, true, true>(s, w, plan, x, bias, y, stream, pdl)
                    : LaunchVariant<T, kBits, kRowTiles, kHalfScales, false, true>(s, w, plan, x, bias, y, stream,
                                                                                   pdl);
  }
  return in_group ? LaunchVariant<T, kBits, kRowTiles, kHalfScales, true, false>(s, w, plan, x, bias, y, stream, pdl)
                  : LaunchVariant<T, kBits, kRowTiles, kHalfScales, false, false>(s, w, plan, x, bias, y, stream,
                                                                                  pdl);
}

template <typename T, int kBits, bool kHalfScales>
cudaError_t LaunchRows(const GemvShape& s, const WeightOnlyDeviceWeight& w, const WeightOnlyGemvPlan& plan,
                       const void* x, const void* bias, void* y, cudaStream_t stream, bool pdl) {
  return s.rows <= 8 ? LaunchScales<T, kBits, 1, kHalfScales>(s, w, plan, x, bias, y, stream, pdl)
                     : LaunchScales<T, kBits, 2, kHalfScales>(s, w, plan, x, bias, y, stream, pdl);
}

template <typename T>
cudaError_t LaunchTyped(const GemvShape& s, const WeightOnlyDeviceWeight& w, const WeightOnlyGemvPlan& plan,
                        const void* x, const void* bias, void* y, cudaStream_t stream, bool pdl) {
  if (w.layout.bits == 4) {
    return w.half_scales ? LaunchRows<T, 4, true>(s, w, plan, x, bias, y, stream, pdl)
                         : LaunchRows<T, 4, false>(s, w, plan, x, bias, y, stream, pdl);
  }
  return w.half_scales ? LaunchRows<T, 8, true>(s, w, plan, x, bias, y, stream, pdl)
                       : LaunchRows<T, 8, false>(s, w, plan, x, bias, y, stream, pdl);
}

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

int64_t WeightOnlyGemvDeviceSharedBytes() {
  // Less the static partial sums at two row tiles, the most.
  const int64_t optin = DeviceAttribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(0);
  const int64_t partial = int64_t(kWarps) * 2 * 4 * 32 * sizeof(float);
  return std::max<int64_t>(optin - partial, 0) / 16 * 16;
}

bool WeightOnlyGemvSupported(ScalarType type, const WeightOnlyDeviceWeight& weight, const WeightOnlyGemmParams& params,
                             const void* x) {
  const WeightOnlyLayout& l = weight.layout;
  if (type == ScalarType::kF32 || !WeightOnlyLayoutSupported(l)) return false;
  if (params.rows < 0 || params.rows > kWeightOnlyGemvMaxRows || params.x_row_stride % 2 != 0 ||
      params.x_row_stride < l.k || params.y_row_stride < l.n || !Aligned(x, 4)) {
    return false;
  }
  if (!Aligned(weight.codes, 16) || !Aligned(weight.scales, 16) || !Aligned(weight.zeros, 16)) return false;
  return params.rows == 0 ||
         PlanWeightOnlyGemv(l, params.rows, weight.half_scales, weight.zeros != nullptr, /*sms=*/1).ok();
}

cudaError_t LaunchWeightOnlyGemv(ScalarType type, const WeightOnlyDeviceWeight& weight,
                                 const WeightOnlyGemmParams& params, const void* x, const void* bias, void* y,
                                 cudaStream_t stream, bool pdl, int32_t slices, int64_t max_shared_bytes) {
  if (params.rows == 0) return cudaSuccess;
  if (!WeightOnlyGemvSupported(type, weight, params, x)) return cudaErrorNotSupported;
  const WeightOnlyLayout& l = weight.layout;
  const int64_t device_shared = WeightOnlyGemvDeviceSharedBytes();
  const int64_t shared = max_shared_bytes > 0 ? std::min(max_shared_bytes, device_shared) : device_shared;
  const WeightOnlyGemvPlan plan =
      PlanWeightOnlyGemv(l, params.rows, weight.half_scales, weight.zeros != nullptr, DeviceSms(), slices, shared);
  if (!plan.ok()) return cudaErrorNotSupported;
  GemvShape s;
  s.n = int32_t(l.n);
  s.k = int32_t(l.k);
  s.n_tiles = int32_t(l.n_tiles());
  s.chunks = int32_t(l.k_chunks());
  s.groups = int32_t(l.groups);
  s.group_size = int32_t(l.group_size);
  for (int32_t shift = 0; shift < 31; ++shift) {
    if ((int64_t(1) << shift) == l.group_size) s.group_shift = shift;
  }
  s.mid = 1 << (l.bits - 1);
  s.rows = int32_t(params.rows);
  s.slices = plan.slices;
  s.tiles_per_block = plan.tiles_per_block;
  s.slice_chunks = plan.slice_chunks;
  s.x_row_elements = int32_t(plan.x_row_elements);
  s.x_bytes = int32_t(plan.x_bytes);
  s.scale_bytes = int32_t(l.groups * kWeightOnlyTileRows * (weight.half_scales ? 2 : 4));
  s.x_vector = Aligned(x, 16) && params.x_row_stride % 8 == 0 && l.k % 8 == 0;
  s.x_row_stride = params.x_row_stride;
  s.y_row_stride = params.y_row_stride;
  return type == ScalarType::kF16 ? LaunchTyped<__half>(s, weight, plan, x, bias, y, stream, pdl)
                                  : LaunchTyped<__nv_bfloat16>(s, weight, plan, x, bias, y, stream, pdl);
}

}  // namespace tern::kernels
