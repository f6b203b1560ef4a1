#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/common/dispatch.cuh"
#include "kernels/dit/dit_kernels.h"
#include "kernels/gemm/activation_quant.cuh"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;

// A grid-stride launch over `count` elements: enough blocks to fill any GPU
// several times over, a number that depends on `count` alone.
unsigned Blocks(int64_t count) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((count + kThreads - 1) / kThreads, 1 << 16)));
}

#define TERN_FOR_ELEMENTS(i, count) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (count); i += int64_t(gridDim.x) * blockDim.x)

// Row-wise kernels: blocks stride over rows, threads over columns, so no
// element index is ever divided (64-bit division is slow on a GPU).
unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(rows, 1 << 20))); }

#define TERN_FOR_ROWS(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)
#define TERN_FOR_COLS(c, cols) for (int64_t c = threadIdx.x; c < (cols); c += blockDim.x)

template <typename T>
__global__ void PatchifyKernel(int64_t count, DitPatchShape s, const T* images, int64_t images_stride, T* patches,
                               int64_t patches_stride) {
  const int32_t grid = s.size / s.patch;
  const int64_t tokens = int64_t(grid) * grid;
  const int32_t features = s.channels * s.patch * s.patch;
  TERN_FOR_ELEMENTS(i, count) {
    // i = (row of patches) * features + feature, feature = (ch, pi, pj).
    const int64_t row = i / features;
    const int32_t f = int32_t(i - row * features);
    const int64_t b = row / tokens;
    const int32_t l = int32_t(row - b * tokens);
    const int32_t r = l / grid, c = l - r * grid;
    const int32_t ch = f / (s.patch * s.patch);
    const int32_t rem = f - ch * s.patch * s.patch;
    const int32_t pi = rem / s.patch, pj = rem - pi * s.patch;
    const int64_t pixel = (int64_t(ch) * s.size + r * s.patch + pi) * s.size + c * s.patch + pj;
    patches[row * patches_stride + f] = images[b * images_stride + pixel];
  }
}

template <typename T>
__global__ void UnpatchifyKernel(int64_t count, DitPatchShape s, int32_t keep, const T* patches,
                                 int64_t patches_stride, T* images, int64_t images_stride) {
  const int32_t grid = s.size / s.patch;
  const int64_t tokens = int64_t(grid) * grid;
  const int64_t pixels = int64_t(keep) * s.size * s.size;
  TERN_FOR_ELEMENTS(i, count) {
    // i = b * pixels + (ch, y, x) of the output image.
    const int64_t b = i / pixels;
    const int64_t p = i - b * pixels;
    const int32_t ch = int32_t(p / (int64_t(s.size) * s.size));
    const int32_t yx = int32_t(p - int64_t(ch) * s.size * s.size);
    const int32_t y = yx / s.size, x = yx - y * s.size;
    const int32_t r = y / s.patch, pi = y - r * s.patch;
    const int32_t c = x / s.patch, pj = x - c * s.patch;
    const int64_t row = b * tokens + int64_t(r) * grid + c;
    images[b * images_stride + p] = patches[row * patches_stride + (int64_t(pi) * s.patch + pj) * s.channels + ch];
  }
}

template <typename T>
__global__ void AddPositionsKernel(int64_t rows, int64_t cols, T* x, int64_t x_stride, const T* table,
                                   int64_t table_rows) {
  TERN_FOR_ROWS(r, rows) {
    T* row = x + r * x_stride;
    const T* pos = table + (r % table_rows) * cols;
    TERN_FOR_COLS(c, cols) row[c] = FromFloat<T>(ToFloat(row[c]) + ToFloat(pos[c]));
  }
}

template <typename T>
__global__ void GatherKernel(int64_t rows, int64_t cols, const int32_t* labels, const T* table, int64_t table_rows,
                             T* out, int64_t out_stride) {
  TERN_FOR_ROWS(b, rows) {
    const int64_t label = labels[b];
    if (label < 0 || label >= table_rows) {
      TERN_FOR_COLS(c, cols) out[b * out_stride + c] = FromFloat<T>(__int_as_float(0x7fc00000));  // NaN
      continue;
    }
    const T* src = table + label * cols;
    TERN_FOR_COLS(c, cols) out[b * out_stride + c] = src[c];
  }
}

