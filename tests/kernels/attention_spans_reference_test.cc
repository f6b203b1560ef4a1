// MoA per-head spans (kernels/attention/attention_spans.h) and the CPU
// reference attention over them: buckets, clamping, band starts that never
// move back within a bucket for 0 <= beta <= 1 (exhaustively), and the
// reference's output equal to a plain softmax over exactly each head's sink
// and band keys, with the blocks no query reads unmapped (-1).
#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/attention/attention_spans.h"
#include "kernels/attention/paged_attention.h"

namespace tern::kernels {
namespace {

struct Rules {
  std::vector<int32_t> max_length, sinks;
  std::vector<double> alphas, betas;
  AttentionSpanRules Get() const {
    return {int32_t(max_length.size()), max_length.data(), sinks.data(), alphas.data(), betas.data()};
  }
};

TEST(AttentionSpansTest, BucketsSpansAndSinks) {
  // Two heads; bucket 0 covers n <= 100, bucket 1 the rest.
  const Rules r{{100, INT32_MAX}, {4, 0}, {10.0, -20.0, 50.0, 0.0}, {0.0, 0.5, 0.25, 1.0}};
  const AttentionSpanRules rules = r.Get();
  EXPECT_EQ(rules.Bucket(1), 0);
  EXPECT_EQ(rules.Bucket(100), 0);
  EXPECT_EQ(rules.Bucket(101), 1);
  EXPECT_EQ(rules.Span(2, 0, 50), 10);        // alpha alone
  EXPECT_EQ(rules.Span(2, 0, 5), 5);          // never more than n
  EXPECT_EQ(rules.Span(2, 1, 30), 1);         // -20 + 15 < 1: the query's own key
  EXPECT_EQ(rules.Span(2, 1, 99), 29);        // floor(-20 + 49.5)
  EXPECT_EQ(rules.Span(2, 0, 200), 100);      // 50 + 0.25 * 200
  EXPECT_EQ(rules.Span(2, 1, 200), 200);      // beta 1: the whole context
  EXPECT_EQ(rules.BandStart(2, 0, 200), 100);
  EXPECT_EQ(rules.SinkEnd(0, 3), 3);
  EXPECT_EQ(rules.SinkEnd(0, 300), 4);
  EXPECT_TRUE(rules.Attends(2, 0, 199, 3));    // sink
  EXPECT_FALSE(rules.Attends(2, 0, 199, 50));  // between sink and band
  EXPECT_TRUE(rules.Attends(2, 0, 199, 100));  // band
}

// floor(alpha + beta (n + 1)) - floor(alpha + beta n) <= 1 for beta <= 1, so
// n - span(n) never decreases within a bucket; checked over every n.
TEST(AttentionSpansTest, BandStartNeverMovesBackWithinABucket) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> alpha(-3000.0, 3000.0), beta(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    const Rules r{{INT32_MAX}, {0}, {alpha(rng)}, {trial % 10 == 0 ? 1.0 : beta(rng)}};
    const AttentionSpanRules rules = r.Get();
    int32_t previous = 0;
    for (int32_t n = 1; n <= 20000; ++n) {
      const int32_t start = rules.BandStart(1, 0, n);
      ASSERT_GE(start, previous) << "alpha " << r.alphas[0] << " beta " << r.betas[0] << " n " << n;
      ASSERT_LE(start, n - 1);
      previous = start;
    }
  }
}

// A softmax over exactly the keys the rules give, in double.
std::vector<float> Naive(const AttentionSpanRules& rules, int32_t heads, int32_t kv_heads, int32_t dim,
                         const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                         int32_t n_q, int32_t context) {
  std::vector<float> out(size_t(n_q) * heads * dim);
  for (int32_t i = 0; i < n_q; ++i) {
    const int32_t position = context - n_q + i;
    for (int32_t h = 0; h < heads; ++h) {
      const int32_t kvh = h / (heads / kv_heads);
      std::vector<double> w;
      std::vector<int32_t> keys;
      for (int32_t j = 0; j <= position; ++j) {
        if (!rules.Attends(heads, h, position, j)) continue;
        double dot = 0;
        for (int32_t d = 0; d < dim; ++d) {
          dot += double(q[(size_t(i) * heads + h) * dim + d]) * k[(size_t(j) * kv_heads + kvh) * dim + d];
        }
        keys.push_back(j);
        w.push_back(dot / std::sqrt(double(dim)));
      }
      const double m = *std::max_element(w.begin(), w.end());
      double sum = 0;
      for (auto& x : w) sum += (x = std::exp(x - m));
      for (int32_t d = 0; d < dim; ++d) {
        double acc = 0;
        for (size_t t = 0; t < keys.size(); ++t) acc += w[t] / sum * v[(size_t(keys[t]) * kv_heads + kvh) * dim + d];
        out[(size_t(i) * heads + h) * dim + d] = float(acc);
      }
    }
  }
  return out;
}

TEST(AttentionSpansTest, ReferenceAttendsExactlyEachHeadsSinkAndBand) {
  const int32_t heads = 6, kv_heads = 2, dim = 16, block_size = 8, context = 300, n_q = 40;
  // Heads of one group differ: sinks 0..16, bands constant or growing.
  const Rules r{{200, INT32_MAX},
                {0, 4, 16, 4, 8, 0},
                {20, 5, 40, -10, 60, 2, 30, 10, 50, 0, 80, 3},
                {0.0, 0.1, 0.0, 0.3, 0.05, 0.0, 0.1, 0.2, 0.0, 0.25, 0.0, 0.5}};
  const AttentionSpanRules rules = r.Get();
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(size_t(n_q) * heads * dim), k(size_t(context) * kv_heads * dim), v(k.size());
  for (auto& x : q) x = normal(rng);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  // The cache: logical block b at physical block b + 1 (block 0 unused), and
  // blocks no query of the step reads unmapped.
  const int32_t num_blocks = (context + block_size - 1) / block_size;
  std::vector<float> k_cache(size_t(num_blocks + 1) * block_size * kv_heads * dim, NAN), v_cache = k_cache;
  std::copy(k.begin(), k.end(), k_cache.begin() + size_t(block_size) * kv_heads * dim);
  std::copy(v.begin(), v.end(), v_cache.begin() + size_t(block_size) * kv_heads * dim);
  std::vector<int32_t> block_ids(num_blocks);
  std::iota(block_ids.begin(), block_ids.end(), 1);
  int32_t band = context, sink = 0;
  for (int32_t h = 0; h < heads; ++h) {
    sink = std::max(sink, r.sinks[h]);
    for (int32_t n = context - n_q + 1; n <= context; ++n) band = std::min(band, rules.BandStart(heads, h, n));
  }
  int32_t unmapped = 0;
  for (int32_t b = (sink + block_size - 1) / block_size; (b + 1) * block_size <= band; ++b, ++unmapped) block_ids[b] = -1;
  EXPECT_GT(unmapped, 5);
  const std::vector<int32_t> query_start = {0, n_q}, context_lens = {context}, block_indptr = {0, num_blocks};
  PagedAttentionParams p;
  p.num_seqs = 1;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = dim;
  p.block_size = block_size;
  p.scale = 1.0f / std::sqrt(float(dim));
  p.query_start = query_start.data();
  p.context_lens = context_lens.data();
  p.block_indptr = block_indptr.data();
  p.block_ids = block_ids.data();
  p.q_row_stride = heads * dim;
  p.out_row_stride = heads * dim;
  p.spans = rules;
  std::vector<float> got(q.size());
  PagedAttentionReference(p, q.data(), k_cache.data(), v_cache.data(), got.data(), 0, 1);
  const std::vector<float> want = Naive(rules, heads, kv_heads, dim, q, k, v, n_q, context);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5f) << i;

  // A band as wide as the context is dense attention.
  const Rules all{{INT32_MAX}, std::vector<int32_t>(heads, 0), std::vector<double>(heads, 0.0),
                  std::vector<double>(heads, 1.0)};
  std::iota(block_ids.begin(), block_ids.end(), 1);
  p.spans = all.Get();
  PagedAttentionReference(p, q.data(), k_cache.data(), v_cache.data(), got.data(), 0, 1);
  p.spans = AttentionSpanRules{};
  std::vector<float> dense(q.size());
  PagedAttentionReference(p, q.data(), k_cache.data(), v_cache.data(), dense.data(), 0, 1);
  EXPECT_EQ(got, dense);
}

}  // namespace
}  // namespace tern::kernels
