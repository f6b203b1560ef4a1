#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/tensor_core.cuh"
#include "kernels/dit/vae_conv.h"

namespace tern::kernels {
namespace {

// A CTA: 8 warps, kTileM pixel rows by kTileN output channels. A K step is
// kTileK channels of one tap: the A tile [kTileM, kTileK] gathered from the
// tap's shifted pixels, the B tile [kTileN, kTileK] from the weight rows at
// column tap * C_in + channel. kStages steps are in flight (cp.async),
// so the gather's latency hides behind the MMAs of the steps before it.
constexpr int kThreads = 256;
constexpr int kTileM = 128;
constexpr int kTileK = 32;
constexpr int kChunks = kTileK / 8;   // 16-byte pieces of a tile row
constexpr int kPitch = kTileK + 8;    // shared row pitch (80 bytes: ldmatrix's 8 rows fall on distinct banks)
constexpr int kStages = 4;
constexpr int kTaps = 9;
constexpr int kRowsPerPass = kThreads / kChunks;  // tile rows one pass of the CTA's copies covers: 64
constexpr int kARows = kTileM / kRowsPerPass;     // A rows a thread copies: 2

template <int kTileN>
struct ConvConfig {
  static constexpr int kWarpsN = kTileN / 32;      // 4 or 2 warps across the output channels
  static constexpr int kWarpsM = 8 / kWarpsN;      // 2 or 4 across the pixels
  static constexpr int kWarpM = kTileM / kWarpsM;  // a warp's pixel rows: 64 or 32
  static constexpr int kMBlocks = kWarpM / 16;     // its m16 blocks
  static constexpr int kNOctets = 4;               // its 32 output channels as n8 blocks
  static constexpr int kBRows = kTileN / kRowsPerPass;  // B rows a thread copies: 2 or 1
  static constexpr int kOutPitch = kTileN + 8;     // the epilogue's staging pitch (conflict-free pair writes)
  static constexpr int kMainElements = kStages * (kTileM + kTileN) * kPitch;
  static constexpr int kOutElements = kTileM * kOutPitch;
  static constexpr size_t kSharedBytes =
      size_t(kMainElements > kOutElements ? kMainElements : kOutElements) * 2;  // 16-bit elements
  static_assert(kWarpsM * kWarpsN == kThreads / 32, "8 warps");
  static_assert(kTileN % kRowsPerPass == 0, "whole copy passes");
};

// The shape as the kernel uses it.
struct ConvShape {
  int32_t rows = 0;    // batch * pixels
  int32_t pixels = 0;  // height * width
  int32_t height = 0, width = 0;
  int32_t in_channels = 0, out_channels = 0;
  int32_t n_tiles = 0;  // output channel tiles
  int32_t steps = 0;    // K steps: ceil(C_in / kTileK) * 9
  int64_t x_stride = 0, out_stride = 0;
};

// 16-byte global -> shared copy that leaves the line in L1: the 9 taps of a
// channel chunk, consecutive K steps, read overlapping pixels. Zeros when
// !valid (src is not read).
__device__ __forceinline__ void CopyAsync16Cached(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void StorePair(__half* dst, float lo, float hi) {
  *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(lo, hi);
}
__device__ __forceinline__ void StorePair(__nv_bfloat16* dst, float lo, float hi) {
  *reinterpret_cast<__nv_bfloat162*>(dst) = __floats2bfloat162_rn(lo, hi);
}

// Grid: one CTA per (pixel tile, channel tile), channel tiles fastest, so
// the CTAs that read one pixel tile's gather run side by side.
template <typename T, int kTileN>
__global__ void __launch_bounds__(kThreads, 2)
    ConvImplicitKernel(ConvShape s, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ out) {
  using C = ConvConfig<kTileN>;
  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* sa = reinterpret_cast<T*>(shared_raw);  // [kStages][kTileM][kPitch]
  T* sb = sa + kStages * kTileM * kPitch;    // [kStages][kTileN][kPitch]

  const int tid = threadIdx.x;
  const int32_t n0 = int32_t(blockIdx.x % unsigned(s.n_tiles)) * kTileN;
  const int32_t m0 = int32_t(blockIdx.x / unsigned(s.n_tiles)) * kTileM;
  const int64_t k_total = int64_t(kTaps) * s.in_channels;

  // The copies: thread tid moves 16-byte piece `piece` (channels 8 piece ..
  // 8 piece + 7 of the step) of tile rows `row` + 64 j.
  const int piece = tid % kChunks;
  const int row = tid / kChunks;
  // A rows: the pixel's base address and which of its taps lie inside the
  // image (bit ky * 3 + kx); rows past the batch have none.
  const T* a_base[kARows];
  uint32_t a_taps[kARows];
#pragma unroll
  for (int j = 0; j < kARows; ++j) {
    const int32_t m = m0 + row + j * kRowsPerPass;
    uint32_t taps = 0;
    if (m < s.rows) {
      const int32_t q = m % s.pixels;
      const int32_t y = q / s.width, xx = q - y * s.width;
#pragma unroll
      for (int t = 0; t < kTaps; ++t) {
        const int32_t sy = y + t / 3 - 1, sx = xx + t % 3 - 1;
        if (sy >= 0 && sy < s.height && sx >= 0 && sx < s.width) taps |= 1u << t;
      }
    }
    a_taps[j] = taps;
    a_base[j] = x + (taps != 0 ? int64_t(m) * s.x_stride : 0) + piece * 8;
  }
  // B rows: the output channel's weight row.
  const T* b_base[C::kBRows];
  bool b_valid[C::kBRows];
#pragma unroll
  for (int j = 0; j < C::kBRows; ++j) {
    const int32_t n = n0 + row + j * kRowsPerPass;
    b_valid[j] = n < s.out_channels;
    b_base[j] = w + (b_valid[j] ? int64_t(n) * k_total : 0) + piece * 8;
  }

  // Step (chunk, tap) in order: channels c0 .. c0 + 31 of tap `tap`, the 9
  // taps of a chunk one after another. Channels past C_in read zeros.
  int32_t load_c0 = 0;
  int load_tap = 0;
  int32_t issued = 0;
  int write_stage = 0;
  auto issue = [&]() {
    if (issued < s.steps) {
      const bool channels = load_c0 + piece * 8 < s.in_channels;
      const int ky = load_tap / 3, kx = load_tap - 3 * ky;
      const int64_t a_shift = int64_t((ky - 1) * s.width + (kx - 1)) * s.x_stride + load_c0;
      const int64_t b_shift = int64_t(load_tap) * s.in_channels + load_c0;
      T* da = sa + write_stage * kTileM * kPitch + row * kPitch + piece * 8;
      T* db = sb + write_stage * kTileN * kPitch + row * kPitch + piece * 8;
#pragma unroll
      for (int j = 0; j < kARows; ++j) {
        const bool valid = channels && ((a_taps[j] >> load_tap) & 1u) != 0;
        CopyAsync16Cached(SharedAddress(da + j * kRowsPerPass * kPitch), valid ? a_base[j] + a_shift : x, valid);
      }
#pragma unroll
      for (int j = 0; j < C::kBRows; ++j) {
        const bool valid = channels && b_valid[j];
        CopyAsync16(SharedAddress(db + j * kRowsPerPass * kPitch), valid ? b_base[j] + b_shift : w, valid);
      }
      if (++load_tap == kTaps) {
        load_tap = 0;
        load_c0 += kTileK;
      }
      ++issued;
      write_stage = write_stage + 1 == kStages ? 0 : write_stage + 1;
    }
    CopyAsyncCommit();  // empty groups past the last step keep the wait counts uniform
  };
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) issue();

  const int warp = tid / 32, lane = tid % 32;
  const int warp_m = warp / C::kWarpsN, warp_n = warp % C::kWarpsN;
  // ldmatrix row addresses (tensor_core.cuh's fragment layouts): A's four
  // 8x8 matrices are (rows 0-7, 8-15) x (k 0-7, 8-15); B's are output
  // channel octets n, n + 1 x (k 0-7, 8-15).
  const uint32_t a_lane = SharedAddress(sa + (warp_m * C::kWarpM + lane % 8 + ((lane / 8) % 2) * 8) * kPitch +
                                        (lane / 16) * 8);
  const uint32_t b_lane = SharedAddress(sb + (warp_n * 32 + (lane / 16) * 8 + lane % 8) * kPitch +
                                        ((lane / 8) % 2) * 8);
  constexpr uint32_t kAStageBytes = kTileM * kPitch * 2, kBStageBytes = kTileN * kPitch * 2;

  float acc[C::kMBlocks][C::kNOctets][4];
#pragma unroll
  for (int mb = 0; mb < C::kMBlocks; ++mb) {
#pragma unroll
    for (int n = 0; n < C::kNOctets; ++n) acc[mb][n][0] = acc[mb][n][1] = acc[mb][n][2] = acc[mb][n][3] = 0.0f;
  }

  int read_stage = 0;
  for (int32_t step = 0; step < s.steps; ++step) {
    CopyAsyncWait<kStages - 2>();  // this thread's copies of `step` have landed
    __syncthreads();               // everyone's have, and everyone is done with step - 1's stage
    issue();                       // step + kStages - 1, into step - 1's stage
    const uint32_t a_stage = a_lane + uint32_t(read_stage) * kAStageBytes;
    const uint32_t b_stage = b_lane + uint32_t(read_stage) * kBStageBytes;
#pragma unroll
    for (int kk = 0; kk < kTileK / 16; ++kk) {
      uint32_t af[C::kMBlocks][4];
#pragma unroll
      for (int mb = 0; mb < C::kMBlocks; ++mb) {
        LoadMatrixX4(a_stage + uint32_t((mb * 16 * kPitch + kk * 16) * 2), af[mb]);
      }
#pragma unroll
      for (int n = 0; n < C::kNOctets; n += 2) {
        uint32_t bf[4];
        LoadMatrixX4(b_stage + uint32_t((n * 8 * kPitch + kk * 16) * 2), bf);
#pragma unroll
        for (int mb = 0; mb < C::kMBlocks; ++mb) {
          Mma<T>(acc[mb][n], af[mb], bf[0], bf[1]);
          Mma<T>(acc[mb][n + 1], af[mb], bf[2], bf[3]);
        }
      }
    }
    read_stage = read_stage + 1 == kStages ? 0 : read_stage + 1;
  }

  // Epilogue: fp32 sum + bias, rounded once, staged in shared memory so the
  // global stores are whole 16-byte pieces of output rows.
  CopyAsyncWait<0>();
  __syncthreads();
  T* so = reinterpret_cast<T*>(shared_raw);  // [kTileM][kOutPitch]
  const int g = lane / 4, t4 = lane % 4;
#pragma unroll
  for (int n = 0; n < C::kNOctets; ++n) {
    const int col = warp_n * 32 + n * 8 + 2 * t4;
    const int32_t o = n0 + col;  // even; o + 1 < C_out whenever o < C_out (C_out % 8 == 0)
    const bool has_bias = bias != nullptr && o < s.out_channels;
    const float b0 = has_bias ? ToFloat(bias[o]) : 0.0f;
    const float b1 = has_bias ? ToFloat(bias[o + 1]) : 0.0f;
#pragma unroll
    for (int mb = 0; mb < C::kMBlocks; ++mb) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = warp_m * C::kWarpM + mb * 16 + g + 8 * h;
        StorePair(so + r * C::kOutPitch + col, acc[mb][n][2 * h] + b0, acc[mb][n][2 * h + 1] + b1);
      }
    }
  }
  __syncthreads();
  constexpr int kOutPieces = kTileN / 8;
  for (int i = tid; i < kTileM * kOutPieces; i += kThreads) {
    const int r = i / kOutPieces, p = i - r * kOutPieces;
    const int32_t m = m0 + r, o = n0 + p * 8;
    if (m < s.rows && o < s.out_channels) {
      *reinterpret_cast<uint4*>(out + int64_t(m) * s.out_stride + o) =
          *reinterpret_cast<const uint4*>(so + r * C::kOutPitch + p * 8);
    }
  }
}

