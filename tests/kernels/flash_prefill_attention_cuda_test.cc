// The tensor-core prefill attention against the CPU reference on fresh random
// inputs, over fp16 and bf16 with native, fp8 and int8 caches: one-token
// queries, pages exactly full, chunked prefill over prior context, many
// sequences of unequal length, query-tile edges, a 2048-token prompt, GQA
// ratios 1/4/8, head dims 64/80/96/128, sliding windows, a launch captured
// in a CUDA graph and replayed with new context lengths, and the shapes it
// must refuse. Quantized caches are filled by the reference append
// (WriteKvQuantizedReference), and the reference reads the same bytes and
// scales (PagedAttentionQuantizedReference). MoA spans over every cache:
// moa_attention_cuda_test.cc.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "kernels/attention/flash_prefill_attention.h"
#include "kernels/attention/kv_quant.h"
#include "kernels/attention/paged_attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

struct Shape {
  int32_t num_heads, num_kv_heads, head_dim, block_size;
  std::vector<std::pair<int32_t, int32_t>> seqs;  // (query rows, context after the step)
  int32_t sliding_window = 0;
  int32_t q_pad = 0;  // extra elements per query row, as when q is a slice of a fused QKV row
};

// Normwise tolerance against the reference. Quantized caches: both sides read
// the same codes and scales; the kernel keeps K's codes exact and rounds each
// dequantized V value to the compute type before the product.
float FlashTolerance(ScalarType type, KvElement element) {
  if (element == KvElement::kNative) return testing::Tolerance(type);
  return testing::Tolerance(type) + testing::DequantizedRoundingTolerance(type);
}

// fp8 head scales that differ per head and are not 1, so a kernel that
// ignores or mixes them up fails (N(0, 1) values stay below 448 * scale up to
// about 4.5 sigma; rarer ones saturate alike on both sides).
std::vector<float> Fp8HeadScales(int32_t num_kv_heads, float base) {
  std::vector<float> scales;
  for (int32_t h = 0; h < num_kv_heads; ++h) scales.push_back(base * (1.0f + 0.25f * float(h % 4)));
  return scales;
}

// One layer's cache on the device, of `element`: native values of `type`,
// or the reference append's bytes and scales of the same values.
struct DeviceCache {
  DeviceCache(ScalarType type, KvElement element, int32_t num_kv_heads, int32_t head_dim, std::vector<float>& k,
              std::vector<float>& v)
      : native_k(type, element == KvElement::kNative ? k.size() : 1),
        native_v(type, element == KvElement::kNative ? v.size() : 1) {
    if (element == KvElement::kNative) {
      native_k.Upload(k);  // rounds k and v to the type, so the reference sees the GPU's inputs
      native_v.Upload(v);
      return;
    }
    for (auto& x : k) x = testing::Round(type, x);  // the values a model of `type` would append
    for (auto& x : v) x = testing::Round(type, x);
    const int64_t width = int64_t(num_kv_heads) * head_dim;
    const int64_t slots = int64_t(k.size()) / width;
    codes_k.assign(k.size(), 0);
    codes_v.assign(v.size(), 0);
    if (element == KvElement::kInt8) {
      scales_k.assign(size_t(slots * num_kv_heads), 0.0f);
      scales_v.assign(size_t(slots * num_kv_heads), 0.0f);
    } else {
      scales_k = Fp8HeadScales(num_kv_heads, 0.01f);
      scales_v = Fp8HeadScales(num_kv_heads, 0.008f);
    }
    std::vector<int32_t> all(static_cast<size_t>(slots));
    std::iota(all.begin(), all.end(), 0);
    KvWriteQuantParams wp;
    wp.element = element;
    wp.num_tokens = slots;
    wp.num_kv_heads = num_kv_heads;
    wp.head_dim = head_dim;
    wp.k_row_stride = width;
    wp.v_row_stride = width;
    WriteKvQuantizedReference(wp, k.data(), v.data(), all.data(), codes_k.data(), codes_v.data(), scales_k.data(),
                              scales_v.data());
    quantized_k.emplace(codes_k);
    quantized_v.emplace(codes_v);
    device_scales_k.emplace(scales_k);
    device_scales_v.emplace(scales_v);
  }
  DeviceArray native_k, native_v;
  std::vector<uint8_t> codes_k, codes_v;
  std::vector<float> scales_k, scales_v;
  std::optional<DeviceVector<uint8_t>> quantized_k, quantized_v;
  std::optional<DeviceVector<float>> device_scales_k, device_scales_v;

