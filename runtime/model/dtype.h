// Element types of stored tensors and their conversions to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace tern::runtime {

// kF8E4M3 / kF8E5M2 are OCP float8 ("e4m3fn", "e5m2"): FP8 checkpoints store
// weights as F8_E4M3; kI8 and kF8E4M3 are also the element types of quantized
// activations (a Tensor with row scales, runtime/backend/backend.h).
enum class DType { kF32, kF16, kBF16, kI8, kU8, kI32, kI64, kF64, kBool, kF8E4M3, kF8E5M2 };

// Bytes per element.
size_t DTypeSize(DType dtype);
// The safetensors spelling ("F32", "F16", "BF16", ...).
const char* DTypeSafetensorsName(DType dtype);
// Parses a safetensors dtype; false when unknown.
bool ParseSafetensorsDType(const std::string& name, DType* dtype);
// "float32" / "float16" / "bfloat16" (config.json torch_dtype spelling).
bool ParseTorchDType(const std::string& name, DType* dtype);

inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      mantissa &= 0x3ff;
      bits = sign | (exponent << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// Round to nearest even.
inline uint16_t FloatToHalf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = (bits >> 16) & 0x8000;
  const int32_t exponent = int32_t((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mantissa = bits & 0x7fffff;
  if (((bits >> 23) & 0xff) == 0xff) return uint16_t(sign | 0x7c00 | (mantissa ? 0x200 : 0));
  if (exponent >= 0x1f) return uint16_t(sign | 0x7c00);
  if (exponent <= 0) {
    if (exponent < -10) return uint16_t(sign);
    mantissa |= 0x800000;
    const int shift = 14 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | (uint32_t(exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;
  return uint16_t(half);
}

inline float BFloat16ToFloat(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t FloatToBFloat16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000) return uint16_t((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return uint16_t((bits + rounding) >> 16);
}

// e5m2 is the upper byte of an IEEE half.
inline float Fp8E5M2ToFloat(uint8_t bits) { return HalfToFloat(uint16_t(bits) << 8); }

// Converts `count` elements of `dtype` at `src` to fp32. Only F32, F16, BF16,
// F8_E4M3 and F8_E5M2 (all exact).
void ConvertToFloat(DType dtype, const void* src, size_t count, float* dst);

}  // namespace tern::runtime
