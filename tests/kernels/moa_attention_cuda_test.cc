// MoA per-head spans (kernels/attention/attention_spans.h) in the three
// attention kernels against the CPU reference on the same inputs: the decode
// kernel (fp32/fp16/bf16 over native, fp8 and int8 caches, GQA groups whose
// heads have different sinks and bands, two length buckets, contexts across
// partition boundaries, one captured CUDA graph replayed with new context
// lengths), the tensor-core prefill kernel (fp16/bf16 over native, fp8 and
// int8 caches: chunked prefill over prior context, many rows per tile) and
// the general kernel (fp32 and quantized prefill). Every block a step's
// queries do not read is unmapped (-1) in the tables the kernels get, as the
// scheduler leaves freed blocks: a kernel that reads outside its spans fails
// with an illegal address or a wrong result.
#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "gtest/gtest.h"
#include "kernels/attention/attention_spans.h"
#include "kernels/attention/flash_prefill_attention.h"
#include "kernels/attention/kv_quant.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/attention/paged_decode_attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

// Random spans for `num_heads` heads: two buckets (n <= 600, longer), every
// head its own sink (0, 4, 16 or 64 tokens) and rule (some bands constant,
// some growing, some negative alpha), so heads of one group differ.
struct SpanPlan {
  int32_t num_heads = 0;
  std::vector<int32_t> max_length = {600, INT32_MAX};
  std::vector<int32_t> sinks;
  std::vector<double> alphas, betas;  // [2, num_heads]

  SpanPlan(int32_t heads, std::mt19937& rng) : num_heads(heads) {
    std::uniform_int_distribution<int32_t> pick(0, 3);
    const int32_t sink_choices[] = {0, 4, 16, 64};
    const double beta_choices[] = {0.0, 0.125, 0.3, 1.0};
    for (int32_t h = 0; h < heads; ++h) sinks.push_back(sink_choices[pick(rng)]);
    std::uniform_real_distribution<double> alpha(-60.0, 300.0);
    for (int b = 0; b < 2; ++b) {
      for (int32_t h = 0; h < heads; ++h) {
        alphas.push_back(alpha(rng));
        betas.push_back(beta_choices[pick(rng)]);
      }
    }
  }
  AttentionSpanRules Host() const {
    return {2, max_length.data(), sinks.data(), alphas.data(), betas.data()};
  }
};

struct DeviceSpans {
  explicit DeviceSpans(const SpanPlan& plan)
      : max_length(plan.max_length), sinks(plan.sinks), alphas(plan.alphas), betas(plan.betas) {}
  AttentionSpanRules Rules() const { return {2, max_length.data(), sinks.data(), alphas.data(), betas.data()}; }
  DeviceVector<int32_t> max_length, sinks;
  DeviceVector<double> alphas, betas;
};

// Unmaps (sets to -1) every block of every sequence whose tokens no query of
// the step reads: past the longest sink and wholly before the earliest band
// start of any head over the step's query positions. Returns how many.
int32_t UnmapUnreadBlocks(const AttentionSpanRules& rules, int32_t num_heads, int32_t block_size,
                          const std::vector<int32_t>& query_start, const std::vector<int32_t>& context_lens,
                          const std::vector<int32_t>& block_indptr, std::vector<int32_t>* block_ids) {
  int32_t unmapped = 0;
  for (size_t s = 0; s < context_lens.size(); ++s) {
    const int32_t n_q = query_start[s + 1] - query_start[s];
    const int32_t context = context_lens[s];
    int32_t sink = 0, band = context;
    for (int32_t h = 0; h < num_heads; ++h) {
      sink = std::max(sink, rules.sinks[h]);
      for (int32_t n = context - n_q + 1; n <= context; ++n) band = std::min(band, rules.BandStart(num_heads, h, n));
    }
    for (int32_t i = (sink + block_size - 1) / block_size; (i + 1) * block_size <= band; ++i) {
      (*block_ids)[size_t(block_indptr[s] + i)] = -1;
      ++unmapped;
    }
  }
  return unmapped;
}

struct Case {
  int32_t num_heads, num_kv_heads, head_dim, block_size;
  std::vector<std::pair<int32_t, int32_t>> seqs;  // (query rows, context after the step)
};

std::string Describe(ScalarType type, KvElement element, const Case& c, const char* kernel) {
  std::ostringstream text;
  text << kernel << " " << testing::Name(type) << "/" << KvElementName(element) << " heads " << c.num_heads << "/"
       << c.num_kv_heads << " d " << c.head_dim << " block " << c.block_size << " seqs";
  for (const auto& [n, ctx] : c.seqs) text << " " << n << "/" << ctx;
  return text.str();
}