template <typename T>
__global__ void PointwiseKernel(DitPointwise op, int64_t rows, int64_t cols, T* x, int64_t x_stride, const T* y,
                                int64_t y_stride, T* out, int64_t out_stride) {
  TERN_FOR_ROWS(r, rows) TERN_FOR_COLS(c, cols) {
    const float v = ToFloat(x[r * x_stride + c]);
    switch (op) {
      case DitPointwise::kAdd:
        x[r * x_stride + c] = FromFloat<T>(v + ToFloat(y[r * y_stride + c]));
        break;
      case DitPointwise::kSilu:
        out[r * out_stride + c] = FromFloat<T>(v / (1.0f + expf(-v)));
        break;
      case DitPointwise::kGeluTanh: {
        // 0.5 v (1 + tanh(u)) = v / (1 + exp(-2u)), as the CPU reference
        // writes it (no cancellation in 1 + tanh(u) for negative u).
        const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        out[r * out_stride + c] = FromFloat<T>(v / (1.0f + expf(-2.0f * u)));
        break;
      }
    }
  }
}

// x + gate * y, rounded to T: the gated residual, one definition for the
// gated add and the fused gated add + LayerNorm, so the two agree bitwise.
template <typename T>
__device__ __forceinline__ T GatedSum(T x, T gate, T y) {
  return FromFloat<T>(ToFloat(x) + ToFloat(gate) * ToFloat(y));
}

template <typename T>
__global__ void GatedAddKernel(int64_t rows, int64_t cols, int64_t tokens, T* x, int64_t x_stride, const T* y,
                               int64_t y_stride, const T* gate, int64_t gate_stride) {
  TERN_FOR_ROWS(r, rows) {
    T* a = x + r * x_stride;
    const T* b = y + r * y_stride;
    const T* g = gate + (r / tokens) * gate_stride;
    TERN_FOR_COLS(c, cols) a[c] = GatedSum(a[c], g[c], b[c]);
  }
}

constexpr int kNormWarps = 8;  // rows per block
// Columns a lane keeps in registers: rows up to 32 * kNormCached = 1280
// columns (DiT-XL/2's 1152 included) are read from memory once; a wider
// row's remaining columns are read again in each of the three passes. With
// the launch bound of two blocks an SM (at most 128 registers a thread),
// 40 fit without spilling at 16 bits.
constexpr int kNormCached = 40;
// Columns a lane loads at once when the row allows: 16 bytes, else 4
// columns, else 1 (LaunchNormModulate).
constexpr int kNormVector = 4;

// kVec consecutive elements, loaded and stored as one access.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) NormPack {
  T v[kVec];
};

// One warp per row: out = LayerNorm(v) * (1 + scale) + shift, where v is
// the row of x or, when kGated, x + gate * y, which is also written back
// to x (one pass over x: read once, written once). A lane takes groups of
// kVec consecutive columns, group g at column kVec * (lane + 32 g). Mean,
// then the biased variance about it, in fp32, each summed over the lane's
// columns in order and then across the warp; the values are those of x
// after rounding to T, so the gated form is bitwise GatedAddKernel followed
// by the plain form with the same kVec. kVec divides cols and every
// pointer and stride is aligned to it (NormVector).
// kVec one-byte codes, stored as one access.
template <int kVec>
struct alignas(kVec) CodePack {
  uint8_t b[kVec];
};

