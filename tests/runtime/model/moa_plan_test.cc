// MoA plans (runtime/model/moa_plan.h): thu-nics/MoA's alphas/betas files and
// tern's bucketed form, every refusal naming the file and the field, the
// fit checks against a model, the attention scheme spelling, density, and
// the plan's KV retention.
#include "runtime/model/moa_plan.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

HfConfig Model(int64_t layers, int64_t heads) {
  HfConfig c;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = heads / 2;
  c.max_position_embeddings = 4096;
  return c;
}

// A tern plan of 2 layers x 2 heads with the given buckets (JSON text).
std::string TernPlan(const std::string& buckets, const std::string& extra = "") {
  return R"({"format": "tern.moa.v1", "num_layers": 2, "num_heads": 2, "sinks": [[4, 0], [16, 8]],)" + extra +
         R"( "buckets": )" + buckets + "}";
}

TEST(MoaPlanTest, ReadsMoaAlphasAndBetasAsSink64AndTheRestAsBand) {
  const std::string text = R"({"alphas": [[1024.0, -1024.0, 0.0], [2048.0, 64.0, 0.0]],
                               "betas": [[0.0, 0.5, 0.25], [0.0, 0.0, 1.0]]})";
  auto plan = ParseMoaPlan(text, "plan.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->format, "moa");
  EXPECT_EQ(plan->num_layers, 2);
  EXPECT_EQ(plan->num_heads, 3);
  EXPECT_EQ(plan->num_buckets(), 1);
  EXPECT_EQ(plan->SinkEnd(0, 0, 5000), 64);
  // Layer 0 head 0: 1024 tokens in all, 64 of them the sink: a band of 960.
  EXPECT_EQ(plan->BandStart(0, 0, 5000), 5000 - 960);
  // Layer 0 head 1: -1024 + 0.5 N - 64; below 1 token at short lengths.
  EXPECT_EQ(plan->BandStart(0, 1, 1000), 999);
  EXPECT_EQ(plan->BandStart(0, 1, 4000), 4000 - (-1024 - 64 + 2000));
  // Layer 1 head 2: beta 1: the band N - 64 starts where the sink ends, the whole context.
  EXPECT_EQ(plan->BandStart(1, 2, 3000), 64);
  EXPECT_TRUE(CheckMoaPlanFits(*plan, Model(2, 3), 4096).ok());
}

TEST(MoaPlanTest, ReadsTernBucketsAndSinks) {
  auto plan = ParseMoaPlan(TernPlan(R"([{"max_length": 1024, "alphas": [[100, 10], [0, 64]], "betas": [[0, 0.5], [0.25, 0]]},
                                        {"alphas": [[200, 10], [0, 64]], "betas": [[0, 0.5], [0.5, 0]]}])",
                                    R"("reference_length": 2048,)"),
                           "p.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->format, "tern");
  EXPECT_EQ(plan->reference_length, 2048);
  EXPECT_EQ(plan->bucket_max_length, (std::vector<int32_t>{1024, INT32_MAX}));
  EXPECT_EQ(plan->SinkEnd(1, 0, 3000), 16);
  EXPECT_EQ(plan->BandStart(0, 0, 1024), 1024 - 100);
  EXPECT_EQ(plan->BandStart(0, 0, 1025), 1025 - 200);  // the next bucket's wider band
  EXPECT_EQ(plan->BandStart(1, 0, 2000), 1000);
  EXPECT_TRUE(CheckMoaPlanFits(*plan, Model(2, 2), 4096).ok());
  // Density at 2000: (sink + band) / 2000 averaged over the four heads.
  const double want = ((4 + 200) + (0 + 1010) + (16 + 1000) + (8 + 64)) / (4.0 * 2000);
  EXPECT_NEAR(plan->Density(2000), want, 1e-12);
}

