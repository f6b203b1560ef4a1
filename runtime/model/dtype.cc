#include "runtime/model/dtype.h"

#include "kernels/common/float8.h"
#include "runtime/base/check.h"

namespace tern::runtime {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI8: return 1;
    case DType::kU8: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kF64: return 8;
    case DType::kBool: return 1;
    case DType::kF8E4M3: return 1;
    case DType::kF8E5M2: return 1;
  }
  return 0;
}

const char* DTypeSafetensorsName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kF64: return "F64";
    case DType::kBool: return "BOOL";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kF8E5M2: return "F8_E5M2";
  }
  return "?";
}

bool ParseSafetensorsDType(const std::string& name, DType* dtype) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16}, {"I8", DType::kI8},
      {"U8", DType::kU8},   {"I32", DType::kI32}, {"I64", DType::kI64},   {"F64", DType::kF64},
      {"BOOL", DType::kBool}, {"F8_E4M3", DType::kF8E4M3}, {"F8_E5M2", DType::kF8E5M2}};
  for (const auto& [text, value] : kNames) {
    if (name == text) {
      *dtype = value;
      return true;
    }
  }
  return false;
}

bool ParseTorchDType(const std::string& name, DType* dtype) {
  if (name == "float32") *dtype = DType::kF32;
  else if (name == "float16") *dtype = DType::kF16;
  else if (name == "bfloat16") *dtype = DType::kBF16;
  else return false;
  return true;
}

void ConvertToFloat(DType dtype, const void* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = HalfToFloat(h[i]);
      return;
    }
    case DType::kBF16: {
      const auto* b = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = BFloat16ToFloat(b[i]);
      return;
    }
    case DType::kF8E4M3: {
      const auto* b = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = kernels::Fp8E4M3ToFloat(b[i]);
      return;
    }
    case DType::kF8E5M2: {
      const auto* b = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = Fp8E5M2ToFloat(b[i]);
      return;
    }
    default:
      CHECK(false) << "ConvertToFloat: unsupported dtype " << DTypeSafetensorsName(dtype);
  }
}

}  // namespace tern::runtime
