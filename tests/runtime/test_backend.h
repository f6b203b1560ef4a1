// The backend a runtime test built twice runs on: the CPU backend, or, when
// the test is compiled with TERN_TEST_CUDA_BACKEND (label gpu), the CUDA
// backend computing in fp32; null when no GPU is visible (the test skips).
#pragma once

#include <memory>

#include "runtime/backend/backend.h"
#include "runtime/cpu/cpu_backend.h"
#if defined(TERN_TEST_CUDA_BACKEND)
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"
#endif

namespace tern::runtime::testing {

inline std::unique_ptr<Backend> MakeTestBackend() {
#if defined(TERN_TEST_CUDA_BACKEND)
  if (ListCudaDevices().empty()) return nullptr;
  CudaBackendOptions options;
  options.compute_dtype = DType::kF32;
  auto backend = CudaBackend::Create(options);
  return backend.ok() ? std::unique_ptr<Backend>(std::move(*backend)) : nullptr;
#else
  return std::make_unique<CpuBackend>();
#endif
}

}  // namespace tern::runtime::testing
