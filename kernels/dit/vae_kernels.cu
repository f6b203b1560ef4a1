#include <algorithm>

#include "kernels/common/dispatch.cuh"
#include "kernels/dit/vae_kernels.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 128;

// Blocks stride over rows (pixels, neighbourhood segments), threads over
// the channels of a row: no per-element 64-bit division, coalesced rows.
unsigned RowBlocks(int64_t rows) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(rows, 1 << 20))); }

#define TERN_FOR_ROWS(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)
#define TERN_FOR_COLS(c, cols) for (int64_t c = threadIdx.x; c < (cols); c += blockDim.x)

// One segment per (pixel, kernel tap): its `channels` values, or zeros
// outside the image.
template <typename T>
__global__ void Im2colKernel(DitImageDims d, int32_t k, const T* x, int64_t x_stride, int64_t first, int64_t count,
                             T* columns) {
  const int32_t taps = k * k, radius = k / 2;
  const int64_t segments = count * taps;
  const int64_t cols = int64_t(taps) * d.channels;
  TERN_FOR_ROWS(s, segments) {
    const int64_t p = s / taps;
    const int32_t t = int32_t(s - p * taps);
    const int64_t pixel = first + p;
    const int64_t y = pixel / d.width, xx = pixel - y * d.width;
    const int64_t sy = y + t / k - radius, sx = xx + t % k - radius;
    T* dst = columns + p * cols + int64_t(t) * d.channels;
    if (sy < 0 || sy >= d.height || sx < 0 || sx >= d.width) {
      TERN_FOR_COLS(c, d.channels) dst[c] = FromFloat<T>(0.0f);
    } else {
      const T* src = x + (sy * d.width + sx) * x_stride;
      TERN_FOR_COLS(c, d.channels) dst[c] = src[c];
    }
  }
}

// The same in 16-byte vectors (channels and strides multiples of 16 bytes).
__global__ void Im2colVectorKernel(DitImageDims d, int32_t k, int32_t vectors, const int4* x, int64_t x_stride,
                                   int64_t first, int64_t count, int4* columns) {
  const int32_t taps = k * k, radius = k / 2;
  const int64_t segments = count * taps;
  const int64_t cols = int64_t(taps) * vectors;
  TERN_FOR_ROWS(s, segments) {
    const int64_t p = s / taps;
    const int32_t t = int32_t(s - p * taps);
    const int64_t pixel = first + p;
    const int64_t y = pixel / d.width, xx = pixel - y * d.width;
    const int64_t sy = y + t / k - radius, sx = xx + t % k - radius;
    int4* dst = columns + p * cols + int64_t(t) * vectors;
    if (sy < 0 || sy >= d.height || sx < 0 || sx >= d.width) {
      TERN_FOR_COLS(c, vectors) dst[c] = make_int4(0, 0, 0, 0);
    } else {
      const int4* src = x + (sy * d.width + sx) * x_stride;
      TERN_FOR_COLS(c, vectors) dst[c] = src[c];
    }
  }
}

// A chunk's (count, mean, M2) -- the sum of squared deviations from its mean.
struct Moments {
  float n, mean, m2;
};

// Chan's pairwise merge; either side may be empty.
__device__ __forceinline__ Moments Merge(Moments a, Moments b) {
  if (b.n == 0.0f) return a;
  if (a.n == 0.0f) return b;
  const float n = a.n + b.n;
  const float delta = b.mean - a.mean;
  const float share = b.n / n;
  return {n, a.mean + delta * share, a.m2 + b.m2 + delta * delta * a.n * share};
}

// Sum over the block (256 threads), the same order every time; every
// thread gets the total.
__device__ __forceinline__ float BlockSum(float v, float* shared) {
  v = WarpSum(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // `shared` may still be read from the previous sum
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < int(blockDim.x >> 5); ++w) total += shared[w];
  return total;
}

constexpr int kStatsThreads = 256;