template <typename T, int kTileN>
cudaError_t Launch(const ConvShape& s, const void* x, const void* w, const void* bias, void* out,
                   cudaStream_t stream) {
  using C = ConvConfig<kTileN>;
  auto kernel = ConvImplicitKernel<T, kTileN>;
  // Host state, set once per instantiation (not a stream operation, so
  // capture is fine): more than 48 KB of dynamic shared memory.
  static const cudaError_t allowed =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(C::kSharedBytes));
  if (allowed != cudaSuccess) return allowed;
  const int64_t m_tiles = (int64_t(s.rows) + kTileM - 1) / kTileM;
  kernel<<<unsigned(m_tiles * s.n_tiles), kThreads, C::kSharedBytes, stream>>>(
      s, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(out));
  return cudaGetLastError();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int32_t TileN(const DitConvImplicitParams& p) {
  return p.tile_n != 0 ? p.tile_n : DitConvImplicitTileN(p.dims, p.out_channels);
}

}  // namespace

int32_t DitConvImplicitTileN(const DitImageDims& dims, int32_t out_channels) {
  if (out_channels <= 128) return 64;
  const int64_t pixel_tiles = (int64_t(dims.height) * dims.width + kTileM - 1) / kTileM;
  return pixel_tiles * ((out_channels + 127) / 128) >= 256 ? 128 : 64;
}

