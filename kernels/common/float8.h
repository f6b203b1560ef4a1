// Host conversions between fp32 and OCP float8 E4M3 ("e4m3fn": 1 sign, 4
// exponent bits with bias 7, 3 mantissa bits; no infinities; S.1111.111 is
// NaN; largest finite 448), the format of FP8 weights and activations. The
// CPU references and the runtime share these; device code uses the CUDA
// intrinsics, which round the same way (__nv_cvt_float_to_fp8 with
// __NV_SATFINITE and __NV_E4M3: nearest, ties to even, saturating at 448).
#pragma once

#include <cmath>
#include <cstdint>

namespace tern::kernels {

inline constexpr float kFp8E4M3Max = 448.0f;

// Exact: every e4m3 value is an fp32 value.
inline float Fp8E4M3ToFloat(uint8_t bits) {
  const bool negative = (bits & 0x80) != 0;
  const int exponent = (bits >> 3) & 0xf;
  const int mantissa = bits & 0x7;
  float magnitude;
  if (exponent == 0xf && mantissa == 0x7) {
    magnitude = std::nanf("");
  } else if (exponent == 0) {
    magnitude = std::ldexp(float(mantissa), -9);  // subnormal: m / 8 * 2^-6
  } else {
    magnitude = std::ldexp(float(8 + mantissa), exponent - 10);  // (1 + m / 8) * 2^(e - 7)
  }
  return negative ? -magnitude : magnitude;
}

// Round to nearest, ties to even; magnitudes beyond 448 (infinities
// included) saturate to 448; NaN stays NaN.
inline uint8_t FloatToFp8E4M3(float value) {
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  if (std::isnan(value)) return uint8_t(sign | 0x7f);
  const float magnitude = std::fabs(value);
  if (magnitude >= kFp8E4M3Max) return uint8_t(sign | 0x7e);
  int code;
  if (magnitude < 0.015625f) {  // below 2^-6: subnormal steps of 2^-9 (code 8 is 2^-6, the first normal)
    code = int(std::nearbyint(std::ldexp(magnitude, 9)));
  } else {
    const int exponent = std::ilogb(magnitude);  // -6 .. 8
    // The significand in eighths, 8 .. 16; 16 carries into the next exponent,
    // which the code arithmetic below does by itself.
    const int eighths = int(std::nearbyint(std::ldexp(magnitude, 3 - exponent)));
    code = ((exponent + 7) << 3) + (eighths - 8);
  }
  if (code > 0x7e) code = 0x7e;
  return uint8_t(sign | code);
}

}  // namespace tern::kernels
