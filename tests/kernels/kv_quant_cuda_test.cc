// Quantized KV cache kernels (kernels/attention/kv_quant.h) against their CPU
// references: the quantizing append bit for bit (codes and int8 token
// scales), and the decode and general paged attention over fp8 and int8
// caches against PagedAttentionQuantizedReference on the same bytes and
// scales, over dtypes, GQA groups, head dims, partition boundaries, sliding
// windows and prefill chunks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>

#include "gtest/gtest.h"
#include "kernels/attention/kv_quant.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/attention/paged_decode_attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

struct Param {
  ScalarType type;
  KvElement element;
};

std::string Name(const Param& p) {
  return std::string(testing::Name(p.type)) + "/" + KvElementName(p.element);
}

class KvQuantCudaTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

// fp8 head scales that are not 1, so a kernel that ignores them fails.
std::vector<float> HeadScales(int32_t num_kv_heads, float base) {
  std::vector<float> scales;
  for (int32_t h = 0; h < num_kv_heads; ++h) scales.push_back(base * (1.0f + 0.25f * h));
  return scales;
}

// A host quantized cache of `slots` slots, every slot filled by the
// reference append from random rows (of values representable in `type`).
struct HostCache {
  std::vector<uint8_t> k, v;
  std::vector<float> k_scales, v_scales;  // int8: [slots, heads]; fp8: [heads]
};

HostCache MakeCache(const Param& param, int64_t slots, int32_t num_kv_heads, int32_t head_dim, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t width = int64_t(num_kv_heads) * head_dim;
  std::vector<float> k(slots * width), v(slots * width);
  for (auto& x : k) x = testing::Round(param.type, normal(rng));
  for (auto& x : v) x = testing::Round(param.type, normal(rng));
  HostCache c;
  c.k.resize(slots * width);
  c.v.resize(slots * width);
  if (param.element == KvElement::kInt8) {
    c.k_scales.resize(slots * num_kv_heads);
    c.v_scales.resize(slots * num_kv_heads);
  } else {
    c.k_scales = HeadScales(num_kv_heads, 0.01f);
    c.v_scales = HeadScales(num_kv_heads, 0.005f);
  }
  std::vector<int32_t> all(slots);
  std::iota(all.begin(), all.end(), 0);
  KvWriteQuantParams wp;
  wp.element = param.element;
  wp.num_tokens = slots;
  wp.num_kv_heads = num_kv_heads;
  wp.head_dim = head_dim;
  wp.k_row_stride = width;
  wp.v_row_stride = width;
  WriteKvQuantizedReference(wp, k.data(), v.data(), all.data(), c.k.data(), c.v.data(), c.k_scales.data(),
                            c.v_scales.data());
  return c;
}

// ---------------------------------------------------------------------------
// The quantizing append, bit for bit.

