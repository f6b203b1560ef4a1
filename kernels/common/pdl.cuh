// Programmatic dependent launch (Hopper and later). A kernel started with
// LaunchWithPdl may be scheduled while the kernel before it on the stream is
// still draining, so its launch latency and any reads of constant data
// (weights) overlap the tail of its predecessor. The contract for every
// kernel launched this way:
//   - before PdlWaitForPrior(), read only data no earlier kernel writes
//     (weights, tables) and write nothing;
//   - PdlWaitForPrior() returns once the preceding grid has completed and its
//     writes are visible.
// PdlAllowDependents() lets the next PDL-launched kernel start early; it is
// harmless anywhere in a kernel, since the dependent still waits for this
// grid to finish before touching its outputs. Under stream capture the
// dependency becomes a programmatic edge of the CUDA graph. On GPUs before
// sm_90 both device calls compile to nothing and the launch attribute is
// ignored, so the kernels keep plain stream order. Launchers that use PDL
// take a `pdl` argument (CudaBackendOptions::pdl): false launches without
// the attribute (plain stream order), for A/B measurements.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace tern::kernels {

__device__ __forceinline__ void PdlWaitForPrior() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void PdlAllowDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...) with programmatic
// stream serialization allowed when `pdl`. Returns the launch's error.
template <typename... Params, typename... Args>
cudaError_t LaunchWithPdl(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attribute;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace tern::kernels