// Grid (chunks, groups, batch): one chunk of one group of one sample.
template <typename T>
__global__ void __launch_bounds__(kStatsThreads)
    GroupNormStatsKernel(DitGroupNormParams p, int32_t chunks, const T* x, Moments* partials) {
  __shared__ float shared[kStatsThreads / 32];
  const int32_t chunk = blockIdx.x, g = blockIdx.y;
  const int64_t b = blockIdx.z;
  const int32_t per_group = p.channels / p.groups;
  const int64_t first = int64_t(chunk) * kDitGroupNormChunkPixels;
  const int64_t remaining = p.pixels - first;
  const int32_t pixels = int32_t(remaining < kDitGroupNormChunkPixels ? remaining : kDitGroupNormChunkPixels);
  const int32_t elements = pixels * per_group;
  const T* base = x + (b * p.pixels + first) * p.x_stride + int64_t(g) * per_group;
  float sum = 0.0f;
  for (int32_t e = threadIdx.x; e < elements; e += blockDim.x) {
    const int32_t q = e / per_group;
    sum += ToFloat(base[int64_t(q) * p.x_stride + (e - q * per_group)]);
  }
  const float mean = BlockSum(sum, shared) / float(elements);
  float m2 = 0.0f;
  for (int32_t e = threadIdx.x; e < elements; e += blockDim.x) {
    const int32_t q = e / per_group;
    const float d = ToFloat(base[int64_t(q) * p.x_stride + (e - q * per_group)]) - mean;
    m2 += d * d;
  }
  m2 = BlockSum(m2, shared);
  if (threadIdx.x == 0) partials[(b * p.groups + g) * chunks + chunk] = {float(elements), mean, m2};
}

// One warp per (group, sample): lane l merges chunks l, l + 32, ... in
// order, then the lanes' results merge down a fixed tree into lane 0.
__global__ void GroupNormFinalizeKernel(DitGroupNormParams p, int32_t chunks, const Moments* partials,
                                        float2* stats) {
  const int32_t g = blockIdx.x;
  const int64_t b = blockIdx.y;
  const int lane = threadIdx.x;
  const Moments* mine = partials + (b * p.groups + g) * chunks;
  Moments m{0.0f, 0.0f, 0.0f};
  for (int32_t c = lane; c < chunks; c += 32) m = Merge(m, mine[c]);
  for (int offset = 16; offset > 0; offset >>= 1) {
    Moments other;
    other.n = __shfl_down_sync(0xffffffffu, m.n, offset);
    other.mean = __shfl_down_sync(0xffffffffu, m.mean, offset);
    other.m2 = __shfl_down_sync(0xffffffffu, m.m2, offset);
    if (lane < offset) m = Merge(m, other);
  }
  if (lane == 0) {
    const float variance = fmaxf(m.m2 / m.n, 0.0f);
    stats[b * p.groups + g] = make_float2(m.mean, 1.0f / sqrtf(variance + p.eps));
  }
}

template <typename T>
__global__ void GroupNormApplyKernel(DitGroupNormParams p, const T* x, const T* affine, const float2* stats, T* out) {
  const int32_t per_group = p.channels / p.groups;
  TERN_FOR_ROWS(r, p.batch * p.pixels) {
    const int64_t b = r / p.pixels;
    const T* in = x + r * p.x_stride;
    T* o = out + r * p.out_stride;
    const float2* s = stats + b * p.groups;
    TERN_FOR_COLS(c, p.channels) {
      const float2 ms = s[int32_t(c) / per_group];
      float y = (ToFloat(in[c]) - ms.x) * ms.y * ToFloat(affine[c]) + ToFloat(affine[p.channels + c]);
      if (p.silu) y = y / (1.0f + __expf(-y));
      o[c] = FromFloat<T>(y);
    }
  }
}

template <typename T>
__global__ void Upsample2xKernel(int64_t batch, DitImageDims d, const T* x, int64_t x_stride, T* out,
                                 int64_t out_stride) {
  const int64_t out_width = 2 * int64_t(d.width), out_pixels = 4 * int64_t(d.height) * d.width;
  const int64_t in_pixels = int64_t(d.height) * d.width;
  TERN_FOR_ROWS(r, batch * out_pixels) {
    const int64_t b = r / out_pixels;
    const int64_t q = r - b * out_pixels;
    const int64_t y = q / out_width, xx = q - y * out_width;
    const T* src = x + (b * in_pixels + (y / 2) * d.width + xx / 2) * x_stride;
    T* dst = out + r * out_stride;
    TERN_FOR_COLS(c, d.channels) dst[c] = src[c];
  }
}

size_t ElementBytes(ScalarType type) { return type == ScalarType::kF32 ? 4 : 2; }

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int32_t Chunks(int64_t pixels) {
  return int32_t((pixels + kDitGroupNormChunkPixels - 1) / kDitGroupNormChunkPixels);
}

}  // namespace

