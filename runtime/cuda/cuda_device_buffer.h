// Device memory of the CUDA backend: DeviceBuffer, an owned device
// allocation that only grows, UploadToDevice for weights copied once, and
// CUDA errors as absl::Status (CudaStatus, AllocationStatus,
// RETURN_IF_CUDA). Internal to the CUDA backend
// (runtime/cuda) and the CUDA DiT ops (runtime/dit/cuda_dit_ops.cc).
//
// Built only with TERN_WITH_CUDA. Not thread-safe: used by the backend's
// one thread.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "absl/status/status.h"

namespace tern::runtime {

// An allocation that failed is RESOURCE_EXHAUSTED: the device (or pinned
// host memory) has no room, but nothing is broken, and a smaller request may
// succeed. Every other error is INTERNAL.
absl::Status CudaStatus(cudaError_t error, const std::string& what);

// `bytes` in MiB with one decimal: "1536.0 MiB".
std::string Mib(size_t bytes);

// What a device allocation of `bytes` for `what` asked for, and what the
// device had: "allocating scratch: 1536.0 MiB of device memory asked, 20.5
// MiB free of 81559.0 MiB".
std::string DescribeDeviceAllocation(const std::string& what, size_t bytes);

// CudaStatus of a device allocation, naming its size and the room left when
// it failed for want of memory.
absl::Status AllocationStatus(cudaError_t error, const std::string& what, size_t bytes);

// Allocates `bytes` of device memory into `*device`, copies `bytes` from
// `host` there (synchronously) and adds `bytes` to `*total`. Zero bytes
// allocate nothing and leave `*device` as it was. A failed allocation (out
// of memory included) or copy is INTERNAL: "uploading <what> (<bytes>
// bytes): <CUDA error>", with the error cleared from the runtime's last
// error, `*device` and `*total` unchanged, and nothing left allocated. On
// success the caller owns `*device` (cudaFree).
absl::Status UploadToDevice(const void* host, size_t bytes, void** device, const std::string& what, size_t* total);

// Returns CudaStatus(error, what) from the enclosing function when `expr`
// is not cudaSuccess.
#define RETURN_IF_CUDA(expr, what)                                   \
  do {                                                               \
    const cudaError_t tern_cuda_error_ = (expr);                     \
    if (tern_cuda_error_ != cudaSuccess) return CudaStatus(tern_cuda_error_, what); \
  } while (0)

// An owned device allocation that only grows.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      if (data_ != nullptr) cudaFree(data_);
      data_ = other.data_;
      bytes_ = other.bytes_;
      other.data_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  cudaError_t Reserve(size_t bytes) {
    if (bytes <= bytes_) return cudaSuccess;
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
    const cudaError_t error = cudaMalloc(&data_, std::max<size_t>(bytes, 256));
    if (error == cudaSuccess) {
      bytes_ = std::max<size_t>(bytes, 256);
    } else {
      // The failure is returned; clear it from the runtime's last error, where
      // a later step's check would find it again.
      data_ = nullptr;
      (void)cudaGetLastError();
    }
    return error;
  }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tern::runtime