enum class Kernel { kDecode, kFlashPrefill, kGeneral };

// Runs one case on `kernel` and compares with the reference on the same
// (rounded or quantized) inputs and the same unmapped tables.
void RunCase(ScalarType type, KvElement element, Kernel kernel, const Case& c, uint32_t seed) {
  const char* kernel_name = kernel == Kernel::kDecode ? "decode" : kernel == Kernel::kFlashPrefill ? "flash" : "general";
  const std::string what = Describe(type, element, c, kernel_name);
  SCOPED_TRACE(what);
  std::mt19937 rng(seed);
  const SpanPlan plan(c.num_heads, rng);
  testing::ScatteredBatch b = testing::MakeScatteredBatch(c.seqs, c.block_size, rng);
  const int32_t unmapped = UnmapUnreadBlocks(plan.Host(), c.num_heads, c.block_size, b.query_start, b.context_lens,
                                             b.block_indptr, &b.block_ids);
  const int32_t rows = b.rows();
  const int64_t width = int64_t(c.num_heads) * c.head_dim;
  const int64_t kv_width = int64_t(c.num_kv_heads) * c.head_dim;
  const int64_t slots = int64_t(b.num_blocks) * c.block_size;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(size_t(rows) * width), k(size_t(slots * kv_width)), v(size_t(slots * kv_width));
  for (auto& x : q) x = testing::Round(type, normal(rng));
  for (auto& x : k) x = testing::Round(type, normal(rng));
  for (auto& x : v) x = testing::Round(type, normal(rng));

  PagedAttentionParams p;
  p.num_seqs = int32_t(c.seqs.size());
  p.num_heads = c.num_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.block_size = c.block_size;
  p.scale = 1.0f / std::sqrt(float(c.head_dim));
  p.q_row_stride = width;
  p.out_row_stride = width;
  p.kv_element = element;
  PagedAttentionParams host = p;
  host.query_start = b.query_start.data();
  host.context_lens = b.context_lens.data();
  host.block_indptr = b.block_indptr.data();
  host.block_ids = b.block_ids.data();
  host.spans = plan.Host();

  // Quantized caches: the reference append's bytes and scales, shared by both sides.
  std::vector<uint8_t> kq, vq;
  std::vector<float> k_scales, v_scales;
  std::vector<float> want(q.size());
  if (element != KvElement::kNative) {
    kq.resize(k.size());
    vq.resize(v.size());
    if (element == KvElement::kInt8) {
      k_scales.resize(size_t(slots) * c.num_kv_heads);
      v_scales.resize(size_t(slots) * c.num_kv_heads);
    } else {
      for (int32_t h = 0; h < c.num_kv_heads; ++h) {
        k_scales.push_back(0.01f * (1.0f + 0.25f * h));
        v_scales.push_back(0.005f * (1.0f + 0.25f * h));
      }
    }
    std::vector<int32_t> all(static_cast<size_t>(slots));
    std::iota(all.begin(), all.end(), 0);
    KvWriteQuantParams wp;
    wp.element = element;
    wp.num_tokens = slots;
    wp.num_kv_heads = c.num_kv_heads;
    wp.head_dim = c.head_dim;
    wp.k_row_stride = kv_width;
    wp.v_row_stride = kv_width;
    WriteKvQuantizedReference(wp, k.data(), v.data(), all.data(), kq.data(), vq.data(), k_scales.data(),
                              v_scales.data());
    host.k_scales = k_scales.data();
    host.v_scales = v_scales.data();
    PagedAttentionQuantizedReference(host, q.data(), kq.data(), vq.data(), want.data(), 0, p.num_seqs);
  } else {
    PagedAttentionReference(host, q.data(), k.data(), v.data(), want.data(), 0, p.num_seqs);
  }

  DeviceArray dq(type, q.size()), dout(type, q.size());
  dq.Upload(q);
  DeviceArray dk(type, element == KvElement::kNative ? k.size() : 1), dv(type, element == KvElement::kNative ? v.size() : 1);
  if (element == KvElement::kNative) {
    dk.Upload(k);
    dv.Upload(v);
  }
  DeviceVector<uint8_t> dkq(kq), dvq(vq);
  DeviceVector<float> dks(k_scales), dvs(v_scales);
  DeviceVector<int32_t> d_query_start(b.query_start), d_context(b.context_lens), d_indptr(b.block_indptr),
      d_blocks(b.block_ids), d_row_seq(b.row_seq);
  const DeviceSpans spans(plan);
  p.query_start = d_query_start.data();
  p.context_lens = d_context.data();
  p.block_indptr = d_indptr.data();
  p.block_ids = d_blocks.data();
  p.spans = spans.Rules();
  const void* kc = element == KvElement::kNative ? static_cast<const void*>(dk.data()) : dkq.data();
  const void* vc = element == KvElement::kNative ? static_cast<const void*>(dv.data()) : dvq.data();
  if (element != KvElement::kNative) {
    p.k_scales = dks.data();
    p.v_scales = dvs.data();
  }
  switch (kernel) {
    case Kernel::kDecode: {
      int32_t max_context = 0;
      for (int32_t ctx : b.context_lens) max_context = std::max(max_context, ctx);
      ASSERT_TRUE(SupportsPagedDecodeAttention(p));
      const size_t bytes = PagedDecodeAttentionWorkspaceBytes(p, max_context);
      DeviceArray workspace(ScalarType::kF32, bytes / 4 + 1);
      ASSERT_EQ(LaunchPagedDecodeAttention(type, p, max_context, dq.data(), kc, vc, dout.data(), workspace.data(),
                                           bytes, nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      break;
    }
    case Kernel::kFlashPrefill:
      ASSERT_EQ(SupportsFlashPrefillAttention(type, p), cudaSuccess);
      ASSERT_EQ(LaunchFlashPrefillAttention(type, p, rows, dq.data(), kc, vc, dout.data(), nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      break;
    case Kernel::kGeneral:
      ASSERT_EQ(LaunchPagedAttention(type, p, rows, d_row_seq.data(), dq.data(), kc, vc, dout.data(), nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      break;
  }
  // fp8/int8 caches: both sides see the same bytes, so the kernel's own
  // rounding decides, as for native caches; the flash kernel also rounds
  // dequantized V values to the compute type.
  float tolerance = testing::Tolerance(type);
  if (kernel == Kernel::kFlashPrefill && element != KvElement::kNative) {
    tolerance += testing::DequantizedRoundingTolerance(type);
  }
  EXPECT_LT(testing::RelativeError(dout.Download(), want), tolerance) << unmapped << " blocks unmapped";
}

struct Param {
  ScalarType type;
  KvElement element;
};

class MoaAttentionCudaTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

std::vector<std::pair<int32_t, int32_t>> Decodes(const std::vector<int32_t>& contexts) {
  std::vector<std::pair<int32_t, int32_t>> seqs;
  for (int32_t ctx : contexts) seqs.emplace_back(1, ctx);
  return seqs;
}

TEST_P(MoaAttentionCudaTest, DecodeGroupsOfDifferentSpans) {
  const auto [type, element] = GetParam();
  const std::vector<int32_t> contexts = {1, 17, 64, 300, 601, 700, 2000, 5000};
  for (int32_t group : {1, 3, 4, 8}) {
    for (int32_t head_dim : {64, 128}) {
      RunCase(type, element, Kernel::kDecode, {2 * group, 2, head_dim, 16, Decodes(contexts)},
              1000 + 10 * group + head_dim);
    }
  }
  RunCase(type, element, Kernel::kDecode, {8, 2, 128, 7, Decodes({255, 256, 257, 1023})}, 1100);
}

TEST_P(MoaAttentionCudaTest, GeneralKernelPrefillChunks) {
  const auto [type, element] = GetParam();
  RunCase(type, element, Kernel::kGeneral, {8, 2, 64, 16, {{300, 300}, {40, 900}, {1, 1500}, {17, 620}}}, 1200);
  RunCase(type, element, Kernel::kGeneral, {4, 4, 128, 16, {{129, 700}, {5, 5}}}, 1201);
}

TEST_P(MoaAttentionCudaTest, FlashPrefillVisitsOnlySinkAndBandTiles) {
  const auto [type, element] = GetParam();
  if (type == ScalarType::kF32) GTEST_SKIP() << "the flash kernel computes in fp16 or bf16";
  for (int32_t head_dim : {64, 128}) {
    RunCase(type, element, Kernel::kFlashPrefill,
            {8, 2, head_dim, 16, {{300, 300}, {128, 900}, {1, 2000}, {77, 1500}, {256, 2600}}}, 1300 + head_dim);
    RunCase(type, element, Kernel::kFlashPrefill, {6, 2, head_dim, 16, {{2048, 2048}}}, 1400 + head_dim);
  }
}

// One graph captured at a capacity, replayed as the contexts grow: the spans
// (and the bucket) follow context_lens on the device.
TEST_P(MoaAttentionCudaTest, DecodeGraphReplaysWithNewContexts) {
  const auto [type, element] = GetParam();
  if (element != KvElement::kNative) GTEST_SKIP() << "graph replay is checked on native caches";
  const int32_t max_context = 1200, block_size = 16, num_heads = 8, num_kv_heads = 2, head_dim = 128;
  std::mt19937 rng(1500);
  const SpanPlan plan(num_heads, rng);
  const testing::ScatteredBatch b =
      testing::MakeScatteredBatch({{1, max_context}, {1, max_context}, {1, max_context}}, block_size, rng);
  const int64_t width = int64_t(num_heads) * head_dim;
  const int64_t slots = int64_t(b.num_blocks) * block_size * num_kv_heads * head_dim;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(3 * static_cast<size_t>(width)), k(static_cast<size_t>(slots)), v(static_cast<size_t>(slots));
  for (auto& x : q) x = normal(rng);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  DeviceArray dq(type, q.size()), dk(type, k.size()), dv(type, v.size()), dout(type, q.size());
  dq.Upload(q);
  dk.Upload(k);
  dv.Upload(v);
  DeviceVector<int32_t> d_context(b.context_lens), d_indptr(b.block_indptr), d_blocks(b.block_ids);
  const DeviceSpans spans(plan);
  PagedAttentionParams p;
  p.num_seqs = 3;
  p.num_heads = num_heads;
  p.num_kv_heads = num_kv_heads;
  p.head_dim = head_dim;
  p.block_size = block_size;
  p.scale = 1.0f / std::sqrt(float(head_dim));
  p.q_row_stride = width;
  p.out_row_stride = width;
  p.context_lens = d_context.data();
  p.block_indptr = d_indptr.data();
  p.block_ids = d_blocks.data();
  p.spans = spans.Rules();
  const size_t bytes = PagedDecodeAttentionWorkspaceBytes(p, max_context);
  DeviceArray workspace(ScalarType::kF32, bytes / 4 + 1);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(LaunchPagedDecodeAttention(type, p, max_context, dq.data(), dk.data(), dv.data(), dout.data(),
                                       workspace.data(), bytes, stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  std::vector<int32_t> query_start = {0, 1, 2, 3};
  for (const std::vector<int32_t>& contexts :
       {std::vector<int32_t>{5, 900, 300}, {1200, 1, 601}, {256, 600, 1199}}) {
    ASSERT_EQ(cudaMemcpy(const_cast<int32_t*>(d_context.data()), contexts.data(), contexts.size() * 4,
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    PagedAttentionParams host = p;
    host.query_start = query_start.data();
    host.context_lens = contexts.data();
    host.block_indptr = b.block_indptr.data();
    host.block_ids = b.block_ids.data();
    host.spans = plan.Host();
    std::vector<float> rounded_q = q, rounded_k = k, rounded_v = v;
    for (auto& x : rounded_q) x = testing::Round(type, x);
    for (auto& x : rounded_k) x = testing::Round(type, x);
    for (auto& x : rounded_v) x = testing::Round(type, x);
    std::vector<float> want(q.size());
    PagedAttentionReference(host, rounded_q.data(), rounded_k.data(), rounded_v.data(), want.data(), 0, 3);
    EXPECT_LT(testing::RelativeError(dout.Download(), want), testing::Tolerance(type))
        << contexts[0] << " " << contexts[1] << " " << contexts[2];
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_P(MoaAttentionCudaTest, SpansWithASlidingWindowAreRefused) {
  const auto [type, element] = GetParam();
  std::mt19937 rng(1600);
  const SpanPlan plan(4, rng);
  const DeviceSpans spans(plan);
  PagedAttentionParams p;
  p.num_seqs = 1;
  p.num_heads = 4;
  p.num_kv_heads = 4;
  p.head_dim = 64;
  p.block_size = 16;
  p.sliding_window = 32;
  p.spans = spans.Rules();
  EXPECT_EQ(LaunchPagedDecodeAttention(type, p, 64, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr),
            cudaErrorInvalidValue);
  EXPECT_NE(SupportsFlashPrefillAttention(type, p), cudaSuccess);
  EXPECT_EQ(LaunchPagedAttention(type, p, 1, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr),
            cudaErrorInvalidValue);
}

std::vector<Param> AllParams() {
  std::vector<Param> params;
  for (ScalarType type : {ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16}) {
    for (KvElement element : {KvElement::kNative, KvElement::kFp8E4M3, KvElement::kInt8}) params.push_back({type, element});
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(TypesAndCaches, MoaAttentionCudaTest, ::testing::ValuesIn(AllParams()),
                         [](const auto& info) {
                           return std::string(testing::Name(info.param.type)) + "_" +
                                  KvElementName(info.param.element);
                         });

}  // namespace
}  // namespace tern::kernels
