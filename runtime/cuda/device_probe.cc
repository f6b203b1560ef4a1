#include "runtime/cuda/device_probe.h"

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace tern::runtime {

bool BuiltWithCuda() {
#if defined(TERN_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

std::vector<CudaDeviceInfo> ListCudaDevices() {
  std::vector<CudaDeviceInfo> devices;
#if defined(TERN_WITH_CUDA)
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return devices;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices.push_back({i, prop.name, prop.major, prop.minor, prop.totalGlobalMem});
  }
#endif
  return devices;
}

}  // namespace tern::runtime
