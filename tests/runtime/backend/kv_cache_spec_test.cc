// The KV cache's element type (runtime/backend/kv_cache_spec.h): parsing,
// spec checks, block bytes (so the runner sizes the pool by them), and the
// CPU backend's quantized cache: copy-on-write block copies carry the int8
// token scales, so attention through a copied block is the original's.
#include <cstring>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "runtime/backend/kv_cache_spec.h"
#include "runtime/cpu/cpu_backend.h"

namespace tern::runtime {
namespace {

TEST(KvCacheSpecTest, ParsesTheConfigValues) {
  EXPECT_EQ(*ParseKvCacheDtype(""), KvCacheDtype::kAuto);
  EXPECT_EQ(*ParseKvCacheDtype("auto"), KvCacheDtype::kAuto);
  EXPECT_EQ(*ParseKvCacheDtype("fp8"), KvCacheDtype::kFp8E4M3);
  EXPECT_EQ(*ParseKvCacheDtype("int8"), KvCacheDtype::kInt8);
  const auto bad = ParseKvCacheDtype("fp4");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("\"fp4\""), std::string::npos) << bad.status().message();
  EXPECT_STREQ(KvCacheDtypeName(KvCacheDtype::kFp8E4M3), "fp8");
}

KvCacheSpec Spec(KvCacheDtype dtype) {
  KvCacheSpec spec;
  spec.num_layers = 2;
  spec.num_blocks = 8;
  spec.block_size = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 16;
  spec.dtype = dtype;
  return spec;
}

TEST(KvCacheSpecTest, BlockBytesFollowTheElementType) {
  const size_t fp16 = KvCacheBlockBytes(Spec(KvCacheDtype::kAuto), 2);
  EXPECT_EQ(fp16, size_t(2) * 2 * 4 * 2 * 16 * 2);
  EXPECT_EQ(KvCacheBlockBytes(Spec(KvCacheDtype::kFp8E4M3), 2), fp16 / 2);
  // int8: one byte an element plus a 4-byte scale per (token, kv head).
  EXPECT_EQ(KvCacheBlockBytes(Spec(KvCacheDtype::kInt8), 2), fp16 / 2 + size_t(2) * 2 * 4 * 2 * 4);
  CpuBackend cpu;
  EXPECT_EQ(cpu.KvBlockBytes(Spec(KvCacheDtype::kAuto)), 2 * fp16);  // fp32 compute
  EXPECT_EQ(cpu.KvBlockBytes(Spec(KvCacheDtype::kFp8E4M3)), fp16 / 2);
}

TEST(KvCacheSpecTest, RefusesScalesOfTheWrongCountOrValue) {
  KvCacheSpec spec = Spec(KvCacheDtype::kFp8E4M3);
  EXPECT_TRUE(ValidateKvCacheSpec(spec).ok());
  spec.k_head_scales = {1.0f, 2.0f, 3.0f};
  absl::Status status = ValidateKvCacheSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("k_head_scales has 3 entries; expected num_layers * num_kv_heads = 4"),
            std::string::npos)
      << status.message();
  spec.k_head_scales = {1.0f, 2.0f, 3.0f, 4.0f};
  spec.v_head_scales = {1.0f, 0.0f, 1.0f, 1.0f};
  status = ValidateKvCacheSpec(spec);
  EXPECT_NE(status.message().find("v_head_scales[1] = 0"), std::string::npos) << status.message();
  spec.v_head_scales.clear();
  EXPECT_TRUE(ValidateKvCacheSpec(spec).ok());
  EXPECT_FLOAT_EQ(spec.HeadScale(false, 1, 1), 4.0f);
  EXPECT_FLOAT_EQ(spec.HeadScale(true, 1, 1), 1.0f);
  spec.dtype = KvCacheDtype::kInt8;
  EXPECT_FALSE(ValidateKvCacheSpec(spec).ok());  // head scales are fp8's
  CpuBackend cpu;
  EXPECT_FALSE(cpu.AllocateKvCache(spec).ok());
}

// Writes one sequence's 6 tokens into blocks {1, 3} (block size 4), copies
// them to {5, 6}, and compares attention through the two tables.
class CpuQuantizedCacheTest : public ::testing::TestWithParam<KvCacheDtype> {};

TEST_P(CpuQuantizedCacheTest, CopiedBlocksAttendAsTheOriginals) {
  KvCacheSpec spec = Spec(GetParam());
  if (GetParam() == KvCacheDtype::kFp8E4M3) {
    spec.k_head_scales = {0.01f, 0.02f, 0.03f, 0.04f};
    spec.v_head_scales = {0.02f, 0.01f, 0.02f, 0.01f};
  }
  CpuBackend cpu;
  auto cache = cpu.AllocateKvCache(spec);
  ASSERT_TRUE(cache.ok()) << cache.status();
  const int32_t tokens = 6, heads = 4, width = spec.num_kv_heads * spec.head_dim;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);

  ForwardBatch write;
  write.token_ids.assign(tokens, 0);
  write.positions.resize(tokens);
  std::iota(write.positions.begin(), write.positions.end(), 0);
  write.slots = {4, 5, 6, 7, 12, 13};
  write.query_start = {0, tokens};
  write.context_lens = {tokens};
  write.block_indptr = {0, 2};
  write.block_ids = {1, 3};
  ASSERT_TRUE(cpu.BeginStep(write).ok());
  std::vector<float> k(tokens * width), v(tokens * width);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  for (int32_t layer = 0; layer < spec.num_layers; ++layer) {
    cpu.WriteKv(Tensor{k.data(), DType::kF32, tokens, width, width}, Tensor{v.data(), DType::kF32, tokens, width, width},
                **cache, layer);
  }
  (*cache)->CopyBlocks({1, 3}, {5, 6});

  std::vector<float> q(heads * spec.head_dim);
  for (auto& x : q) x = normal(rng);
  const auto attend = [&](std::vector<int32_t> blocks, int32_t layer) {
    ForwardBatch decode;
    decode.token_ids = {0};
    decode.positions = {tokens - 1};
    decode.slots = {blocks[1] * spec.block_size + 1};
    decode.query_start = {0, 1};
    decode.context_lens = {tokens};
    decode.block_indptr = {0, 2};
    decode.block_ids = std::move(blocks);
    EXPECT_TRUE(cpu.BeginStep(decode).ok());
    std::vector<float> out(q.size());
    AttentionOptions o;
    o.num_heads = heads;
    o.num_kv_heads = spec.num_kv_heads;
    o.head_dim = spec.head_dim;
    o.scale = 0.25f;
    cpu.Attention(Tensor{q.data(), DType::kF32, 1, int64_t(q.size()), int64_t(q.size())}, **cache, layer, o,
                  Tensor{out.data(), DType::kF32, 1, int64_t(out.size()), int64_t(out.size())});
    return out;
  };
  for (int32_t layer = 0; layer < spec.num_layers; ++layer) {
    const std::vector<float> original = attend({1, 3}, layer), copied = attend({5, 6}, layer);
    for (size_t i = 0; i < original.size(); ++i) {
      ASSERT_EQ(original[i], copied[i]) << "layer " << layer << " element " << i;
      ASSERT_TRUE(std::isfinite(original[i]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CpuQuantizedCacheTest,
                         ::testing::Values(KvCacheDtype::kAuto, KvCacheDtype::kFp8E4M3, KvCacheDtype::kInt8));

}  // namespace
}  // namespace tern::runtime