void RunWriteCase(const Param& param, int32_t num_kv_heads, int32_t head_dim, int32_t num_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const int64_t width = int64_t(num_kv_heads) * head_dim;
  const int64_t stride = width + 8;  // rows of a wider tensor, as the fused QKV output is
  const int32_t num_slots = num_tokens + 5;
  std::vector<float> k(num_tokens * stride), v(num_tokens * stride);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  if (num_tokens > 1) {
    std::fill(k.begin() + stride, k.begin() + stride + head_dim, 0.0f);  // an all-zero head row: scale 0
    v[stride + 3] = 1e4f;                                                // an outlier: fp8 saturates
  }
  std::vector<int32_t> slots(num_slots);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(num_tokens);
  if (num_tokens > 2) slots[2] = -1;  // a padding row stores nothing

  DeviceArray dk(param.type, k.size()), dv(param.type, v.size());
  dk.Upload(k);  // rounds k and v to the type, so the reference sees the GPU's inputs
  dv.Upload(v);
  const bool int8 = param.element == KvElement::kInt8;
  std::vector<float> k_scales = int8 ? std::vector<float>(num_slots * num_kv_heads, -7.0f) : HeadScales(num_kv_heads, 0.02f);
  std::vector<float> v_scales = int8 ? std::vector<float>(num_slots * num_kv_heads, -7.0f) : HeadScales(num_kv_heads, 0.03f);
  std::vector<uint8_t> want_k(num_slots * width, 0xAB), want_v(num_slots * width, 0xAB);
  DeviceVector<uint8_t> gk(want_k), gv(want_v);
  DeviceVector<float> gks(k_scales), gvs(v_scales);
  DeviceVector<int32_t> dslots(slots);

  KvWriteQuantParams p;
  p.element = param.element;
  p.num_tokens = num_tokens;
  p.num_kv_heads = num_kv_heads;
  p.head_dim = head_dim;
  p.k_row_stride = stride;
  p.v_row_stride = stride;
  WriteKvQuantizedReference(p, k.data(), v.data(), slots.data(), want_k.data(), want_v.data(), k_scales.data(),
                            v_scales.data());
  ASSERT_EQ(LaunchWriteKvQuantized(param.type, p, dk.data(), dv.data(), dslots.data(), gk.mutable_data(),
                                   gv.mutable_data(), gks.mutable_data(), gvs.mutable_data(), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::string what = Name(param) + " heads " + std::to_string(num_kv_heads) + " d " + std::to_string(head_dim);
  const std::vector<uint8_t> got_k = gk.Download(), got_v = gv.Download();
  for (size_t i = 0; i < want_k.size(); ++i) {
    ASSERT_EQ(int(got_k[i]), int(want_k[i])) << what << ": K byte " << i << " (slot " << i / width << ", head "
                                             << (i % width) / head_dim << ", d " << i % head_dim << ")";
    ASSERT_EQ(int(got_v[i]), int(want_v[i])) << what << ": V byte " << i << " (slot " << i / width << ", head "
                                             << (i % width) / head_dim << ", d " << i % head_dim << ")";
  }
  const std::vector<float> got_ks = gks.Download(), got_vs = gvs.Download();
  for (size_t i = 0; i < k_scales.size(); ++i) {
    ASSERT_EQ(got_ks[i], k_scales[i]) << what << ": K scale " << i;
    ASSERT_EQ(got_vs[i], v_scales[i]) << what << ": V scale " << i;
  }
}

TEST_P(KvQuantCudaTest, AppendQuantizesBitForBit) {
  for (int32_t head_dim : {64, 80, 128, 256}) {
    RunWriteCase(GetParam(), 4, head_dim, 9, 10 + head_dim);
    RunWriteCase(GetParam(), 5, head_dim, 1, 20 + head_dim);  // heads not a multiple of the block's 4 warps
  }
}

// ---------------------------------------------------------------------------
// Attention over quantized caches.

struct Shape {
  int32_t num_heads, num_kv_heads, head_dim, block_size;
  std::vector<std::pair<int32_t, int32_t>> seqs;  // (new tokens, context)
  int32_t sliding_window = 0;
};

std::string Describe(const Param& param, const Shape& shape) {
  std::ostringstream text;
  text << Name(param) << " heads " << shape.num_heads << "/" << shape.num_kv_heads << " d " << shape.head_dim
       << " block " << shape.block_size << " window " << shape.sliding_window << " seqs";
  for (const auto& [n, c] : shape.seqs) text << " " << n << "/" << c;
  return text.str();
}

// Compares element by element and names the first element out of tolerance.
void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, float tolerance, int64_t width,
                 int32_t head_dim, const std::string& what) {
  const float error = testing::RelativeError(got, want);
  if (error < tolerance) return;
  float scale = 1.0f;
  for (float w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) / scale < tolerance)) {
      ADD_FAILURE() << what << ": relative error " << error << " >= " << tolerance << "; first at row " << i / width
                    << ", head " << (i % width) / head_dim << ", d " << i % head_dim << ": got " << got[i]
                    << ", want " << want[i];
      return;
    }
  }
}

