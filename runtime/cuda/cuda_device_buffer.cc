// CUDA errors as absl::Status, with the device's free memory named when an
// allocation fails; weight uploads.
#include "runtime/cuda/cuda_device_buffer.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tern::runtime {

absl::Status CudaStatus(cudaError_t error, const std::string& what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(absl::StrCat("out of memory: ", message));
  return absl::InternalError(message);
}

std::string Mib(size_t bytes) { return absl::StrFormat("%.1f MiB", double(bytes) / double(1 << 20)); }

std::string DescribeDeviceAllocation(const std::string& what, size_t bytes) {
  size_t free = 0, total = 0;
  std::string room = "free memory unknown";
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) room = absl::StrCat(Mib(free), " free of ", Mib(total));
  return absl::StrCat(what, ": ", Mib(bytes), " of device memory asked, ", room);
}

absl::Status AllocationStatus(cudaError_t error, const std::string& what, size_t bytes) {
  if (error != cudaErrorMemoryAllocation) return CudaStatus(error, what);
  return CudaStatus(error, DescribeDeviceAllocation(what, bytes));
}

absl::Status UploadToDevice(const void* host, size_t bytes, void** device, const std::string& what, size_t* total) {
  if (bytes == 0) return absl::OkStatus();
  void* allocation = nullptr;
  cudaError_t error = cudaMalloc(&allocation, bytes);
  if (error == cudaSuccess) error = cudaMemcpy(allocation, host, bytes, cudaMemcpyHostToDevice);
  if (error != cudaSuccess) {
    if (allocation != nullptr) cudaFree(allocation);
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("uploading ", what, " (", bytes, " bytes): ", cudaGetErrorName(error), " (",
                                            cudaGetErrorString(error), ")"));
  }
  *device = allocation;
  *total += bytes;
  return absl::OkStatus();
}

}  // namespace tern::runtime
