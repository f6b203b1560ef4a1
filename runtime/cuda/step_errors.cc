#include "runtime/cuda/step_errors.h"

#include "absl/strings/str_cat.h"
#include "runtime/cuda/cuda_device_buffer.h"

namespace tern::runtime {

void StepErrors::Record(cudaError_t error, absl::string_view op) {
  if (error == cudaSuccess || first_ != cudaSuccess) return;
  first_ = error;
  op_ = std::string(op);
}

void StepErrors::RecordAllocation(cudaError_t error, absl::string_view what, size_t bytes) {
  if (error == cudaSuccess || first_ != cudaSuccess) return;
  first_ = error;
  op_ = error == cudaErrorMemoryAllocation ? DescribeDeviceAllocation(std::string(what), bytes) : std::string(what);
}

void StepErrors::RecordBlas(cublasStatus_t status, absl::string_view op) {
  if (status == CUBLAS_STATUS_SUCCESS || first_ != cudaSuccess) return;
  first_ = cudaErrorUnknown;
  op_ = absl::StrCat(op, " (cuBLAS status ", int(status), ")");
}

absl::Status StepErrors::Finish() {
  if (first_ == cudaSuccess) return absl::OkStatus();
  // Errors that are not sticky (a bad launch configuration) leave the
  // context usable; a fault poisons it for good.
  const cudaError_t probe = cudaDeviceSynchronize();
  const absl::Status status = CudaStatus(first_, op_);
  if (probe != cudaSuccess) Poison(status.message());
  first_ = cudaSuccess;
  op_.clear();
  return status;
}

void StepErrors::Poison(absl::string_view why) {
  poisoned_ = true;
  fatal_error_ = std::string(why);
}

}  // namespace tern::runtime
