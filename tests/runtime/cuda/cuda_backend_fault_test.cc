// A real device fault (a kernel writing far outside the KV cache) poisons the
// CUDA backend: the step reports the CUDA error, Health() turns fatal, and
// every later step is refused, which is what makes ternd stop serving and
// exit. Its own binary, because the fault ends the process's CUDA context.
#include "gtest/gtest.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"

namespace tern::runtime {
namespace {

TEST(CudaBackendFaultTest, AStickyFaultIsFatalForEveryLaterStep) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  CudaBackendOptions options;
  options.compute_dtype = DType::kF16;
  auto backend = CudaBackend::Create(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  Backend& b = **backend;
  const KvCacheSpec spec{1, 4, 16, 2, 64};
  auto cache = b.AllocateKvCache(spec);
  ASSERT_TRUE(cache.ok());
  EXPECT_TRUE(b.Health().ok());

  // Not validated on purpose: the slot lies ~64 GiB past the cache.
  ForwardBatch batch;
  batch.token_ids = {1};
  batch.positions = {0};
  batch.slots = {1 << 28};
  batch.query_start = {0, 1};
  batch.context_lens = {1};
  batch.block_indptr = {0, 1};
  batch.block_ids = {0};
  batch.logits_rows = {0};
  ASSERT_TRUE(b.BeginStep(batch).ok());
  Tensor k = b.Scratch(0, 1, spec.num_kv_heads * spec.head_dim);
  Tensor v = b.Scratch(1, 1, spec.num_kv_heads * spec.head_dim);
  b.WriteKv(k, v, **cache, 0);
  b.EndForward();
  const absl::Status step = b.FinishStep();
  EXPECT_EQ(step.code(), absl::StatusCode::kInternal) << step;
  const absl::Status health = b.Health();
  EXPECT_EQ(health.code(), absl::StatusCode::kInternal);
  EXPECT_NE(health.message().find("cudaError"), std::string::npos) << health;

  ForwardBatch next = batch;
  next.slots = {0};
  const absl::Status refused = b.BeginStep(next);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(b.Health().ok());
}

}  // namespace
}  // namespace tern::runtime