// decode: every sequence has one new token and the decode kernel runs;
// otherwise the general kernel runs.
void RunAttentionCase(const Param& param, const Shape& shape, bool decode, uint32_t seed) {
  std::mt19937 rng(seed);
  const testing::ScatteredBatch b = testing::MakeScatteredBatch(shape.seqs, shape.block_size, rng);
  const int64_t slots = int64_t(b.num_blocks) * shape.block_size;
  const HostCache cache = MakeCache(param, slots, shape.num_kv_heads, shape.head_dim, rng);
  const int64_t q_width = int64_t(shape.num_heads) * shape.head_dim;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(size_t(b.rows()) * q_width);
  for (auto& x : q) x = testing::Round(param.type, normal(rng));

  PagedAttentionParams p;
  p.num_seqs = int32_t(shape.seqs.size());
  p.num_heads = shape.num_heads;
  p.num_kv_heads = shape.num_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_size = shape.block_size;
  p.scale = 1.0f / std::sqrt(float(shape.head_dim));
  p.sliding_window = shape.sliding_window;
  p.q_row_stride = q_width;
  p.out_row_stride = q_width;
  p.kv_element = param.element;
  PagedAttentionParams host = p;
  host.query_start = b.query_start.data();
  host.context_lens = b.context_lens.data();
  host.block_indptr = b.block_indptr.data();
  host.block_ids = b.block_ids.data();
  host.k_scales = cache.k_scales.data();
  host.v_scales = cache.v_scales.data();
  std::vector<float> want(q.size());
  PagedAttentionQuantizedReference(host, q.data(), cache.k.data(), cache.v.data(), want.data(), 0, p.num_seqs);

  DeviceArray dq(param.type, q.size()), dout(param.type, q.size());
  dq.Upload(q);
  DeviceVector<uint8_t> dk(cache.k), dv(cache.v);
  DeviceVector<float> dks(cache.k_scales), dvs(cache.v_scales);
  DeviceVector<int32_t> query_start(b.query_start), context_lens(b.context_lens), block_indptr(b.block_indptr),
      block_ids(b.block_ids), row_seq(b.row_seq);
  p.query_start = query_start.data();
  p.context_lens = context_lens.data();
  p.block_indptr = block_indptr.data();
  p.block_ids = block_ids.data();
  p.k_scales = dks.data();
  p.v_scales = dvs.data();
  const std::string what = Describe(param, shape) + (decode ? " (decode kernel)" : " (general kernel)");
  if (decode) {
    int32_t max_context = 0;
    for (int32_t c : b.context_lens) max_context = std::max(max_context, c);
    ASSERT_TRUE(SupportsPagedDecodeAttention(p)) << what;
    const size_t bytes = PagedDecodeAttentionWorkspaceBytes(p, max_context);
    DeviceArray workspace(ScalarType::kF32, bytes / 4 + 1);
    ASSERT_EQ(LaunchPagedDecodeAttention(param.type, p, max_context, dq.data(), dk.data(), dv.data(), dout.data(),
                                         workspace.data(), bytes, nullptr),
              cudaSuccess)
        << what;
  } else {
    ASSERT_EQ(LaunchPagedAttention(param.type, p, b.rows(), row_seq.data(), dq.data(), dk.data(), dv.data(),
                                   dout.data(), nullptr),
              cudaSuccess)
        << what;
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  ExpectClose(dout.Download(), want, testing::Tolerance(param.type), q_width, shape.head_dim, what);
}

std::vector<std::pair<int32_t, int32_t>> DecodeSeqs(const std::vector<int32_t>& contexts) {
  std::vector<std::pair<int32_t, int32_t>> seqs;
  for (int32_t c : contexts) seqs.emplace_back(1, c);
  return seqs;
}

TEST_P(KvQuantCudaTest, DecodeAttentionGroupsHeadDimsAndPartitions) {
  for (int32_t group : {1, 2, 4, 8}) {
    for (int32_t head_dim : {64, 128}) {
      RunAttentionCase(GetParam(), {2 * group, 2, head_dim, 16, DecodeSeqs({1, 16, 17, 300, 700})}, true,
                       100 + group * 7 + head_dim);
    }
  }
}

TEST_P(KvQuantCudaTest, DecodeAttentionLongContextsAndOddBlocks) {
  RunAttentionCase(GetParam(), {32, 8, 128, 16, DecodeSeqs({4096, 4100})}, true, 200);
  RunAttentionCase(GetParam(), {8, 2, 64, 7, DecodeSeqs({63, 64, 65, 1000})}, true, 201);
  std::vector<int32_t> many;
  for (int i = 0; i < 32; ++i) many.push_back(2 * kDecodePartitionTokens - 1 + i % 3);
  RunAttentionCase(GetParam(), {16, 8, 128, 16, DecodeSeqs(many)}, true, 202);
}

TEST_P(KvQuantCudaTest, DecodeAttentionSlidingWindow) {
  RunAttentionCase(GetParam(), {8, 2, 64, 16, DecodeSeqs({70, 40, 1000, 3}), 24}, true, 300);
  RunAttentionCase(GetParam(), {8, 4, 128, 16, DecodeSeqs({1000, 700, 2 * kDecodePartitionTokens + 5}), 300}, true,
                   301);
}

TEST_P(KvQuantCudaTest, GeneralAttentionPrefillChunksAndDecode) {
  RunAttentionCase(GetParam(), {8, 2, 64, 16, {{5, 5}, {17, 40}, {1, 300}}}, false, 400);
  RunAttentionCase(GetParam(), {4, 4, 128, 8, {{16, 16}, {3, 3}}}, false, 401);
  RunAttentionCase(GetParam(), {6, 2, 80, 16, {{9, 100}, {1, 1}}}, false, 402);  // a head dim only this kernel runs
  RunAttentionCase(GetParam(), {8, 2, 64, 16, {{30, 200}}, 50}, false, 403);
}

INSTANTIATE_TEST_SUITE_P(TypesAndElements, KvQuantCudaTest,
                         ::testing::Values(Param{ScalarType::kF16, KvElement::kFp8E4M3},
                                           Param{ScalarType::kF16, KvElement::kInt8},
                                           Param{ScalarType::kBF16, KvElement::kFp8E4M3},
                                           Param{ScalarType::kBF16, KvElement::kInt8},
                                           Param{ScalarType::kF32, KvElement::kFp8E4M3},
                                           Param{ScalarType::kF32, KvElement::kInt8}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           std::string name = Name(info.param);
                           std::replace(name.begin(), name.end(), '/', '_');
                           return name;
                         });

}  // namespace
}  // namespace tern::kernels
