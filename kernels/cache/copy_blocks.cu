#include <algorithm>
#include <cstdint>

#include "kernels/cache/copy_blocks.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;

// One launch's pairs, carried by value in the kernel's parameters.
struct PairBatch {
  int32_t count = 0;
  int32_t src[kCopyBlocksPairsPerLaunch];
  int32_t dst[kCopyBlocksPairsPerLaunch];
};

// Block (pair, pool): copies one block of one pool, `Word` at a time.
template <typename Word>
__global__ void CopyBlocksKernel(void* const* pools, int64_t block_bytes, PairBatch batch) {
  const int32_t pair = blockIdx.x;
  auto* base = static_cast<unsigned char*>(pools[blockIdx.y]);
  const auto* src = reinterpret_cast<const Word*>(base + int64_t(batch.src[pair]) * block_bytes);
  auto* dst = reinterpret_cast<Word*>(base + int64_t(batch.dst[pair]) * block_bytes);
  const int64_t words = block_bytes / int64_t(sizeof(Word));
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

cudaError_t LaunchCopyBlocks(const CopyBlocksParams& p, cudaStream_t stream) {
  if (p.block_bytes <= 0 || p.num_pairs < 0 || p.num_pools < 0 || p.num_pools > 65535) return cudaErrorInvalidValue;
  for (int32_t i = 0; i < p.num_pairs; ++i) {
    if (p.src[i] < 0 || p.src[i] >= p.num_blocks || p.dst[i] < 0 || p.dst[i] >= p.num_blocks) {
      return cudaErrorInvalidValue;
    }
  }
  if (p.num_pairs == 0 || p.num_pools == 0) return cudaSuccess;
  // Pools come from cudaMalloc (256-byte aligned), so 16-byte words are
  // aligned whenever a block is a whole number of them.
  const bool wide = p.block_bytes % 16 == 0;
  for (int32_t first = 0; first < p.num_pairs; first += kCopyBlocksPairsPerLaunch) {
    PairBatch batch;
    batch.count = std::min(kCopyBlocksPairsPerLaunch, p.num_pairs - first);
    for (int32_t i = 0; i < batch.count; ++i) {
      batch.src[i] = p.src[first + i];
      batch.dst[i] = p.dst[first + i];
    }
    const dim3 grid(unsigned(batch.count), unsigned(p.num_pools));
    if (wide) {
      CopyBlocksKernel<uint4><<<grid, kThreads, 0, stream>>>(p.pools, p.block_bytes, batch);
    } else {
      CopyBlocksKernel<unsigned char><<<grid, kThreads, 0, stream>>>(p.pools, p.block_bytes, batch);
    }
    if (const cudaError_t error = cudaGetLastError(); error != cudaSuccess) return error;
  }
  return cudaSuccess;
}

}  // namespace tern::kernels
