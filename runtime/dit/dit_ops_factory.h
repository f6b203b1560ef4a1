// Makes the DiT's ops by backend name, for ternd and the tools, as
// MakeBackend (runtime/backend/backend_factory.h) does for LLMs: "cpu"
// (CpuDitOps, float32 only) or "cuda" (CudaDitOps in float32, bfloat16 or
// float16; "auto" or empty is bfloat16). INVALID_ARGUMENT for an unknown
// name or dtype, naming it; FAILED_PRECONDITION for "cuda" in a build
// without CUDA or on a machine without a usable GPU.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/dit/dit_ops.h"

namespace tern::runtime {

struct DitOpsChoice {
  std::string backend = "cpu";  // "cpu" or "cuda"
  std::string dtype = "auto";   // "auto", "float32", "bfloat16", "float16"
  bool cuda_graphs = true;      // CUDA only: CudaDitOpsOptions::cuda_graphs
  int device = 0;               // CUDA only
};

absl::StatusOr<std::unique_ptr<DitOps>> MakeDitOps(const DitOpsChoice& choice);

// The dtype the choice computes in, spelled as config files spell it
// ("float32", "bfloat16", "float16"); INVALID_ARGUMENT as MakeDitOps.
absl::StatusOr<std::string> DitOpsComputeDType(const DitOpsChoice& choice);

}  // namespace tern::runtime