template <typename T, bool kGated, bool kQuant, int kVec>
__global__ void __launch_bounds__(kNormWarps * 32, 2)
    NormModulateKernel(DitNormParams p, T* x, const T* y, int64_t y_stride, const T* gate, int64_t gate_stride,
                       const T* shift, const T* scale, T* out, DitQuantizedRows q) {
  using Pack = NormPack<T, kVec>;
  constexpr int kGroups = kNormCached / kVec;  // groups held in registers
  constexpr int64_t kSpan = 32 * kVec;         // columns a warp covers per group
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kNormWarps + (threadIdx.x >> 5);
  if (row >= p.rows) return;
  T* in = x + row * p.x_stride;
  const int64_t sample = row / p.tokens;
  const T* sh = shift + sample * p.shift_stride;
  const T* sc = scale + sample * p.scale_stride;
  T* o = kQuant ? nullptr : out + row * p.out_stride;
  const int64_t first = int64_t(kVec) * lane;
  // The group at column c of the new x (gated: updated and stored here).
  const auto update = [&](int64_t c) {
    Pack a = *reinterpret_cast<const Pack*>(in + c);
    if constexpr (kGated) {
      const Pack g = *reinterpret_cast<const Pack*>(gate + sample * gate_stride + c);
      const Pack b = *reinterpret_cast<const Pack*>(y + row * y_stride + c);
#pragma unroll
      for (int j = 0; j < kVec; ++j) a.v[j] = GatedSum(a.v[j], g.v[j], b.v[j]);
      *reinterpret_cast<Pack*>(in + c) = a;
    }
    return a;
  };
  // The output group at column c, rounded to T: what the plain form stores
  // and what the quantized form quantizes.
  const auto modulated = [&](int64_t c, const float (&v)[kVec], float mean, float rstd) {
    const Pack gamma = *reinterpret_cast<const Pack*>(sc + c);
    const Pack beta = *reinterpret_cast<const Pack*>(sh + c);
    Pack r;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      r.v[j] = FromFloat<T>((v[j] - mean) * rstd * (1.0f + ToFloat(gamma.v[j])) + ToFloat(beta.v[j]));
    }
    return r;
  };
  // A column's value: from the registers, else from x (which, gated, this
  // lane has already updated). The cached groups' loads are issued kBatch
  // groups at a time before those groups' stores: x may alias y or gate as
  // far as the compiler knows, so a load after a store of x would wait for
  // the loads that store depends on, one group at a time.
  constexpr int kBatchMost = sizeof(T) == 4 || kVec == 1 ? 5 : 10;  // registers: 3 packs a group
  constexpr int kBatch = kGroups < kBatchMost ? kGroups : kBatchMost;
  static_assert(kGroups % kBatch == 0, "cached groups come in whole batches");
  float cached[kGroups][kVec];
  float sum = 0.0f;
#pragma unroll
  for (int i0 = 0; i0 < kGroups; i0 += kBatch) {
    Pack a[kBatch], g[kBatch], b[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int64_t c = first + kSpan * (i0 + k);
      if (c < p.cols) {
        a[k] = *reinterpret_cast<const Pack*>(in + c);
        if constexpr (kGated) {
          g[k] = *reinterpret_cast<const Pack*>(gate + sample * gate_stride + c);
          b[k] = *reinterpret_cast<const Pack*>(y + row * y_stride + c);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int i = i0 + k;
      const int64_t c = first + kSpan * i;
#pragma unroll
      for (int j = 0; j < kVec; ++j) cached[i][j] = 0.0f;
      if (c < p.cols) {
        if constexpr (kGated) {
#pragma unroll
          for (int j = 0; j < kVec; ++j) a[k].v[j] = GatedSum(a[k].v[j], g[k].v[j], b[k].v[j]);
          *reinterpret_cast<Pack*>(in + c) = a[k];
        }
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          cached[i][j] = ToFloat(a[k].v[j]);
          sum += cached[i][j];
        }
      }
    }
  }
  for (int64_t c = first + kSpan * kGroups; c < p.cols; c += kSpan) {
    const Pack a = update(c);
#pragma unroll
    for (int j = 0; j < kVec; ++j) sum += ToFloat(a.v[j]);
  }
  const float mean = WarpSum(sum) / float(p.cols);
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < kGroups; ++i) {
    if (first + kSpan * i < p.cols) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const float d = cached[i][j] - mean;
        sq += d * d;
      }
    }
  }
  for (int64_t c = first + kSpan * kGroups; c < p.cols; c += kSpan) {
    const Pack a = *reinterpret_cast<const Pack*>(in + c);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float d = ToFloat(a.v[j]) - mean;
      sq += d * d;
    }
  }
  const float var = WarpSum(sq) / float(p.cols);
  const float rstd = rsqrtf(var + p.eps);
  // Columns past the registers: read from x again.
  const auto reread = [&](int64_t c, float (&v)[kVec]) {
    const Pack a = *reinterpret_cast<const Pack*>(in + c);
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] = ToFloat(a.v[j]);
  };
  if constexpr (!kQuant) {
#pragma unroll
    for (int i = 0; i < kGroups; ++i) {
      const int64_t c = first + kSpan * i;
      if (c < p.cols) *reinterpret_cast<Pack*>(o + c) = modulated(c, cached[i], mean, rstd);
    }
    for (int64_t c = first + kSpan * kGroups; c < p.cols; c += kSpan) {
      float v[kVec];
      reread(c, v);
      *reinterpret_cast<Pack*>(o + c) = modulated(c, v, mean, rstd);
    }
  } else {
    // The row's largest output magnitude, its scale, then its codes: the
    // values are recomputed, not kept (the same expressions, so the same
    // bits), which leaves the registers to the cached row.
    float absmax = 0.0f;
    const auto widen = [&](const Pack& r) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) absmax = fmaxf(absmax, fabsf(ToFloat(r.v[j])));
    };