bool DitConvImplicitSupported(ScalarType type, const DitConvImplicitParams& p, const void* x, const void* weight,
                              const void* out) {
  if (type != ScalarType::kF16 && type != ScalarType::kBF16) return false;
  const DitImageDims& d = p.dims;
  if (p.batch < 0 || d.height < 1 || d.width < 1) return false;
  if (d.channels < 8 || d.channels % 8 != 0 || p.out_channels < 8 || p.out_channels % 8 != 0) return false;
  if (d.channels > INT32_MAX / kTaps) return false;
  if (p.x_stride < d.channels || p.x_stride % 8 != 0 || p.out_stride < p.out_channels || p.out_stride % 8 != 0) {
    return false;
  }
  if (p.tile_n != 0 && p.tile_n != 64 && p.tile_n != 128) return false;
  if (!Aligned16(x) || !Aligned16(weight) || !Aligned16(out)) return false;
  // Pixel rows (and the last tile's rows past them) are int32 in the
  // kernel; the grid is one dimension.
  const int64_t pixels = int64_t(d.height) * d.width;
  const int64_t limit = int64_t(INT32_MAX) - kTileM;
  if (pixels > limit || (p.batch > 0 && p.batch > limit / pixels)) return false;
  const int64_t tile_n = TileN(p);
  const int64_t blocks = (p.batch * pixels + kTileM - 1) / kTileM * ((p.out_channels + tile_n - 1) / tile_n);
  return blocks <= int64_t(INT32_MAX);
}

