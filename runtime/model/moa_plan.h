// MoA (Mixture of Attention Spans) plans: per layer and query head, a sink
// of S tokens and a band of span = alpha + beta * N tokens (N: the tokens a
// query sees), the rule chosen per length bucket. What a head attends is
// stated once in kernels/attention/attention_spans.h; this is the file
// format, its checks, and what the plan means for density and retention.
//
// Two formats (a model config's attention_scheme "moa:<plan file>"):
//
// 1. thu-nics/MoA's own plans (moa_alpha_beta.json, moa_config_plan_<i>.json
//    from its elastic_generate.py): {"alphas": [[...]], "betas": [[...]]},
//    one row per layer, one entry per query head. MoA's cache keeps a sink
//    of 64 tokens and alpha + beta * N tokens in all, so tern reads it as
//    sink 64, band alpha - 64 + beta * N, one bucket. MoA's own cache also
//    rounds its size up to a multiple of 64 with at least 128 tokens; those
//    are sizing choices of its static cache, not part of the rule: tern
//    attends exactly the sink and the band (a band below 1 token is 1).
//    MoA's alphas may make alpha + beta * N negative at short lengths (its
//    search only bounds lengths it profiled); there the band is 1 token.
//
// 2. tern's form (tools/moa/search.py writes it):
//      {
//        "format": "tern.moa.v1",
//        "num_layers": 8, "num_heads": 6,
//        "reference_length": 2048,          optional: the length the plan's
//                                           density budget was set at
//        "sinks": 64  or  [[...], ...],     one for all, or [layer][head]
//        "buckets": [                       ascending max_length; the last
//          {"max_length": 1024,             bucket may omit it and covers
//           "alphas": [[...]], "betas": [[...]]},   every longer length
//          {"alphas": [[...]], "betas": [[...]]}
//        ]
//      }
//    Bucket b covers N in (max_length[b-1], max_length[b]]; in it alpha +
//    beta * N must not be negative (checked at both ends, the last bucket up
//    to the model's context).
//
// Both: alphas and betas finite, betas in [0, 1] (a band never grows faster
// than the context, which keeps band starts monotone within a bucket:
// attention_spans.h), sinks >= 0; unknown fields are errors. Every error
// names the file and the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/backend/kv_cache_groups.h"
#include "runtime/backend/kv_retention.h"
#include "runtime/model/hf_config.h"

namespace tern::runtime {

// MoA's sink when its own format gives none (its StaticCircularCache).
inline constexpr int32_t kMoaFormatSinkTokens = 64;
// Bounds of a tern plan's declared shape, checked before anything is sized by it.
inline constexpr int64_t kMaxPlanHeads = int64_t(1) << 20;  // num_layers * num_heads
inline constexpr int32_t kMaxPlanBuckets = 64;

struct MoaPlan {
  std::string path;    // where it was read from; errors name it
  std::string format;  // "moa" (thu-nics/MoA's alphas/betas) or "tern"
  int32_t num_layers = 0;
  int32_t num_heads = 0;          // query heads per layer
  int32_t reference_length = 0;   // 0: not given
  std::vector<int32_t> bucket_max_length;  // [num_buckets] ascending; the last one is INT32_MAX
  std::vector<int32_t> sinks;              // [num_layers * num_heads]
  std::vector<double> alphas, betas;       // [num_buckets, num_layers, num_heads]

  int32_t num_buckets() const { return static_cast<int32_t>(bucket_max_length.size()); }
  // attention_spans.h for head `head` of layer `layer` and a query seeing n >= 1 tokens.
  int32_t SinkEnd(int32_t layer, int32_t head, int32_t n) const;
  int32_t BandStart(int32_t layer, int32_t head, int32_t n) const;
  // Keys a query that sees n tokens attends, over every head of every
  // layer, divided by n times the heads: MoA's density at length n.
  double Density(int32_t n) const;
  // The KV retention of the plan up to `max_context` tokens: sink_tokens the
  // longest sink, band_min[n] the earliest band start of any head.
  KvRetention Retention(int32_t max_context) const;
  // What the heads of layer `layer` read up to `max_context` tokens: their
  // longest sink and earliest band start at each length.
  LayerBands LayerReads(int32_t layer, int32_t max_context) const;
  // The plan's KV-cache groups (kv_cache_groups.h): layers that read alike
  // share a block table, at most `max_groups` groups.
  KvCacheGroups KvGroups(int32_t max_context, int32_t max_groups) const;
};

// Parses either format; `path` only names the source in errors.
absl::StatusOr<MoaPlan> ParseMoaPlan(absl::string_view json, const std::string& path);
absl::StatusOr<MoaPlan> LoadMoaPlan(const std::string& path);
// INVALID_ARGUMENT naming the plan's file when it does not fit the model:
// layer or query-head counts, a tern bucket whose span turns negative before
// `max_context`, or a sliding-window model (spans and windows do not mix).
absl::Status CheckMoaPlanFits(const MoaPlan& plan, const HfConfig& config, int64_t max_context);

// A model's attention_scheme: "" or "dense", or "moa:<plan file>".
struct AttentionSchemeRequest {
  std::string plan_path;  // empty: dense
  bool moa() const { return !plan_path.empty(); }
};
absl::StatusOr<AttentionSchemeRequest> ParseAttentionScheme(absl::string_view text);

}  // namespace tern::runtime