  const void* k() { return quantized_k ? static_cast<const void*>(quantized_k->data()) : native_k.data(); }
  const void* v() { return quantized_v ? static_cast<const void*>(quantized_v->data()) : native_v.data(); }
  // Points host (reference) and device parameters at this cache's scales.
  void SetScales(PagedAttentionParams* host, PagedAttentionParams* device) const {
    if (!device_scales_k) return;
    host->k_scales = scales_k.data();
    host->v_scales = scales_v.data();
    device->k_scales = device_scales_k->data();
    device->v_scales = device_scales_v->data();
  }
  void Reference(const PagedAttentionParams& host, const std::vector<float>& q, const std::vector<float>& k,
                 const std::vector<float>& v, std::vector<float>* out) const {
    if (host.kv_element == KvElement::kNative) {
      PagedAttentionReference(host, q.data(), k.data(), v.data(), out->data(), 0, host.num_seqs);
    } else {
      PagedAttentionQuantizedReference(host, q.data(), codes_k.data(), codes_v.data(), out->data(), 0,
                                       host.num_seqs);
    }
  }
};

// Gives head rows of slots 1 and 2 the values a quantizer must handle: an
// all-zero row (int8 scale 0) and an outlier that saturates fp8 (448 codes:
// 4.48 for K's first head scale, 3.58 for V's) and coarsens its int8 row.
// The outliers stay small, so the normwise error keeps its sensitivity.
void AddQuantizerEdges(int64_t kv_width, int32_t head_dim, std::vector<float>* k, std::vector<float>* v) {
  if (int64_t(k->size()) < 3 * kv_width) return;
  std::fill(k->begin() + kv_width, k->begin() + kv_width + head_dim, 0.0f);
  std::fill(v->begin() + 2 * kv_width, v->begin() + 2 * kv_width + head_dim, 0.0f);
  (*v)[size_t(kv_width + 3)] = 6.0f;
  (*k)[size_t(2 * kv_width + 1)] = -8.0f;
}