cudaError_t LaunchDitConvImplicit(ScalarType type, const DitConvImplicitParams& p, const void* x, const void* weight,
                                  const void* bias, void* out, cudaStream_t stream) {
  if (!DitConvImplicitSupported(type, p, x, weight, out)) return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  const int32_t tile_n = TileN(p);
  ConvShape s;
  s.pixels = p.dims.height * p.dims.width;
  s.rows = int32_t(p.batch * s.pixels);
  s.height = p.dims.height;
  s.width = p.dims.width;
  s.in_channels = p.dims.channels;
  s.out_channels = p.out_channels;
  s.n_tiles = (p.out_channels + tile_n - 1) / tile_n;
  s.steps = (p.dims.channels + kTileK - 1) / kTileK * kTaps;
  s.x_stride = p.x_stride;
  s.out_stride = p.out_stride;
  if (type == ScalarType::kF16) {
    return tile_n == 128 ? Launch<__half, 128>(s, x, weight, bias, out, stream)
                         : Launch<__half, 64>(s, x, weight, bias, out, stream);
  }
  return tile_n == 128 ? Launch<__nv_bfloat16, 128>(s, x, weight, bias, out, stream)
                       : Launch<__nv_bfloat16, 64>(s, x, weight, bias, out, stream);
}

}  // namespace tern::kernels
