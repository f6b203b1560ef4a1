// MakeDitOps: backend and dtype spellings, and the refusals naming them.
#include "runtime/dit/dit_ops_factory.h"

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

TEST(DitOpsFactoryTest, CpuComputesInFloat32Only) {
  auto ops = MakeDitOps({"cpu", "auto"});
  ASSERT_TRUE(ops.ok()) << ops.status();
  EXPECT_EQ((*ops)->name(), "cpu");
  EXPECT_EQ(*DitOpsComputeDType({"cpu", ""}), "float32");
  const auto bf16 = MakeDitOps({"cpu", "bfloat16"});
  EXPECT_EQ(bf16.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bf16.status().message().find("dtype \"bfloat16\""), std::string::npos) << bf16.status();
}

TEST(DitOpsFactoryTest, CudaDtypesAndRefusals) {
  EXPECT_EQ(*DitOpsComputeDType({"cuda", "auto"}), "bfloat16");
  EXPECT_EQ(*DitOpsComputeDType({"cuda", "float16"}), "float16");
  EXPECT_EQ(DitOpsComputeDType({"cuda", "int8"}).status().code(), absl::StatusCode::kInvalidArgument);
  const auto unknown = MakeDitOps({"tpu", "auto"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("backend \"tpu\""), std::string::npos) << unknown.status();
  const auto cuda = MakeDitOps({"cuda", "bfloat16"});
#if defined(TERN_WITH_CUDA)
  // With a GPU it works; without one, FAILED_PRECONDITION.
  if (!cuda.ok()) {
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition) << cuda.status();
  }
#else
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(cuda.status().message().find("no CUDA"), std::string::npos) << cuda.status();
#endif
}

}  // namespace
}  // namespace tern::runtime