#pragma unroll
    for (int i = 0; i < kGroups; ++i) {
      const int64_t c = first + kSpan * i;
      if (c < p.cols) widen(modulated(c, cached[i], mean, rstd));
    }
    for (int64_t c = first + kSpan * kGroups; c < p.cols; c += kSpan) {
      float v[kVec];
      reread(c, v);
      widen(modulated(c, v, mean, rstd));
    }
    absmax = WarpMax(absmax);
    float row_scale, inv;
    DynamicRowScale(q.type, absmax, &row_scale, &inv);
    if (lane == 0) q.row_scales[row] = row_scale;
    uint8_t* codes = q.codes + row * q.stride;
    const auto put = [&](int64_t c, const Pack& r) {
      CodePack<kVec> b;
#pragma unroll
      for (int j = 0; j < kVec; ++j) b.b[j] = QuantCode(q.type, ToFloat(r.v[j]), inv);
      *reinterpret_cast<CodePack<kVec>*>(codes + c) = b;
    };
#pragma unroll
    for (int i = 0; i < kGroups; ++i) {
      const int64_t c = first + kSpan * i;
      if (c < p.cols) put(c, modulated(c, cached[i], mean, rstd));
    }
    for (int64_t c = first + kSpan * kGroups; c < p.cols; c += kSpan) {
      float v[kVec];
      reread(c, v);
      put(c, modulated(c, v, mean, rstd));
    }
  }
}

template <typename T>
__global__ void FromFloatKernel(int64_t rows, int64_t cols, const float* src, T* out, int64_t out_stride) {
  TERN_FOR_ROWS(r, rows) TERN_FOR_COLS(c, cols) out[r * out_stride + c] = FromFloat<T>(src[r * cols + c]);
}

template <typename T>
__global__ void ToFloatKernel(int64_t rows, int64_t cols, const T* x, int64_t x_stride, float* out) {
  TERN_FOR_ROWS(r, rows) TERN_FOR_COLS(c, cols) out[r * cols + c] = ToFloat(x[r * x_stride + c]);
}

bool BadShape(const DitPatchShape& s) {
  return s.channels <= 0 || s.patch <= 0 || s.size <= 0 || s.size % s.patch != 0;
}

}  // namespace

cudaError_t LaunchDitPatchify(ScalarType type, int64_t batch, const DitPatchShape& shape, const void* images,
                              int64_t images_stride, void* patches, int64_t patches_stride, cudaStream_t stream) {
  if (batch < 0 || BadShape(shape)) return cudaErrorInvalidValue;
  const int64_t count = batch * int64_t(shape.channels) * shape.size * shape.size;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       PatchifyKernel<T><<<Blocks(count), kThreads, 0, stream>>>(
                           count, shape, static_cast<const T*>(images), images_stride, static_cast<T*>(patches),
                           patches_stride));
  return cudaGetLastError();
}

cudaError_t LaunchDitUnpatchify(ScalarType type, int64_t batch, const DitPatchShape& shape, int32_t keep,
                                const void* patches, int64_t patches_stride, void* images, int64_t images_stride,
                                cudaStream_t stream) {
  if (batch < 0 || BadShape(shape) || keep <= 0 || keep > shape.channels) return cudaErrorInvalidValue;
  const int64_t count = batch * int64_t(keep) * shape.size * shape.size;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       UnpatchifyKernel<T><<<Blocks(count), kThreads, 0, stream>>>(
                           count, shape, keep, static_cast<const T*>(patches), patches_stride,
                           static_cast<T*>(images), images_stride));
  return cudaGetLastError();
}