void RunCase(ScalarType type, KvElement element, const Shape& shape, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << testing::Name(type) << "/" << KvElementName(element) << " heads "
                                    << shape.num_heads << "/" << shape.num_kv_heads << " d " << shape.head_dim
                                    << " block " << shape.block_size << " window " << shape.sliding_window
                                    << " seed " << seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int32_t num_seqs = int32_t(shape.seqs.size());
  const testing::ScatteredBatch batch = testing::MakeScatteredBatch(shape.seqs, shape.block_size, rng);
  const auto& [query_start, context_lens, block_indptr, block_ids, row_seq, num_blocks] = batch;
  const int32_t rows = query_start.back();
  const int64_t width = int64_t(shape.num_heads) * shape.head_dim;
  const int64_t kv_width = int64_t(shape.num_kv_heads) * shape.head_dim;
  const int64_t q_stride = width + shape.q_pad;
  const int64_t cache_elems = int64_t(num_blocks) * shape.block_size * kv_width;
  std::vector<float> q(size_t(rows) * q_stride), k(cache_elems), v(cache_elems);
  for (auto& x : q) x = normal(rng);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  if (element != KvElement::kNative) AddQuantizerEdges(kv_width, shape.head_dim, &k, &v);

  DeviceArray dq(type, q.size()), dout(type, size_t(rows) * width);
  dq.Upload(q);
  DeviceCache cache(type, element, shape.num_kv_heads, shape.head_dim, k, v);
  // All-ones bits are NaN in fp16 and bf16: any row the kernel skips fails the check below.
  ASSERT_EQ(cudaMemset(dout.data(), 0xFF, size_t(rows) * width * testing::ElementBytes(type)), cudaSuccess);
  DeviceVector<int32_t> d_query_start(query_start), d_context(context_lens), d_indptr(block_indptr),
      d_blocks(block_ids);

  PagedAttentionParams p;
  p.num_seqs = num_seqs;
  p.num_heads = shape.num_heads;
  p.num_kv_heads = shape.num_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_size = shape.block_size;
  p.scale = 1.0f / std::sqrt(float(shape.head_dim));
  p.sliding_window = shape.sliding_window;
  p.q_row_stride = q_stride;
  p.out_row_stride = width;
  p.kv_element = element;
  PagedAttentionParams host = p;
  host.query_start = query_start.data();
  host.context_lens = context_lens.data();
  host.block_indptr = block_indptr.data();
  host.block_ids = block_ids.data();
  cache.SetScales(&host, &p);
  std::vector<float> want(size_t(rows) * width);
  cache.Reference(host, q, k, v, &want);

  p.query_start = d_query_start.data();
  p.context_lens = d_context.data();
  p.block_indptr = d_indptr.data();
  p.block_ids = d_blocks.data();
  ASSERT_EQ(SupportsFlashPrefillAttention(type, p), cudaSuccess);
  ASSERT_EQ(LaunchFlashPrefillAttention(type, p, rows, dq.data(), cache.k(), cache.v(), dout.data(), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (rows == 0) return;
  const std::vector<float> got = dout.Download();
  size_t non_finite = 0;
  for (float x : got) non_finite += std::isfinite(x) ? 0 : 1;
  EXPECT_EQ(non_finite, 0u);
  EXPECT_LT(testing::RelativeError(got, want), FlashTolerance(type, element));
}

struct Param {
  ScalarType type;
  KvElement element;
};

class FlashPrefillAttentionCudaTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
  ScalarType type() const { return GetParam().type; }
  KvElement element() const { return GetParam().element; }
  void Run(const Shape& shape, uint32_t seed) const { RunCase(type(), element(), shape, seed); }
};

TEST_P(FlashPrefillAttentionCudaTest, OneTokenQueries) {
  Run({8, 2, 128, 16, {{1, 1}, {1, 17}, {1, 16}, {1, 300}}}, 1);
}

TEST_P(FlashPrefillAttentionCudaTest, PagesExactlyFull) {
  Run({4, 4, 64, 16, {{16, 16}}}, 2);
  Run({4, 2, 128, 16, {{64, 64}, {32, 128}}}, 3);
}

TEST_P(FlashPrefillAttentionCudaTest, ChunkedPrefillOverPriorContext) {
  Run({8, 2, 128, 16, {{37, 100}, {64, 200}, {20, 85}, {130, 131}}}, 4);
  // A chunk that starts exactly at a page edge after a cached prefix of whole pages.
  Run({4, 1, 64, 16, {{48, 112}, {16, 32}}}, 40);
}

TEST_P(FlashPrefillAttentionCudaTest, ManySequencesOfUnequalLength) {
  std::mt19937 rng(type() == ScalarType::kF16 ? 5 : 6);
  std::uniform_int_distribution<int32_t> rows(1, 200), prior(0, 150);
  Shape shape{8, 4, 64, 16, {}};
  for (int i = 0; i < 14; ++i) {
    const int32_t n = rows(rng);
    shape.seqs.push_back({n, n + (i % 3 == 0 ? 0 : prior(rng))});
  }
  shape.seqs.push_back({0, 10});  // a sequence with no query rows this step
  shape.seqs.push_back({1, 1});
  Run(shape, 7);
}

TEST_P(FlashPrefillAttentionCudaTest, QueryTileEdges) {
  for (int32_t n : {63, 64, 65, 127, 128, 129, 255, 256, 257}) Run({4, 1, 64, 16, {{n, n}}}, 8 + n);
  Run({4, 1, 128, 16, {{63, 63}, {64, 70}, {65, 65}, {127, 200}, {129, 129}, {256, 300}}}, 9);
}

TEST_P(FlashPrefillAttentionCudaTest, PromptOf2048Tokens) {
  Run({4, 1, 128, 16, {{2048, 2048}}}, 10);
}

TEST_P(FlashPrefillAttentionCudaTest, GqaRatiosAndHeadDims) {
  for (int32_t group : {1, 4, 8}) {
    for (int32_t head_dim : {64, 80, 96, 128}) {
      Run({8, 8 / group, head_dim, 16, {{100, 100}, {1, 40}, {70, 90}}}, 11 + group + head_dim);
    }
  }
}

TEST_P(FlashPrefillAttentionCudaTest, OtherPageSizesAndStridedQueries) {
  Run({4, 2, 64, 8, {{50, 77}, {9, 9}}, 0, 2 * 2 * 64}, 12);
  Run({4, 4, 128, 32, {{96, 96}, {33, 100}}, 0, 8}, 13);
  Run({2, 1, 64, 4, {{70, 75}}}, 14);
  Run({4, 2, 96, 7, {{40, 61}, {14, 14}}}, 41);  // pages that are not a power of two
}

TEST_P(FlashPrefillAttentionCudaTest, SlidingWindow) {
  Run({8, 2, 64, 16, {{5, 70}, {1, 40}, {100, 300}, {64, 64}}, 24}, 15);
  Run({4, 1, 128, 16, {{300, 300}, {129, 400}}, 100}, 16);
  Run({4, 4, 64, 16, {{200, 200}}, 64}, 17);
}

TEST_P(FlashPrefillAttentionCudaTest, EmptyBatchIsANoOp) {
  Run({4, 1, 64, 8, {}}, 18);
}

// One launch captured in a CUDA graph and replayed as the cache grows: the
// same query rows continue longer cached prefixes, read from context_lens on
// the device at each replay.
TEST_P(FlashPrefillAttentionCudaTest, GraphReplaysWithNewContexts) {
  const int32_t num_heads = 8, num_kv_heads = 2, head_dim = 128, block_size = 16, max_context = 600;
  const std::vector<int32_t> chunk = {100, 37, 1};
  std::mt19937 rng(50);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const testing::ScatteredBatch b =
      testing::MakeScatteredBatch({{chunk[0], max_context}, {chunk[1], max_context}, {chunk[2], max_context}},
                                  block_size, rng);
  const int32_t rows = b.rows();
  const int64_t width = int64_t(num_heads) * head_dim;
  const int64_t cache_elems = int64_t(b.num_blocks) * block_size * num_kv_heads * head_dim;
  std::vector<float> q(size_t(rows) * width), k(cache_elems), v(cache_elems);
  for (auto& x : q) x = normal(rng);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  DeviceArray dq(type(), q.size()), dout(type(), q.size());
  dq.Upload(q);
  DeviceCache cache(type(), element(), num_kv_heads, head_dim, k, v);
  DeviceVector<int32_t> d_query_start(b.query_start), d_context(b.context_lens), d_indptr(b.block_indptr),
      d_blocks(b.block_ids);
  PagedAttentionParams p;
  p.num_seqs = 3;
  p.num_heads = num_heads;
  p.num_kv_heads = num_kv_heads;
  p.head_dim = head_dim;
  p.block_size = block_size;
  p.scale = 1.0f / std::sqrt(float(head_dim));
  p.q_row_stride = width;
  p.out_row_stride = width;
  p.kv_element = element();
  PagedAttentionParams host = p;
  host.query_start = b.query_start.data();
  host.block_indptr = b.block_indptr.data();
  host.block_ids = b.block_ids.data();
  cache.SetScales(&host, &p);
  p.query_start = d_query_start.data();
  p.context_lens = d_context.data();
  p.block_indptr = d_indptr.data();
  p.block_ids = d_blocks.data();

  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(LaunchFlashPrefillAttention(type(), p, rows, dq.data(), cache.k(), cache.v(), dout.data(), stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (const std::vector<int32_t>& contexts :
       {std::vector<int32_t>{100, 37, 1}, {260, 300, 16}, {max_context, 129, max_context}}) {
    ASSERT_EQ(cudaMemcpy(d_context.mutable_data(), contexts.data(), contexts.size() * sizeof(int32_t),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    host.context_lens = contexts.data();
    std::vector<float> want(q.size());
    cache.Reference(host, q, k, v, &want);
    EXPECT_LT(testing::RelativeError(dout.Download(), want), FlashTolerance(type(), element()))
        << contexts[0] << " " << contexts[1] << " " << contexts[2];
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(FlashPrefillAttentionSupportTest, RefusesWhatItCannotRun) {
  PagedAttentionParams p;
  p.num_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.block_size = 16;
  p.q_row_stride = 8 * 128;
  p.out_row_stride = 8 * 128;
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, p), cudaSuccess);
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kBF16, p), cudaSuccess);
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF32, p), cudaErrorNotSupported);
  for (KvElement element : {KvElement::kFp8E4M3, KvElement::kInt8}) {
    PagedAttentionParams quantized = p;
    quantized.kv_element = element;
    EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, quantized), cudaSuccess) << KvElementName(element);
    EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kBF16, quantized), cudaSuccess) << KvElementName(element);
    EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF32, quantized), cudaErrorNotSupported);
    // A quantized cache without its scales is refused before anything runs.
    quantized.num_seqs = 1;
    EXPECT_EQ(LaunchFlashPrefillAttention(ScalarType::kF16, quantized, 1, nullptr, nullptr, nullptr, nullptr, nullptr),
              cudaErrorInvalidValue)
        << KvElementName(element);
  }
  PagedAttentionParams unknown_element = p;
  unknown_element.kv_element = static_cast<KvElement>(7);
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, unknown_element), cudaErrorNotSupported);
  for (int32_t head_dim : {16, 72, 256}) {
    PagedAttentionParams other = p;
    other.head_dim = head_dim;
    other.q_row_stride = other.out_row_stride = 8 * head_dim;
    EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, other), cudaErrorNotSupported) << head_dim;
    EXPECT_EQ(LaunchFlashPrefillAttention(ScalarType::kF16, other, 1, nullptr, nullptr, nullptr, nullptr, nullptr),
              cudaErrorNotSupported);
  }
  PagedAttentionParams uneven = p;
  uneven.num_kv_heads = 3;
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, uneven), cudaErrorNotSupported);
  PagedAttentionParams odd_stride = p;
  odd_stride.q_row_stride = 8 * 128 + 4;
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, odd_stride), cudaErrorNotSupported);
}

