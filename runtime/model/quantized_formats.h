// Bit packing of the published quantized checkpoint formats, both ways.
// Every function works on "codes": one unsigned code per byte, row-major,
// the form between a checkpoint's packing and tern's (quantized_weight.h).
//
// int32 packing, `bits` = 4 or 8, pf = 32 / bits values per int32; value t of
// a word sits in bits [t * bits, (t + 1) * bits):
//   along dim 0: packed [ceil(rows / pf), cols], word (r, c) holds rows r*pf+t
//     (GPTQ qweight: [in / pf, out]; compressed-tensors weight_zero_point:
//     [ceil(out / pf), groups])
//   along dim 1: packed [rows, ceil(cols / pf)], word (r, c) holds cols c*pf+t
//     (GPTQ qzeros [groups, out / pf]; compressed-tensors weight_packed
//     [out, ceil(in / pf)])
//   AWQ (GEMM kernels) packs along dim 1 with 4 bits in an interleaved order:
//     value t of a word is column c*8 + kAwqOrder[t], kAwqOrder =
//     {0, 2, 4, 6, 1, 3, 5, 7} (qweight [in, out / 8], qzeros [groups, out / 8]).
// Padding values (compressed-tensors pads the last word) are zero.
//
// Zero conventions: GPTQ's original format ("gptq", AutoGPTQ) stores
// zero - 1 in qzeros, so its readers add 1 (and a stored 0xF reads as 16 at
// 4 bits); "gptq_v2" stores the zero itself. compressed-tensors stores signed
// values offset by 2^(bits-1) in weight_packed and signed zero points, so
// code = stored, zero = zero_point + 2^(bits-1). AWQ stores plain codes and
// zeros.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace tern::runtime {

inline constexpr std::array<int, 8> kAwqOrder = {0, 2, 4, 6, 1, 3, 5, 7};

// codes [rows, cols] from `packed`. `awq_order` only along dim 1 at 4 bits.
std::vector<uint8_t> UnpackInt32Dim0(absl::Span<const int32_t> packed, int64_t rows, int64_t cols, int bits);
std::vector<uint8_t> UnpackInt32Dim1(absl::Span<const int32_t> packed, int64_t rows, int64_t cols, int bits,
                                     bool awq_order = false);
// The inverses; codes must fit in `bits`.
std::vector<int32_t> PackInt32Dim0(absl::Span<const uint8_t> codes, int64_t rows, int64_t cols, int bits);
std::vector<int32_t> PackInt32Dim1(absl::Span<const uint8_t> codes, int64_t rows, int64_t cols, int bits,
                                   bool awq_order = false);

// [cols, rows] from [rows, cols].
template <typename T>
std::vector<T> Transpose(absl::Span<const T> values, int64_t rows, int64_t cols) {
  std::vector<T> out(values.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = values[r * cols + c];
  }
  return out;
}

// tern's weight bytes (QuantizedLinear::weight) from codes [rows, cols] and
// back: 8 bits one per byte; 4 bits two per byte, even column low nibble.
std::vector<uint8_t> PackTernCodes(absl::Span<const uint8_t> codes, int64_t rows, int64_t cols, int bits);
std::vector<uint8_t> UnpackTernCodes(absl::Span<const uint8_t> weight, int64_t rows, int64_t cols, int bits);

}  // namespace tern::runtime
