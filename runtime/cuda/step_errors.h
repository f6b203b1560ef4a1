// The first failure among a step's enqueued CUDA and cuBLAS work, and the
// poisoning a device fault leaves behind: what the CUDA backend
// (cuda_backend_impl.h) and the CUDA DiT ops (runtime/dit/cuda_dit_ops_impl.h)
// keep between a step's ops and its FinishStep. Ops record the status of
// each launch; the step reports the first, and later ops may skip (ok()).
//
// Built only with TERN_WITH_CUDA. Not thread-safe: the owner's thread
// drives it.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tern::runtime {

class StepErrors {
 public:
  // Keeps `error`, naming `op`, when it is the step's first.
  void Record(cudaError_t error, absl::string_view op);
  // Record for a device allocation of `bytes`: out of memory names the
  // size asked and the room left (DescribeDeviceAllocation).
  void RecordAllocation(cudaError_t error, absl::string_view what, size_t bytes);
  // A failed cuBLAS call as cudaErrorUnknown, naming its status.
  void RecordBlas(cublasStatus_t status, absl::string_view op);
  // No failure recorded since the last Finish.
  bool ok() const { return first_ == cudaSuccess; }

  // The step's status once its work has been waited for: OK, or the first
  // failure (CudaStatus). When the device then cannot synchronize (a fault,
  // which is sticky), the owner is poisoned for good. Clears the step's
  // failure either way.
  absl::Status Finish();
  // Marks the owner unusable, `why` being the failure that did it.
  void Poison(absl::string_view why);
  bool poisoned() const { return poisoned_; }
  // The failure that poisoned the owner.
  const std::string& fatal_error() const { return fatal_error_; }

 private:
  cudaError_t first_ = cudaSuccess;
  std::string op_;
  bool poisoned_ = false;
  std::string fatal_error_;
};

}  // namespace tern::runtime