cudaError_t LaunchDitAddPositions(ScalarType type, int64_t rows, int64_t cols, void* x, int64_t x_stride,
                                  const void* table, int64_t table_rows, cudaStream_t stream) {
  if (rows < 0 || cols < 0 || table_rows <= 0) return cudaErrorInvalidValue;
  const int64_t count = rows * cols;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       AddPositionsKernel<T><<<RowBlocks(rows), kThreads, 0, stream>>>(
                           rows, cols, static_cast<T*>(x), x_stride, static_cast<const T*>(table), table_rows));
  return cudaGetLastError();
}

cudaError_t LaunchDitGatherRows(ScalarType type, int64_t batch, int64_t cols, const int32_t* labels,
                                const void* table, int64_t table_rows, void* out, int64_t out_stride,
                                cudaStream_t stream) {
  if (batch < 0 || cols < 0 || table_rows < 0) return cudaErrorInvalidValue;
  const int64_t count = batch * cols;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       GatherKernel<T><<<RowBlocks(batch), kThreads, 0, stream>>>(
                           batch, cols, labels, static_cast<const T*>(table), table_rows, static_cast<T*>(out),
                           out_stride));
  return cudaGetLastError();
}

cudaError_t LaunchDitPointwise(ScalarType type, DitPointwise op, int64_t rows, int64_t cols, void* x,
                               int64_t x_stride, const void* y, int64_t y_stride, void* out, int64_t out_stride,
                               cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  const int64_t count = rows * cols;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       PointwiseKernel<T><<<RowBlocks(rows), kThreads, 0, stream>>>(
                           op, rows, cols, static_cast<T*>(x), x_stride, static_cast<const T*>(y), y_stride,
                           static_cast<T*>(out), out_stride));
  return cudaGetLastError();
}

cudaError_t LaunchDitGatedAdd(ScalarType type, int64_t rows, int64_t cols, int64_t tokens, void* x,
                              int64_t x_stride, const void* y, int64_t y_stride, const void* gate,
                              int64_t gate_stride, cudaStream_t stream) {
  if (rows < 0 || cols < 0 || tokens <= 0) return cudaErrorInvalidValue;
  const int64_t count = rows * cols;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       GatedAddKernel<T><<<RowBlocks(rows), kThreads, 0, stream>>>(
                           rows, cols, tokens, static_cast<T*>(x), x_stride, static_cast<const T*>(y), y_stride,
                           static_cast<const T*>(gate), gate_stride));
  return cudaGetLastError();
}

