// The layout the CUDA weight-only kernels (weight_only_gemm.h) read W4A16 and
// W8A16 weights in, and the host code that repacks quant_gemm.h's row-major
// codes into it once at load.
//
// Output features are cut into tiles of 16 rows (the M side of the tensor
// core's m16n8k16 MMA, the weight playing A), input features into chunks of
// 64 columns (4 bits) or 32 columns (8 bits). One (tile, chunk) is 512 bytes:
// 16 bytes for each of the 32 lanes of a warp, holding exactly the codes of
// that lane's A fragments for the chunk's 4 (4-bit) or 2 (8-bit) k16 steps,
// ordered so that a mask and an OR turn two codes into an fp16/bf16 pair in
// register order (WeightOnlyFragmentPosition says where each code goes). A
// warp reads a (tile, chunk) as one coalesced 512-byte load.
//
//   codes   [n_tiles][k_chunks][32 lanes][16 bytes]
//   scales  [n_tiles][groups][16] fp16 bits when every scale of the layer is
//           exactly an fp16 (GPTQ and tern-quantize write fp16 scales), else
//           fp32 (bf16 scales)
//   zeros   [n_tiles][groups][16] zero codes, or empty when every zero is the
//           midpoint 2^(bits-1) (symmetric)
//
// Padding: rows past n have scale 0 and dequantize to 0; columns past k hold
// their row's zero code (last group) where it fits in `bits` (a GPTQ zero of
// 2^bits does not), so their weights are finite and a kernel only has to
// keep x's missing columns at 0.
// Groups: group_size divides k and is a multiple of 16 (one k16 step never
// spans two groups), or the layer has one group (per output channel).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tern::kernels {

inline constexpr int64_t kWeightOnlyTileRows = 16;
inline constexpr int64_t kWeightOnlyChunkBytes = 512;  // one (tile, chunk)

struct WeightOnlyLayout {
  int32_t bits = 4;        // 4 or 8
  int64_t n = 0;           // output features
  int64_t k = 0;           // input features
  int64_t group_size = 0;  // columns per group (== k for one group)
  int64_t groups = 0;      // k / group_size

  int64_t chunk_cols() const { return bits == 4 ? 64 : 32; }
  int64_t n_tiles() const { return (n + kWeightOnlyTileRows - 1) / kWeightOnlyTileRows; }
  int64_t k_chunks() const { return (k + chunk_cols() - 1) / chunk_cols(); }
  size_t code_bytes() const { return size_t(n_tiles()) * size_t(k_chunks()) * kWeightOnlyChunkBytes; }
  size_t group_entries() const { return size_t(n_tiles()) * size_t(groups) * kWeightOnlyTileRows; }
};

struct PackedWeightOnly {
  WeightOnlyLayout layout;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> half_scales;  // fp16 bits; used when non-empty
  std::vector<float> float_scales;    // used when half_scales is empty
  std::vector<uint8_t> zeros;         // empty: symmetric (midpoint zeros)
  size_t DeviceBytes() const { return codes.size() + half_scales.size() * 2 + float_scales.size() * 4 + zeros.size(); }
};

// Where code `index` of lane `lane`'s 16 bytes of a chunk belongs: row within
// the tile and column within the chunk. Codes are numbered in storage order:
// 4 bits, index 0..31 is nibble index % 2 (low first) of byte index / 2;
// 8 bits, index 0..15 is byte index.
//
// With g = lane / 4 and t = lane % 4 (the MMA's group and thread in group),
// k16 step j of the chunk holds A-fragment register p (0..3) as the pair
// (row g + 8 (p & 1), columns 16 j + 2 t + 8 (p >> 1) + {0, 1}):
//   4 bits: step j is 32-bit word j; register p's pair is nibbles p and p + 4
//           (mask 0x000F000F after a shift by 4 p)
//   8 bits: step j is words 2 j and 2 j + 1; register p's pair is bytes
//           (p & 1) and (p & 1) + 2 of word 2 j + (p >> 1) (mask 0x00FF00FF
//           after a shift by 8 (p & 1))
struct FragmentPosition {
  int32_t row;
  int32_t col;
};
FragmentPosition WeightOnlyFragmentPosition(int32_t bits, int32_t lane, int32_t index);

// Repacks row-major codes (quant_gemm.h: 4 bits [n, k / 2] two to a byte, 8
// bits [n, k]), scales fp32 and zero codes uint8 [n, groups] into `out`.
// Returns an empty string, or what is wrong (bits other than 4 and 8, k odd,
// a group size that does not divide k or is not a multiple of 16 when there
// are several groups).
std::string PackWeightOnly(const WeightOnlyLayout& layout, const uint8_t* codes, const float* scales,
                           const uint8_t* zeros, PackedWeightOnly* out);

// The inverse, for tests: row-major codes [n, k] (one byte per code whatever
// the bits), and the scales and zeros [n, groups] as fp32 and uint8.
void UnpackWeightOnly(const PackedWeightOnly& packed, std::vector<uint8_t>* codes, std::vector<float>* scales,
                      std::vector<uint8_t>* zeros);

}  // namespace tern::kernels
