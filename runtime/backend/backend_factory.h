// Makes a backend by name, for ternd and the command-line tools: "cpu" (fp32)
// or "cuda" computing in `dtype` ("float16", "bfloat16", "float32").
// INVALID_ARGUMENT for an unknown name or dtype; FAILED_PRECONDITION for
// "cuda" in a build without CUDA or on a machine without a usable GPU.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/backend/backend.h"

namespace tern::runtime {

struct BackendChoice {
  std::string name = "cpu";
  std::string dtype = "bfloat16";  // CUDA only
  bool cuda_graphs = true;         // CUDA only: CudaBackendOptions::cuda_graphs
  bool pdl = true;                 // CUDA only: CudaBackendOptions::pdl
  bool moe_device_experts = true;  // CUDA only: CudaBackendOptions::moe_device_experts
};

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const BackendChoice& choice);

}  // namespace tern::runtime