void ExpectRefused(const std::string& text, const std::string& field) {
  auto plan = ParseMoaPlan(text, "bad.json");
  ASSERT_FALSE(plan.ok()) << text;
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("bad.json"), absl::string_view::npos) << plan.status();
  EXPECT_NE(plan.status().message().find(field), absl::string_view::npos) << plan.status();
}

TEST(MoaPlanTest, RefusesMalformedPlansNamingTheField) {
  const std::string ok_bucket = R"({"alphas": [[1, 1], [1, 1]], "betas": [[0, 0], [0, 0]]})";
  ExpectRefused("[1, 2]", "top level");
  ExpectRefused("{", "not valid JSON");
  ExpectRefused(R"({"alphas": [[1]], "betas": [[0]], "sinks": 3})", "sinks");
  ExpectRefused(R"({"alphas": [[1, 2]], "betas": [[0]]})", "betas[0]");
  ExpectRefused(R"({"alphas": [[1]], "betas": [[-0.5]]})", "betas[0][0]");
  ExpectRefused(R"({"alphas": [[1]], "betas": [[1.5]]})", "betas[0][0]");
  ExpectRefused(R"({"alphas": [["x"]], "betas": [[0]]})", "alphas[0][0]");
  ExpectRefused(TernPlan("[" + ok_bucket + "]", R"("colour": 1,)"), "colour");
  ExpectRefused(R"({"format": "tern.moa.v2", "num_layers": 1, "num_heads": 1, "sinks": 0, "buckets": []})", "format");
  ExpectRefused(TernPlan("[]"), "buckets");
  ExpectRefused(TernPlan(R"([{"max_length": 100, "alphas": [[1, 1], [1, 1]], "betas": [[0, 0], [0, 0]]},
                             {"max_length": 50, "alphas": [[1, 1], [1, 1]], "betas": [[0, 0], [0, 0]]}])"),
                "buckets[1].max_length");
  ExpectRefused(TernPlan("[" + ok_bucket + ", " + ok_bucket + "]"), "buckets[0].max_length");
  ExpectRefused(TernPlan(R"([{"alphas": [[1, 1], [1, 1]], "betas": [[0, 0], [0, 0]], "gamma": 1}])"),
                "buckets[0].gamma");
  ExpectRefused(TernPlan(R"([{"alphas": [[1, 1]], "betas": [[0, 0], [0, 0]]}])"), "buckets[0].alphas");
  ExpectRefused(R"({"format": "tern.moa.v1", "num_layers": 1, "num_heads": 1, "sinks": -1,
                    "buckets": [{"alphas": [[1]], "betas": [[0]]}]})",
                "sinks");
  ExpectRefused(R"({"format": "tern.moa.v1", "num_layers": 1, "num_heads": 1, "sinks": [[2.5]],
                    "buckets": [{"alphas": [[1]], "betas": [[0]]}]})",
                "sinks[0][0]");
}

