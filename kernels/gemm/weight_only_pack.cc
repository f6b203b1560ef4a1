#include "kernels/gemm/weight_only_pack.h"

#include <cstring>

namespace tern::kernels {
namespace {

// fp16 bits of `v` when v is exactly a normal fp16 (or zero), else false.
bool ExactHalf(float v, uint16_t* out) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int32_t exponent = int32_t((bits >> 23) & 0xff) - 127;
  const uint32_t mantissa = bits & 0x7fffffu;
  if ((bits & 0x7fffffffu) == 0) {
    *out = uint16_t(sign);
    return true;
  }
  if (exponent < -14 || exponent > 15 || (mantissa & 0x1fffu) != 0) return false;
  *out = uint16_t(sign | (uint32_t(exponent + 15) << 10) | (mantissa >> 13));
  return true;
}

int32_t CodeAt(const WeightOnlyLayout& l, const uint8_t* codes, int64_t row, int64_t col) {
  if (l.bits == 8) return codes[row * l.k + col];
  const uint8_t byte = codes[row * (l.k / 2) + col / 2];
  return (col & 1) ? (byte >> 4) : (byte & 0xf);
}

// The group of column `col`, columns past k in the last.
int64_t GroupOf(const WeightOnlyLayout& l, int64_t col) {
  const int64_t g = col / l.group_size;
  return g < l.groups ? g : l.groups - 1;
}

}  // namespace

FragmentPosition WeightOnlyFragmentPosition(int32_t bits, int32_t lane, int32_t index) {
  const int32_t g = lane / 4, t = lane % 4;
  int32_t step, p, hi;
  if (bits == 4) {
    step = index / 8;
    const int32_t nibble = index % 8;  // within word `step`
    p = nibble & 3;
    hi = nibble >> 2;
  } else {
    step = index / 8;
    const int32_t byte = index % 8;  // within the step's two words
    const int32_t word = byte / 4, b = byte % 4;
    p = 2 * word + (b & 1);
    hi = b >> 1;
  }
  return {g + 8 * (p & 1), 16 * step + 2 * t + 8 * (p >> 1) + hi};
}

std::string PackWeightOnly(const WeightOnlyLayout& layout, const uint8_t* codes, const float* scales,
                           const uint8_t* zeros, PackedWeightOnly* out) {
  const WeightOnlyLayout& l = layout;
  if (l.bits != 4 && l.bits != 8) return "weight-only layers have 4 or 8 bits, not " + std::to_string(l.bits);
  if (l.n <= 0 || l.k <= 0 || l.k % 2 != 0) {
    return "weight-only layer shape [" + std::to_string(l.n) + ", " + std::to_string(l.k) +
           "]: both positive and in_features even";
  }
  if (l.group_size <= 0 || l.groups <= 0 || l.group_size * l.groups != l.k) {
    return "group size " + std::to_string(l.group_size) + " x " + std::to_string(l.groups) +
           " groups does not cover in_features " + std::to_string(l.k);
  }
  if (l.groups > 1 && l.group_size % 16 != 0) {
    return "group size " + std::to_string(l.group_size) + " is not a multiple of 16 (the MMA's k step)";
  }
  out->layout = l;
  const int64_t tiles = l.n_tiles(), chunks = l.k_chunks(), chunk_cols = l.chunk_cols();
  const int32_t per_lane = l.bits == 4 ? 32 : 16;
  const int32_t mid = 1 << (l.bits - 1);
  const size_t entries = l.group_entries();

  bool symmetric = true;
  for (int64_t i = 0; i < l.n * l.groups; ++i) symmetric = symmetric && zeros[i] == mid;
  // Padded rows: zero = midpoint and scale 0 (so they also fit a symmetric layer).
  const auto zero_at = [&](int64_t row, int64_t group) -> int32_t {
    return row < l.n ? zeros[row * l.groups + group] : mid;
  };

  out->zeros.clear();
  if (!symmetric) out->zeros.assign(entries, uint8_t(mid));
  std::vector<float> tiled_scales(entries, 0.0f);
  for (int64_t tile = 0; tile < tiles; ++tile) {
    for (int64_t group = 0; group < l.groups; ++group) {
      for (int64_t r = 0; r < kWeightOnlyTileRows; ++r) {
        const int64_t row = tile * kWeightOnlyTileRows + r;
        const size_t at = size_t((tile * l.groups + group) * kWeightOnlyTileRows + r);
        if (row < l.n) tiled_scales[at] = scales[row * l.groups + group];
        if (!symmetric) out->zeros[at] = uint8_t(zero_at(row, group));
      }
    }
  }
  out->half_scales.assign(entries, 0);
  bool all_half = true;
  for (size_t i = 0; i < entries && all_half; ++i) all_half = ExactHalf(tiled_scales[i], &out->half_scales[i]);
  if (all_half) {
    out->float_scales.clear();
  } else {
    out->half_scales.clear();
    out->float_scales = std::move(tiled_scales);
  }

  // The positions repeat in every chunk: one table (a 7B model has billions of codes).
  std::vector<FragmentPosition> positions(size_t(32 * per_lane));
  for (int32_t lane = 0; lane < 32; ++lane) {
    for (int32_t index = 0; index < per_lane; ++index) {
      positions[lane * per_lane + index] = WeightOnlyFragmentPosition(l.bits, lane, index);
    }
  }
  out->codes.assign(l.code_bytes(), 0);
  for (int64_t tile = 0; tile < tiles; ++tile) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      uint8_t* base = out->codes.data() + size_t(tile * chunks + chunk) * kWeightOnlyChunkBytes;
      for (int32_t lane = 0; lane < 32; ++lane) {
        for (int32_t index = 0; index < per_lane; ++index) {
          const FragmentPosition pos = positions[lane * per_lane + index];
          const int64_t row = tile * kWeightOnlyTileRows + pos.row;
          const int64_t col = chunk * chunk_cols + pos.col;
          int32_t code;
          if (row >= l.n) {
            code = mid;
          } else if (col >= l.k) {
            code = zero_at(row, GroupOf(l, col));
          } else {
            code = CodeAt(l, codes, row, col);
          }
          uint8_t* lane_bytes = base + lane * 16;
          if (l.bits == 8) {
            lane_bytes[index] = uint8_t(code);
          } else {
            lane_bytes[index / 2] |= uint8_t((code & 0xf) << (4 * (index % 2)));
          }
        }
      }
    }
  }
  return "";
}