namespace {

// True when every row of a strided tensor starts on a `bytes` boundary.
bool RowsAligned(const void* p, int64_t stride, size_t elem, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0 && (size_t(stride) * elem) % bytes == 0;
}

// Whether every row of the norm's tensors allows accesses of `vec` columns
// (the output: `vec` elements of T, or `vec` bytes of codes).
template <bool kGated, bool kQuant>
bool NormRowsAllow(int vec, size_t elem, const DitNormParams& params, const void* x, const void* y,
                   int64_t y_stride, const void* gate, int64_t gate_stride, const void* shift, const void* scale,
                   const void* out, const DitQuantizedRows& q) {
  const size_t bytes = elem * size_t(vec);
  const bool out_aligned =
      kQuant ? RowsAligned(q.codes, q.stride, 1, size_t(vec)) : RowsAligned(out, params.out_stride, elem, bytes);
  return params.cols % vec == 0 && RowsAligned(x, params.x_stride, elem, bytes) &&
         RowsAligned(shift, params.shift_stride, elem, bytes) && RowsAligned(scale, params.scale_stride, elem, bytes) &&
         out_aligned && (!kGated || (RowsAligned(y, y_stride, elem, bytes) && RowsAligned(gate, gate_stride, elem, bytes)));
}

// Launches NormModulateKernel; y and gate are read only when kGated. Rows
// whose width and addresses allow it take 16 bytes per access (8 columns
// of a 16-bit type, 4 of fp32), else kNormVector columns, else one: the
// choice follows from shapes and addresses alone (the workspace's, the same
// at every batch size), never from the row count, so batch invariance holds.
template <bool kGated, bool kQuant>
cudaError_t LaunchNormModulate(ScalarType type, const DitNormParams& params, void* x, const void* y,
                               int64_t y_stride, const void* gate, int64_t gate_stride, const void* shift,
                               const void* scale, void* out, const DitQuantizedRows& q, cudaStream_t stream) {
  if (params.rows < 0 || params.cols <= 0 || params.tokens <= 0) return cudaErrorInvalidValue;
  if (params.rows == 0) return cudaSuccess;
  const int64_t blocks = (params.rows + kNormWarps - 1) / kNormWarps;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T, {
    const auto allow = [&](int vec) {
      return NormRowsAllow<kGated, kQuant>(vec, sizeof(T), params, x, y, y_stride, gate, gate_stride, shift, scale,
                                           out, q);
    };
    const auto launch = [&](auto vec) {
      NormModulateKernel<T, kGated, kQuant, decltype(vec)::value><<<unsigned(blocks), kNormWarps * 32, 0, stream>>>(
          params, static_cast<T*>(x), static_cast<const T*>(y), y_stride, static_cast<const T*>(gate),
          gate_stride, static_cast<const T*>(shift), static_cast<const T*>(scale), static_cast<T*>(out), q);
    };
    constexpr int kWide = int(16 / sizeof(T));
    if (kWide > kNormVector && allow(kWide)) {
      launch(std::integral_constant<int, kWide>{});
    } else if (allow(kNormVector)) {
      launch(std::integral_constant<int, kNormVector>{});
    } else {
      launch(std::integral_constant<int, 1>{});
    }
  });
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchDitLayerNormModulate(ScalarType type, const DitNormParams& params, const void* x, const void* shift,
                                       const void* scale, void* out, cudaStream_t stream) {
  // The plain form never writes x.
  return LaunchNormModulate<false, false>(type, params, const_cast<void*>(x), nullptr, 0, nullptr, 0, shift, scale,
                                          out, {}, stream);
}

cudaError_t LaunchDitGatedAddLayerNormModulate(ScalarType type, const DitNormParams& params, void* x, const void* y,
                                               int64_t y_stride, const void* gate, int64_t gate_stride,
                                               const void* shift, const void* scale, void* out,
                                               cudaStream_t stream) {
  return LaunchNormModulate<true, false>(type, params, x, y, y_stride, gate, gate_stride, shift, scale, out, {},
                                         stream);
}

cudaError_t LaunchDitLayerNormModulateQuantized(ScalarType type, const DitNormParams& params, const void* x,
                                                const void* shift, const void* scale, const DitQuantizedRows& out,
                                                cudaStream_t stream) {
  if (out.codes == nullptr || out.row_scales == nullptr || out.stride < params.cols) return cudaErrorInvalidValue;
  return LaunchNormModulate<false, true>(type, params, const_cast<void*>(x), nullptr, 0, nullptr, 0, shift, scale,
                                         nullptr, out, stream);
}

cudaError_t LaunchDitGatedAddLayerNormModulateQuantized(ScalarType type, const DitNormParams& params, void* x,
                                                        const void* y, int64_t y_stride, const void* gate,
                                                        int64_t gate_stride, const void* shift, const void* scale,
                                                        const DitQuantizedRows& out, cudaStream_t stream) {
  if (out.codes == nullptr || out.row_scales == nullptr || out.stride < params.cols) return cudaErrorInvalidValue;
  return LaunchNormModulate<true, true>(type, params, x, y, y_stride, gate, gate_stride, shift, scale, nullptr, out,
                                        stream);
}

cudaError_t LaunchDitFromFloat(ScalarType type, int64_t rows, int64_t cols, const float* src, void* out,
                               int64_t out_stride, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  const int64_t count = rows * cols;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       FromFloatKernel<T><<<RowBlocks(rows), kThreads, 0, stream>>>(rows, cols, src,
                                                                                  static_cast<T*>(out), out_stride));
  return cudaGetLastError();
}

cudaError_t LaunchDitToFloat(ScalarType type, int64_t rows, int64_t cols, const void* x, int64_t x_stride, float* out,
                             cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  const int64_t count = rows * cols;
  if (count == 0) return cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       ToFloatKernel<T><<<RowBlocks(rows), kThreads, 0, stream>>>(rows, cols,
                                                                                static_cast<const T*>(x), x_stride,
                                                                                out));
  return cudaGetLastError();
}

}  // namespace tern::kernels
