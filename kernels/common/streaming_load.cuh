// Loads of data read once (weights, KV pages, packed codes): non-coherent
// global loads that do not allocate in L1, so the stream does not evict what
// is reused (activations, partial sums). Device code only.
#pragma once

#include <cstdint>

namespace tern::kernels {

// 16 bytes at a 16-byte-aligned address.
__device__ __forceinline__ uint4 LoadStreaming16(const void* ptr) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(ptr));
  return v;
}

// 8 bytes at an 8-byte-aligned address.
__device__ __forceinline__ uint2 LoadStreaming8(const void* ptr) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(ptr));
  return v;
}

}  // namespace tern::kernels
