#include <cstring>

#include "kernels/cache/copy_blocks.h"

namespace tern::kernels {

bool CopyBlocksReference(const CopyBlocksParams& p) {
  for (int32_t i = 0; i < p.num_pairs; ++i) {
    if (p.src[i] < 0 || p.src[i] >= p.num_blocks || p.dst[i] < 0 || p.dst[i] >= p.num_blocks) return false;
  }
  for (int32_t pool = 0; pool < p.num_pools; ++pool) {
    auto* base = static_cast<unsigned char*>(p.pools[pool]);
    for (int32_t i = 0; i < p.num_pairs; ++i) {
      std::memcpy(base + int64_t(p.dst[i]) * p.block_bytes, base + int64_t(p.src[i]) * p.block_bytes,
                  size_t(p.block_bytes));
    }
  }
  return true;
}

}  // namespace tern::kernels