cudaError_t LaunchDitIm2col(ScalarType type, const DitImageDims& dims, int32_t kernel, const void* x,
                            int64_t x_stride, int64_t first, int64_t count, void* columns, cudaStream_t stream) {
  if (dims.height <= 0 || dims.width <= 0 || dims.channels <= 0 || kernel <= 0 || kernel % 2 == 0 || first < 0 ||
      count < 0 || first + count > int64_t(dims.height) * dims.width || x_stride < dims.channels) {
    return cudaErrorInvalidValue;
  }
  if (count == 0) return cudaSuccess;
  const unsigned blocks = RowBlocks(count * kernel * kernel);
  const size_t bytes = ElementBytes(type);
  if ((dims.channels * bytes) % 16 == 0 && (x_stride * bytes) % 16 == 0 && Aligned16(x) && Aligned16(columns)) {
    const int32_t vectors = int32_t(dims.channels * bytes / 16);
    const unsigned threads = unsigned(std::min(kThreads, std::max(32, (vectors + 31) / 32 * 32)));
    Im2colVectorKernel<<<blocks, threads, 0, stream>>>(dims, kernel, vectors, static_cast<const int4*>(x),
                                                       int64_t(x_stride * bytes / 16), first, count,
                                                       static_cast<int4*>(columns));
    return cudaGetLastError();
  }
  const unsigned threads = unsigned(std::min(kThreads, std::max(32, (dims.channels + 31) / 32 * 32)));
  TERN_DISPATCH_SCALAR(type, T,
                       Im2colKernel<T><<<blocks, threads, 0, stream>>>(dims, kernel, static_cast<const T*>(x),
                                                                       x_stride, first, count,
                                                                       static_cast<T*>(columns)));
  return cudaGetLastError();
}

int64_t DitGroupNormWorkspaceFloats(int64_t batch, int64_t pixels, int32_t groups) {
  // [batch, groups, chunks] Moments, then [batch, groups] float2 statistics
  // (one float of padding to align them).
  return batch * groups * (3 * int64_t(Chunks(pixels)) + 2) + 1;
}

cudaError_t LaunchDitGroupNorm(ScalarType type, const DitGroupNormParams& p, const void* x, const void* affine,
                               void* out, float* workspace, cudaStream_t stream) {
  if (p.batch < 0 || p.batch > 65535 || p.pixels <= 0 || p.channels <= 0 || p.groups <= 0 ||
      p.groups > 65535 || p.channels % p.groups != 0 || p.x_stride < p.channels || p.out_stride < p.channels ||
      p.pixels > (int64_t(1) << 31) / std::max(1, p.channels / p.groups)) {
    return cudaErrorInvalidValue;
  }
  if (p.batch == 0) return cudaSuccess;
  const int32_t chunks = Chunks(p.pixels);
  Moments* partials = reinterpret_cast<Moments*>(workspace);
  float2* stats = reinterpret_cast<float2*>(workspace + p.batch * p.groups * 3 * int64_t(chunks));
  // float2 needs 8-byte alignment: the Moments part is 12 bytes a chunk.
  if (reinterpret_cast<uintptr_t>(stats) % 8 != 0) stats = reinterpret_cast<float2*>(reinterpret_cast<float*>(stats) + 1);
  const dim3 stats_grid(unsigned(chunks), unsigned(p.groups), unsigned(p.batch));
  TERN_DISPATCH_SCALAR(type, T,
                       GroupNormStatsKernel<T><<<stats_grid, kStatsThreads, 0, stream>>>(
                           p, chunks, static_cast<const T*>(x), partials));
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  GroupNormFinalizeKernel<<<dim3(unsigned(p.groups), unsigned(p.batch)), 32, 0, stream>>>(p, chunks, partials, stats);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  const unsigned threads = unsigned(std::min(kThreads, std::max(32, (p.channels + 31) / 32 * 32)));
  TERN_DISPATCH_SCALAR(type, T,
                       GroupNormApplyKernel<T><<<RowBlocks(p.batch * p.pixels), threads, 0, stream>>>(
                           p, static_cast<const T*>(x), static_cast<const T*>(affine), stats, static_cast<T*>(out)));
  return cudaGetLastError();
}

cudaError_t LaunchDitUpsample2x(ScalarType type, int64_t batch, const DitImageDims& dims, const void* x,
                                int64_t x_stride, void* out, int64_t out_stride, cudaStream_t stream) {
  if (batch < 0 || dims.height <= 0 || dims.width <= 0 || dims.channels <= 0 || x_stride < dims.channels ||
      out_stride < dims.channels) {
    return cudaErrorInvalidValue;
  }
  if (batch == 0) return cudaSuccess;
  const unsigned threads = unsigned(std::min(kThreads, std::max(32, (dims.channels + 31) / 32 * 32)));
  TERN_DISPATCH_SCALAR(type, T,
                       Upsample2xKernel<T><<<RowBlocks(batch * 4 * int64_t(dims.height) * dims.width), threads, 0,
                                             stream>>>(batch, dims, static_cast<const T*>(x), x_stride,
                                                       static_cast<T*>(out), out_stride));
  return cudaGetLastError();
}

}  // namespace tern::kernels
