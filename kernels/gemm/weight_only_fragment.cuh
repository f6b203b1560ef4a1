// Device helpers the weight-only kernels share (weight_only_gemm.cu, the
// tensor-core GEMM, and weight_only_gemv.cu, the decode GEMV): turning a
// lane's 16 bytes of packed codes (weight_only_pack.h) into the registers of
// m16n8k16 A fragments, c - zero exact in fp16 and bf16, and reading a
// group scale.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace tern::kernels {
namespace weight_only {

template <typename P>
__device__ __forceinline__ uint32_t Bits(P v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}
template <typename P>
__device__ __forceinline__ P FromBits(uint32_t u) {
  P v;
  memcpy(&v, &u, 4);
  return v;
}

// The zero code of one row, in the forms the conversions below subtract.
// fp16: `sub` is the pair 1024 + z (the fp16 magic number 0x6400 is 1024),
// `fma` the pair -(64 + z) for codes held as 16 c. bf16 4 bits: `sub` is
// 128 + z (0x4300 is 128). bf16 8 bits: `sub` is z itself (256 + 127 is past
// bf16's 8-bit significand, so those codes go through fp32).
struct ZeroForms {
  uint32_t sub = 0;
  uint32_t fma = 0;
};
template <typename T, int kBits>
__device__ __forceinline__ ZeroForms MakeZero(int32_t z) {
  ZeroForms f;
  if constexpr (std::is_same_v<T, __half>) {
    const __half h = __float2half_rn(1024.0f + float(z));
    const __half m = __float2half_rn(-64.0f - float(z));
    f.sub = Bits(__halves2half2(h, h));
    f.fma = Bits(__halves2half2(m, m));
  } else if constexpr (kBits == 4) {
    const __nv_bfloat16 h = __float2bfloat16_rn(128.0f + float(z));
    f.sub = Bits(__halves2bfloat162(h, h));
  } else {
    f.sub = uint32_t(z);
  }
  return f;
}

// The four A registers (c - z pairs, register order of weight_only_pack.h)
// of k16 step j of a lane's 16 bytes `w`. fp16 4 bits: register p's codes
// are nibbles p and p + 4; the even registers' sit at bits [0, 4) of each
// half (after a shift by 8 for p = 2), the odd registers' at bits [4, 8),
// read as 16 c and scaled back by the exact 1/16 of one fma. fp16 8 bits:
// one byte permute puts each code under the magic exponent.
template <typename T, int kBits>
__device__ __forceinline__ void StepFragment(const uint32_t (&w)[4], int j, const ZeroForms& lo, const ZeroForms& hi,
                                             uint32_t (&a)[4]) {
  if constexpr (std::is_same_v<T, __half> && kBits == 4) {
    const uint32_t v = w[j];
    const uint32_t v8 = v >> 8;
    const __half2 sixteenth = __float2half2_rn(0.0625f);
    a[0] = Bits(__hsub2(FromBits<__half2>((v & 0x000f000fu) | 0x64006400u), FromBits<__half2>(lo.sub)));
    a[1] = Bits(__hfma2(FromBits<__half2>((v & 0x00f000f0u) | 0x64006400u), sixteenth, FromBits<__half2>(hi.fma)));
    a[2] = Bits(__hsub2(FromBits<__half2>((v8 & 0x000f000fu) | 0x64006400u), FromBits<__half2>(lo.sub)));
    a[3] = Bits(__hfma2(FromBits<__half2>((v8 & 0x00f000f0u) | 0x64006400u), sixteenth, FromBits<__half2>(hi.fma)));
  } else if constexpr (std::is_same_v<T, __half>) {
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const uint32_t v = w[2 * j + (p >> 1)];
      const uint32_t m = __byte_perm(v, 0x64646464u, (p & 1) ? 0x4341u : 0x4240u);
      a[p] = Bits(__hsub2(FromBits<__half2>(m), FromBits<__half2>((p & 1) ? hi.sub : lo.sub)));
    }
  } else if constexpr (kBits == 4) {
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const uint32_t m = (w[j] >> (4 * p)) & 0x000f000fu;
      a[p] = Bits(__hsub2(FromBits<__nv_bfloat162>(m | 0x43004300u),
                          FromBits<__nv_bfloat162>((p & 1) ? hi.sub : lo.sub)));
    }
  } else {
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const uint32_t m = (w[2 * j + (p >> 1)] >> (8 * (p & 1))) & 0x00ff00ffu;
      const int32_t z = int32_t((p & 1) ? hi.sub : lo.sub);
      a[p] = Bits(__floats2bfloat162_rn(float(int32_t(m & 0xffu) - z), float(int32_t(m >> 16) - z)));
    }
  }
}

template <bool kHalfScales>
__device__ __forceinline__ float LoadScale(const void* scales, int64_t at) {
  if constexpr (kHalfScales) {
    return __half2float(__ldg(static_cast<const __half*>(scales) + at));
  } else {
    return __ldg(static_cast<const float*>(scales) + at);
  }
}

}  // namespace weight_only
}  // namespace tern::kernels
