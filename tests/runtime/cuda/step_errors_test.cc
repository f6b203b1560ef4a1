// StepErrors (runtime/cuda/step_errors.h): the first failure of a step wins
// and names its op; cuBLAS statuses and device allocations are named; a
// non-sticky error leaves the owner usable, and Poison marks it unusable.
// Recording needs no GPU; Finish's device check skips without one.
#include "runtime/cuda/step_errors.h"

#include <string>

#include <cuda_runtime.h>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

bool HaveGpu() {
  int devices = 0;
  const bool ok = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  cudaGetLastError();
  return ok;
}

TEST(StepErrorsTest, TheFirstFailureWinsAndNamesItsOp) {
  StepErrors errors;
  EXPECT_TRUE(errors.ok());
  errors.Record(cudaSuccess, "a launch that worked");
  errors.RecordBlas(CUBLAS_STATUS_SUCCESS, "a GEMM that worked");
  EXPECT_TRUE(errors.ok());
  errors.RecordBlas(CUBLAS_STATUS_NOT_SUPPORTED, "linear [8 x 8]");
  errors.Record(cudaErrorInvalidValue, "a later launch");
  EXPECT_FALSE(errors.ok());
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device: Finish's device check needs one";
  const absl::Status status = errors.Finish();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("linear [8 x 8] (cuBLAS status"), std::string::npos) << status;
  EXPECT_EQ(status.message().find("a later launch"), std::string::npos) << status;
  // Not a device fault: the owner goes on, with the step's failure cleared.
  EXPECT_FALSE(errors.poisoned());
  EXPECT_TRUE(errors.ok());
  EXPECT_TRUE(errors.Finish().ok());
}

TEST(StepErrorsTest, AllocationsNameTheirSizeAndPoisonSticks) {
  StepErrors errors;
  errors.RecordAllocation(cudaErrorMemoryAllocation, "scratch slot 3", size_t(3) << 30);
  EXPECT_FALSE(errors.ok());
  if (HaveGpu()) {
    const absl::Status status = errors.Finish();
    EXPECT_NE(status.message().find("scratch slot 3"), std::string::npos) << status;
    EXPECT_NE(status.message().find("MiB"), std::string::npos) << status;
    EXPECT_FALSE(errors.poisoned());
  }
  errors.Poison("an illegal address in step 7");
  EXPECT_TRUE(errors.poisoned());
  EXPECT_EQ(errors.fatal_error(), "an illegal address in step 7");
}

}  // namespace
}  // namespace tern::runtime
