#include "runtime/model/quantized_formats.h"

#include "runtime/base/check.h"

namespace tern::runtime {
namespace {

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

std::vector<uint8_t> UnpackInt32Dim0(absl::Span<const int32_t> packed, int64_t rows, int64_t cols, int bits) {
  const int pf = 32 / bits;
  const uint32_t mask = (1u << bits) - 1;
  CHECK_EQ(int64_t(packed.size()), CeilDiv(rows, pf) * cols);
  std::vector<uint8_t> codes(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const int shift = int(r % pf) * bits;
    const int32_t* word = packed.data() + (r / pf) * cols;
    for (int64_t c = 0; c < cols; ++c) codes[r * cols + c] = uint8_t((uint32_t(word[c]) >> shift) & mask);
  }
  return codes;
}

std::vector<uint8_t> UnpackInt32Dim1(absl::Span<const int32_t> packed, int64_t rows, int64_t cols, int bits,
                                     bool awq_order) {
  const int pf = 32 / bits;
  const uint32_t mask = (1u << bits) - 1;
  const int64_t words = CeilDiv(cols, pf);
  CHECK_EQ(int64_t(packed.size()), rows * words);
  CHECK(!awq_order || bits == 4) << "the AWQ order is defined for 4 bits";
  std::vector<uint8_t> codes(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t w = 0; w < words; ++w) {
      const uint32_t word = uint32_t(packed[r * words + w]);
      for (int t = 0; t < pf; ++t) {
        const int64_t c = w * pf + (awq_order ? kAwqOrder[t] : t);
        if (c < cols) codes[r * cols + c] = uint8_t((word >> (t * bits)) & mask);
      }
    }
  }
  return codes;
}

std::vector<int32_t> PackInt32Dim0(absl::Span<const uint8_t> codes, int64_t rows, int64_t cols, int bits) {
  const int pf = 32 / bits;
  CHECK_EQ(int64_t(codes.size()), rows * cols);
  std::vector<uint32_t> words(size_t(CeilDiv(rows, pf) * cols), 0);
  for (int64_t r = 0; r < rows; ++r) {
    const int shift = int(r % pf) * bits;
    for (int64_t c = 0; c < cols; ++c) {
      CHECK_LT(uint32_t(codes[r * cols + c]), 1u << bits);
      words[(r / pf) * cols + c] |= uint32_t(codes[r * cols + c]) << shift;
    }
  }
  return std::vector<int32_t>(words.begin(), words.end());
}

std::vector<int32_t> PackInt32Dim1(absl::Span<const uint8_t> codes, int64_t rows, int64_t cols, int bits,
                                   bool awq_order) {
  const int pf = 32 / bits;
  const int64_t words = CeilDiv(cols, pf);
  CHECK_EQ(int64_t(codes.size()), rows * cols);
  CHECK(!awq_order || bits == 4) << "the AWQ order is defined for 4 bits";
  std::vector<uint32_t> out(size_t(rows * words), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t w = 0; w < words; ++w) {
      uint32_t word = 0;
      for (int t = 0; t < pf; ++t) {
        const int64_t c = w * pf + (awq_order ? kAwqOrder[t] : t);
        if (c >= cols) continue;
        CHECK_LT(uint32_t(codes[r * cols + c]), 1u << bits);
        word |= uint32_t(codes[r * cols + c]) << (t * bits);
      }
      out[r * words + w] = word;
    }
  }
  return std::vector<int32_t>(out.begin(), out.end());
}

std::vector<uint8_t> PackTernCodes(absl::Span<const uint8_t> codes, int64_t rows, int64_t cols, int bits) {
  CHECK_EQ(int64_t(codes.size()), rows * cols);
  if (bits == 8) return std::vector<uint8_t>(codes.begin(), codes.end());
  CHECK_EQ(bits, 4);
  CHECK_EQ(cols % 2, 0);
  std::vector<uint8_t> out(size_t(rows * cols / 2));
  for (size_t i = 0; i < out.size(); ++i) {
    CHECK_LT(codes[2 * i], 16);
    CHECK_LT(codes[2 * i + 1], 16);
    out[i] = uint8_t(codes[2 * i] | (codes[2 * i + 1] << 4));
  }
  return out;
}

std::vector<uint8_t> UnpackTernCodes(absl::Span<const uint8_t> weight, int64_t rows, int64_t cols, int bits) {
  if (bits == 8) {
    CHECK_EQ(int64_t(weight.size()), rows * cols);
    return std::vector<uint8_t>(weight.begin(), weight.end());
  }
  CHECK_EQ(int64_t(weight.size()) * 2, rows * cols);
  std::vector<uint8_t> codes(size_t(rows * cols));
  for (size_t i = 0; i < weight.size(); ++i) {
    codes[2 * i] = weight[i] & 0xf;
    codes[2 * i + 1] = weight[i] >> 4;
  }
  return codes;
}

}  // namespace tern::runtime
