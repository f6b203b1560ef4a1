// Finds out whether this process can use a CUDA GPU. Safe to call on machines
// without a driver or without a CUDA build: the answer is then zero devices.
#pragma once

#include <string>
#include <vector>

namespace tern::runtime {

struct CudaDeviceInfo {
  int ordinal = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  size_t total_memory_bytes = 0;
};

// The visible CUDA devices; empty without a GPU, a driver, or a CUDA build.
std::vector<CudaDeviceInfo> ListCudaDevices();

// True when this binary was compiled with the CUDA backend.
bool BuiltWithCuda();

}  // namespace tern::runtime