TEST(MoaPlanTest, RefusesPlansThatDoNotFitTheModel) {
  auto plan = ParseMoaPlan(TernPlan(R"([{"alphas": [[-100, 1], [1, 1]], "betas": [[0.5, 0], [0, 0]]}])"), "fit.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  absl::Status layers = CheckMoaPlanFits(*plan, Model(3, 2), 4096);
  EXPECT_NE(layers.message().find("num_hidden_layers"), absl::string_view::npos) << layers;
  absl::Status heads = CheckMoaPlanFits(*plan, Model(2, 4), 4096);
  EXPECT_NE(heads.message().find("num_attention_heads"), absl::string_view::npos) << heads;
  // -100 + 0.5 N is negative from N = 1 up to 199.
  absl::Status negative = CheckMoaPlanFits(*plan, Model(2, 2), 4096);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.message().find("buckets[0].alphas[0][0]"), absl::string_view::npos) << negative;
  EXPECT_NE(negative.message().find("fit.json"), absl::string_view::npos) << negative;
  HfConfig windowed = Model(2, 2);
  windowed.sliding_window = 4096;
  auto fine = ParseMoaPlan(TernPlan(R"([{"alphas": [[1, 1], [1, 1]], "betas": [[0, 0], [0, 0]]}])"), "w.json");
  ASSERT_TRUE(fine.ok());
  EXPECT_NE(CheckMoaPlanFits(*fine, windowed, 4096).message().find("sliding window"), absl::string_view::npos);
  EXPECT_EQ(LoadMoaPlan("/nonexistent/plan.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(MoaPlanTest, AttentionSchemeSpellings) {
  EXPECT_FALSE(ParseAttentionScheme("").value().moa());
  EXPECT_FALSE(ParseAttentionScheme("dense").value().moa());
  EXPECT_EQ(ParseAttentionScheme("moa:/p/plan.json").value().plan_path, "/p/plan.json");
  EXPECT_FALSE(ParseAttentionScheme("moa:").ok());
  EXPECT_FALSE(ParseAttentionScheme("sparse").ok());
}

// The retention never frees a key any head of any layer reads at any later
// length, even where a later bucket's band reaches back; and it frees all
// the rest.
TEST(MoaPlanTest, RetentionFreesExactlyWhatNoLaterQueryReads) {
  auto plan = ParseMoaPlan(TernPlan(R"([{"max_length": 300, "alphas": [[40, 10], [0, 64]], "betas": [[0, 0.1], [0.05, 0]]},
                                        {"alphas": [[200, 10], [30, 64]], "betas": [[0, 0.1], [0.05, 0]]}])"),
                           "r.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int32_t max_context = 1000;
  const KvRetention r = plan->Retention(max_context);
  EXPECT_EQ(r.sink_tokens(), 16);
  EXPECT_FALSE(r.monotone());  // at N = 301 the first head's band jumps from 40 to 200 tokens
  std::vector<int32_t> band_min(max_context + 1, INT32_MAX);
  for (int32_t n = 1; n <= max_context; ++n) {
    for (int32_t l = 0; l < 2; ++l) {
      for (int32_t h = 0; h < 2; ++h) band_min[n] = std::min(band_min[n], plan->BandStart(l, h, n));
    }
  }
  for (int32_t c = 1; c < max_context; ++c) {
    int32_t earliest = c;
    for (int32_t n = c + 1; n <= max_context; ++n) earliest = std::min(earliest, band_min[n]);
    ASSERT_EQ(r.FreeBefore(c), earliest) << c;
  }
  EXPECT_EQ(r.FreeBefore(260), 300 + 1 - 200);  // held back for the query at N = 301
}

TEST(KvRetentionTest, FreedAndPeakBlocks) {
  // A 4-token sink and a 10-token band.
  std::vector<int32_t> band_min(201);
  for (int32_t n = 1; n <= 200; ++n) band_min[n] = std::max(0, n - 10);
  const KvRetention r = KvRetention::Create(4, band_min);
  EXPECT_TRUE(r.monotone());
  EXPECT_EQ(r.FreeBefore(50), 41);
  EXPECT_EQ(r.FreedBlocks(50, 4), 10 - 1);  // blocks 1..9 lie in [4, 41)
  EXPECT_EQ(r.FreedBlocks(5, 4), 0);
  // Decoding one token a step: sink block + 3 band blocks + the new one at most.
  EXPECT_LE(r.PeakBlocks(200, 4, 1), 1 + 4 + 1);
  EXPECT_EQ(r.PeakBlocks(200, 4, 200), 50);  // one step of everything frees nothing first
  const KvRetention window = KvRetention::SlidingWindow(8, 100);
  EXPECT_EQ(window.sink_tokens(), 0);
  EXPECT_EQ(window.FreeBefore(50), 43);
}

// Per-group retention: each group frees exactly what no head of its own
// layers reads at any later length, which is at least what the union of
// every layer frees.
TEST(MoaPlanTest, GroupsFreeWhatTheirOwnLayersNoLongerRead) {
  auto plan = ParseMoaPlan(TernPlan(R"([{"max_length": 300, "alphas": [[40, 10], [0, 64]], "betas": [[0, 0.1], [0.05, 0]]},
                                        {"alphas": [[200, 10], [30, 64]], "betas": [[0, 0.1], [0.05, 0]]}])"),
                           "g.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const int32_t max_context = 1000;
  const KvCacheGroups groups = plan->KvGroups(max_context, 8);
  ASSERT_EQ(groups.num_groups(), 2);
  const KvRetention all = plan->Retention(max_context);
  for (int32_t l = 0; l < 2; ++l) {
    const KvRetention& r = *groups.group_retention(groups.layer_group[size_t(l)]);
    for (int32_t c = 1; c < max_context; ++c) {
      int32_t earliest = c;
      for (int32_t n = c + 1; n <= max_context; ++n) {
        for (int32_t h = 0; h < 2; ++h) earliest = std::min(earliest, plan->BandStart(l, h, n));
      }
      ASSERT_EQ(r.FreeBefore(c), earliest) << "layer " << l << " at " << c;
      ASSERT_GE(r.FreeBefore(c), all.FreeBefore(c));
    }
  }
}

// The published Llama-3-8B plan (tools/moa/plans/, 32 layers of 32 heads,
// about 49% density): the blocks of one layer a sequence holds at its peak
// (16-token blocks, 2,048-token prefill chunks) with one table (the union of
// every layer's reads), 8 KV-cache groups of 4 layers and 32 groups of one,
// and how many such sequences 16 GiB of fp16 KV (8,192 blocks of all 32
// layers) holds. Printed for bench/RESULTS.md.
// The blocks of one layer a sequence of `context` tokens holds at its peak
// under `plan` (Llama-3-8B shape: 32 layers, 16-token blocks, 2,048-token
// prefill chunks) with 1, 8 and 32 KV-cache groups, printed beside dense with
// how many such sequences 16 GiB of fp16 KV (8,192 blocks of all 32 layers)
// holds. Returns them in that order, dense first.
std::vector<int64_t> Llama3PeakBlocks(const MoaPlan& plan, const char* name, int32_t context) {
  const int64_t pool = int64_t(8192) * 32;  // layer-blocks
  const int64_t dense = int64_t(32) * ((context - 1 + 15) / 16);
  std::vector<int64_t> out = {dense};
  std::printf("Llama-3-8B %s at %d tokens (density %.3f): per-layer blocks at the peak (sequences in 16 GiB): "
              "dense %lld (%lld)",
              name, context, plan.Density(context), static_cast<long long>(dense),
              static_cast<long long>(pool / dense));
  for (const int32_t max_groups : {1, 8, 32}) {
    const KvCacheGroups groups = plan.KvGroups(context, max_groups);
    EXPECT_EQ(groups.num_groups(), max_groups);
    const int64_t held = groups.PeakBlocks(context - 1, 16, 2048) * (32 / max_groups);
    std::printf(", %d group%s %lld (%lld)", max_groups, max_groups > 1 ? "s" : "", static_cast<long long>(held),
                static_cast<long long>(pool / held));
    out.push_back(held);
  }
  std::printf("\n");
  return out;
}

TEST(MoaPlanTest, PublishedLlama3PlanHoldsLessPerGroup) {
  auto plan = LoadMoaPlan(std::string(TERN_PLANS_DIR) + "/gradientai-Llama-3-8B-Instruct-262k.moa_alpha_beta.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (const int32_t context : {8192, 16384}) {
    const std::vector<int64_t> held = Llama3PeakBlocks(*plan, "MoA plan", context);
    for (size_t i = 1; i < held.size(); ++i) EXPECT_LE(held[i], held[i - 1]);
  }
}

// The published plan with every head capped at half the context up to 16k
// (tools/moa/cap_plan.py; a speed and memory proxy, tools/moa/plans/README.md):
// every layer then keeps at most half of a sequence's tokens plus what the
// prefill chunk in flight and the block granularity add, so 8 groups hold
// 14 sequences of 16k tokens in 16 GiB where dense holds 8 (25 against 16 at
// 8k).
TEST(MoaPlanTest, CappedLlama3PlanHoldsHalfPerGroup) {
  auto plan = LoadMoaPlan(std::string(TERN_PLANS_DIR) + "/llama-3-8b-moa-capped-50.tern.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  HfConfig llama3 = Model(32, 32);
  llama3.num_key_value_heads = 8;
  llama3.max_position_embeddings = 16384;
  ASSERT_TRUE(CheckMoaPlanFits(*plan, llama3, 16384).ok());  // as the long-context bench's model serves it
  for (const int32_t context : {8192, 16384}) {
    EXPECT_LE(plan->Density(context), 0.5);
    // Every head attends at most half of what the query sees.
    for (int32_t l = 0; l < 32; ++l) {
      for (int32_t h = 0; h < 32; ++h) {
        const int32_t n = context;
        const int32_t sink = plan->SinkEnd(l, h, n);
        const int32_t keys = sink + n - std::max(sink, plan->BandStart(l, h, n));
        ASSERT_LE(keys, n / 2) << "layer " << l << " head " << h;
      }
    }
    const std::vector<int64_t> held = Llama3PeakBlocks(*plan, "MoA plan capped at 50%", context);
    for (size_t i = 1; i < held.size(); ++i) EXPECT_LE(held[i], held[i - 1]);
    // 8 groups: at the peak the last 2,048-token prefill chunk is held whole
    // while its first query still reads half of the context - 2,048 tokens it
    // sees: context / 2 + 1,024 tokens, plus a partial block at each end.
    EXPECT_LE(held[2], int64_t(32) * ((context / 2 + 1024) / 16 + 2));
  }
}

// The demo LLM's plans at 50% density (tools/moa/plans/tern-demo-llm/: 8
// layers of 6 query heads, 2,048 tokens): they fit the model, and the
// KV-cache groups tern forms for them (per layer, or one when the layers read
// alike) keep what each plan's bound says. A sequence of 2,048
// tokens in one 2,048-token prefill chunk peaks at its whole length, so the
// blocks are counted as decoding would hold them after a short prompt (64-token
// chunks): the window and the capped plan keep half of every layer, the
// layer-bounded plan half of the layers on average, the unbounded plan more.
TEST(MoaPlanTest, DemoLlmPlansKeepWhatTheirBoundsSay) {
  HfConfig demo = Model(8, 6);
  demo.num_key_value_heads = 2;
  demo.max_position_embeddings = 2048;
  std::map<std::string, int64_t> held;
  for (const char* name : {"moa-50", "moa-50-cap", "moa-50-layer", "window-50"}) {
    auto plan = LoadMoaPlan(std::string(TERN_PLANS_DIR) + "/tern-demo-llm/" + name + ".json");
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_TRUE(CheckMoaPlanFits(*plan, demo, 2048).ok()) << name;
    EXPECT_NEAR(plan->Density(2048), 0.5, 1e-9) << name;
    const KvCacheGroups groups = plan->KvGroups(2048, 8);  // one group when every layer reads alike
    ASSERT_EQ(8 % groups.num_groups(), 0);
    held[name] = groups.PeakBlocks(2047, 16, 64) * (8 / groups.num_groups());  // blocks of one layer
    std::printf("demo LLM %s: density %.3f at 2048, blocks of one layer held at the peak of 2,047 tokens, over the "
                "layers: %lld of %d\n", name,
                plan->Density(2048), static_cast<long long>(held[name]), 8 * 128);
  }
  EXPECT_EQ(held["moa-50-cap"], held["window-50"]);
  EXPECT_LE(held["moa-50-layer"], held["window-50"] + 8);  // within a block a layer
  EXPECT_GT(held["moa-50"], held["window-50"] + 8 * 8);
}

}  // namespace
}  // namespace tern::runtime