void UnpackWeightOnly(const PackedWeightOnly& packed, std::vector<uint8_t>* codes, std::vector<float>* scales,
                      std::vector<uint8_t>* zeros) {
  const WeightOnlyLayout& l = packed.layout;
  const int64_t chunks = l.k_chunks(), chunk_cols = l.chunk_cols();
  const int32_t per_lane = l.bits == 4 ? 32 : 16;
  const int32_t mid = 1 << (l.bits - 1);
  codes->assign(size_t(l.n * l.k), 0);
  scales->assign(size_t(l.n * l.groups), 0.0f);
  zeros->assign(size_t(l.n * l.groups), uint8_t(mid));
  for (int64_t tile = 0; tile < l.n_tiles(); ++tile) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const uint8_t* base = packed.codes.data() + size_t(tile * chunks + chunk) * kWeightOnlyChunkBytes;
      for (int32_t lane = 0; lane < 32; ++lane) {
        for (int32_t index = 0; index < per_lane; ++index) {
          const FragmentPosition pos = WeightOnlyFragmentPosition(l.bits, lane, index);
          const int64_t row = tile * kWeightOnlyTileRows + pos.row;
          const int64_t col = chunk * chunk_cols + pos.col;
          if (row >= l.n || col >= l.k) continue;
          const uint8_t byte = base[lane * 16 + (l.bits == 8 ? index : index / 2)];
          (*codes)[row * l.k + col] = l.bits == 8 ? byte : uint8_t((byte >> (4 * (index % 2))) & 0xf);
        }
      }
    }
    for (int64_t group = 0; group < l.groups; ++group) {
      for (int64_t r = 0; r < kWeightOnlyTileRows; ++r) {
        const int64_t row = tile * kWeightOnlyTileRows + r;
        if (row >= l.n) continue;
        const size_t at = size_t((tile * l.groups + group) * kWeightOnlyTileRows + r);
        float scale;
        if (!packed.half_scales.empty()) {
          const uint16_t h = packed.half_scales[at];
          const uint32_t sign = uint32_t(h & 0x8000u) << 16;
          const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
          const uint32_t bits = (h & 0x7fffu) == 0 ? sign : sign | ((exp - 15 + 127) << 23) | (man << 13);
          std::memcpy(&scale, &bits, 4);
        } else {
          scale = packed.float_scales[at];
        }
        (*scales)[row * l.groups + group] = scale;
        if (!packed.zeros.empty()) (*zeros)[row * l.groups + group] = packed.zeros[at];
      }
    }
  }
}

}  // namespace tern::kernels