TEST(FlashPrefillAttentionSupportTest, TileCountCoversEverySplit) {
  // Every sequence needs ceil(n / tile) tiles; the count grants each at least that.
  std::mt19937 rng(19);
  std::uniform_int_distribution<int32_t> len(0, 300), count(1, 20);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t seqs = count(rng);
    int64_t rows = 0, needed = 0;
    int64_t granted = 0;
    for (int32_t s = 0; s < seqs; ++s) {
      const int32_t n = len(rng);
      const int64_t first = rows / kFlashQueryTile + s;
      rows += n;
      const int64_t next = rows / kFlashQueryTile + s + 1;
      EXPECT_GE(next - first, (n + kFlashQueryTile - 1) / kFlashQueryTile);
      needed += (n + kFlashQueryTile - 1) / kFlashQueryTile;
      granted = next;
    }
    EXPECT_EQ(granted, FlashPrefillTileCount(rows, seqs));
    EXPECT_GE(granted, needed);
  }
}

INSTANTIATE_TEST_SUITE_P(TypesAndCaches, FlashPrefillAttentionCudaTest,
                         ::testing::Values(Param{ScalarType::kF16, KvElement::kNative},
                                           Param{ScalarType::kBF16, KvElement::kNative},
                                           Param{ScalarType::kF16, KvElement::kFp8E4M3},
                                           Param{ScalarType::kBF16, KvElement::kFp8E4M3},
                                           Param{ScalarType::kF16, KvElement::kInt8},
                                           Param{ScalarType::kBF16, KvElement::kInt8}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           const std::string type = testing::Name(info.param.type);
                           return info.param.element == KvElement::kNative
                                      ? type
                                      : type + "_" + KvElementName(info.param.element);
                         });

}  // namespace
}  // namespace tern::kernels
