#include "runtime/model/moa_plan.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention/attention_spans.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

using Json = nlohmann::json;

constexpr const char* kTernFormat = "tern.moa.v1";

absl::Status Bad(const std::string& path, const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("MoA plan ", path, ": ", field, ": ", what));
}

const char* TypeName(const Json& j) { return j.type_name(); }

// A [layers][heads] table of numbers; fixes num_layers/num_heads when they
// are still 0, else checks them.
absl::Status ReadTable(const Json& j, const std::string& path, const std::string& field, int32_t* num_layers,
                       int32_t* num_heads, std::vector<double>* out) {
  if (!j.is_array() || j.empty()) return Bad(path, field, "expected a non-empty array of layers, one array of heads each");
  if (*num_layers == 0) *num_layers = static_cast<int32_t>(j.size());
  if (int64_t(j.size()) != *num_layers) {
    return Bad(path, field, absl::StrCat("has ", j.size(), " layers; expected ", *num_layers));
  }
  for (size_t l = 0; l < j.size(); ++l) {
    const Json& row = j[l];
    const std::string row_field = absl::StrCat(field, "[", l, "]");
    if (!row.is_array() || row.empty()) return Bad(path, row_field, "expected a non-empty array of heads");
    if (*num_heads == 0) *num_heads = static_cast<int32_t>(row.size());
    if (int64_t(row.size()) != *num_heads) {
      return Bad(path, row_field, absl::StrCat("has ", row.size(), " heads; expected ", *num_heads));
    }
    for (size_t h = 0; h < row.size(); ++h) {
      const Json& v = row[h];
      const std::string cell = absl::StrCat(row_field, "[", h, "]");
      if (!v.is_number()) return Bad(path, cell, absl::StrCat("is a ", TypeName(v), "; expected a number"));
      const double x = v.get<double>();
      if (!std::isfinite(x)) return Bad(path, cell, "is not finite");
      out->push_back(x);
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBetas(const MoaPlan& plan, const std::string& field_prefix, size_t offset) {
  for (int32_t l = 0; l < plan.num_layers; ++l) {
    for (int32_t h = 0; h < plan.num_heads; ++h) {
      const double beta = plan.betas[offset + size_t(l) * plan.num_heads + h];
      if (!(beta >= 0.0 && beta <= 1.0)) {
        return Bad(plan.path, absl::StrCat(field_prefix, "betas[", l, "][", h, "]"),
                   absl::StrCat(beta, " is not in [0, 1] (a band cannot shrink, nor grow faster than the context)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MoaPlan> ParseMoaFormat(const Json& j, const std::string& path) {
  MoaPlan plan;
  plan.path = path;
  plan.format = "moa";
  for (const auto& [key, unused] : j.items()) {
    if (key != "alphas" && key != "betas") {
      return Bad(path, key, "unknown field of a MoA plan (expected \"alphas\" and \"betas\")");
    }
  }
  if (!j.contains("betas")) return Bad(path, "betas", "is missing");
  std::vector<double> alphas;
  RETURN_IF_ERROR(ReadTable(j["alphas"], path, "alphas", &plan.num_layers, &plan.num_heads, &alphas));
  RETURN_IF_ERROR(ReadTable(j["betas"], path, "betas", &plan.num_layers, &plan.num_heads, &plan.betas));
  // MoA keeps a 64-token sink inside its alpha + beta * N: the band is the rest.
  plan.alphas.reserve(alphas.size());
  for (double a : alphas) plan.alphas.push_back(a - kMoaFormatSinkTokens);
  plan.sinks.assign(size_t(plan.num_layers) * plan.num_heads, kMoaFormatSinkTokens);
  plan.bucket_max_length = {INT32_MAX};
  RETURN_IF_ERROR(CheckBetas(plan, "", 0));
  return plan;
}

absl::StatusOr<int32_t> ReadPositiveInt(const Json& j, const std::string& path, const std::string& field) {
  if (!j.is_number_integer() || j.get<int64_t>() <= 0 || j.get<int64_t>() > INT32_MAX) {
    return Bad(path, field, "expected a positive integer");
  }
  return static_cast<int32_t>(j.get<int64_t>());
}

absl::StatusOr<MoaPlan> ParseTernFormat(const Json& j, const std::string& path) {
  MoaPlan plan;
  plan.path = path;
  plan.format = "tern";
  for (const auto& [key, unused] : j.items()) {
    if (key != "format" && key != "num_layers" && key != "num_heads" && key != "reference_length" &&
        key != "sinks" && key != "buckets") {
      return Bad(path, key,
                 "unknown field (expected format, num_layers, num_heads, reference_length, sinks, buckets)");
    }
  }
  if (!j["format"].is_string() || j["format"].get<std::string>() != kTernFormat) {
    return Bad(path, "format", absl::StrCat("expected \"", kTernFormat, "\""));
  }
  for (const char* key : {"num_layers", "num_heads", "sinks", "buckets"}) {
    if (!j.contains(key)) return Bad(path, key, "is missing");
  }
  ASSIGN_OR_RETURN(plan.num_layers, ReadPositiveInt(j["num_layers"], path, "num_layers"));
  ASSIGN_OR_RETURN(plan.num_heads, ReadPositiveInt(j["num_heads"], path, "num_heads"));
  if (int64_t(plan.num_layers) * plan.num_heads > kMaxPlanHeads) {
    return Bad(path, "num_layers", absl::StrCat(plan.num_layers, " layers of ", plan.num_heads, " heads exceed ",
                                                kMaxPlanHeads, " heads in all"));
  }
  if (j.contains("reference_length")) {
    ASSIGN_OR_RETURN(plan.reference_length, ReadPositiveInt(j["reference_length"], path, "reference_length"));
  }
  const Json& sinks = j["sinks"];
  std::vector<double> sink_values;
  if (sinks.is_number()) {
    sink_values.assign(size_t(plan.num_layers) * plan.num_heads, sinks.get<double>());
  } else {
    RETURN_IF_ERROR(ReadTable(sinks, path, "sinks", &plan.num_layers, &plan.num_heads, &sink_values));
  }
  for (size_t i = 0; i < sink_values.size(); ++i) {
    const double s = sink_values[i];
    if (!(s >= 0.0 && s <= INT32_MAX && s == std::floor(s))) {
      const std::string field = sinks.is_number() ? std::string("sinks")
                                                  : absl::StrCat("sinks[", i / plan.num_heads, "][",
                                                                 i % plan.num_heads, "]");
      return Bad(path, field, absl::StrCat(s, " is not a non-negative whole number of tokens"));
    }
    plan.sinks.push_back(static_cast<int32_t>(s));
  }
  const Json& buckets = j["buckets"];
  if (!buckets.is_array() || buckets.empty()) return Bad(path, "buckets", "expected a non-empty array");
  if (buckets.size() > size_t(kMaxPlanBuckets)) {
    return Bad(path, "buckets", absl::StrCat(buckets.size(), " buckets; at most ", kMaxPlanBuckets));
  }
  for (size_t b = 0; b < buckets.size(); ++b) {
    const Json& bucket = buckets[b];
    const std::string field = absl::StrCat("buckets[", b, "]");
    if (!bucket.is_object()) return Bad(path, field, "expected an object");
    for (const auto& [key, unused] : bucket.items()) {
      if (key != "max_length" && key != "alphas" && key != "betas") {
        return Bad(path, absl::StrCat(field, ".", key), "unknown field (expected max_length, alphas, betas)");
      }
    }
    const bool last = b + 1 == buckets.size();
    int32_t max_length = INT32_MAX;
    if (bucket.contains("max_length")) {
      ASSIGN_OR_RETURN(max_length, ReadPositiveInt(bucket["max_length"], path, field + ".max_length"));
    } else if (!last) {
      return Bad(path, field + ".max_length", "is missing (only the last bucket may omit it)");
    }
    if (!plan.bucket_max_length.empty() && max_length <= plan.bucket_max_length.back()) {
      return Bad(path, field + ".max_length",
                 absl::StrCat(max_length, " is not above the previous bucket's ", plan.bucket_max_length.back(),
                              "; buckets must be sorted by max_length"));
    }
    // The last bucket covers every longer length whatever its max_length.
    plan.bucket_max_length.push_back(last ? INT32_MAX : max_length);
    for (const char* key : {"alphas", "betas"}) {
      if (!bucket.contains(key)) return Bad(path, absl::StrCat(field, ".", key), "is missing");
    }
    int32_t layers = plan.num_layers, heads = plan.num_heads;
    const size_t offset = plan.betas.size();
    RETURN_IF_ERROR(ReadTable(bucket["alphas"], path, field + ".alphas", &layers, &heads, &plan.alphas));
    RETURN_IF_ERROR(ReadTable(bucket["betas"], path, field + ".betas", &layers, &heads, &plan.betas));
    RETURN_IF_ERROR(CheckBetas(plan, field + ".", offset));
  }
  return plan;
}

kernels::AttentionSpanRules LayerRules(const MoaPlan& plan, int32_t layer, std::vector<double>* alphas,
                                       std::vector<double>* betas) {
  const size_t per_layer = size_t(plan.num_heads);
  alphas->clear();
  betas->clear();
  for (int32_t b = 0; b < plan.num_buckets(); ++b) {
    const size_t base = (size_t(b) * plan.num_layers + layer) * per_layer;
    alphas->insert(alphas->end(), plan.alphas.begin() + base, plan.alphas.begin() + base + per_layer);
    betas->insert(betas->end(), plan.betas.begin() + base, plan.betas.begin() + base + per_layer);
  }
  kernels::AttentionSpanRules rules;
  rules.num_buckets = plan.num_buckets();
  rules.bucket_max_length = plan.bucket_max_length.data();
  rules.sinks = plan.sinks.data() + size_t(layer) * per_layer;
  rules.alphas = alphas->data();
  rules.betas = betas->data();
  return rules;
}

}  // namespace

int32_t MoaPlan::SinkEnd(int32_t layer, int32_t head, int32_t n) const {
  return std::min(sinks[size_t(layer) * num_heads + head], n);
}

int32_t MoaPlan::BandStart(int32_t layer, int32_t head, int32_t n) const {
  std::vector<double> a, b;
  return LayerRules(*this, layer, &a, &b).BandStart(num_heads, head, n);
}

double MoaPlan::Density(int32_t n) const {
  if (n <= 0 || num_layers == 0 || num_heads == 0) return 1.0;
  double keys = 0.0;
  std::vector<double> a, b;
  for (int32_t l = 0; l < num_layers; ++l) {
    const kernels::AttentionSpanRules rules = LayerRules(*this, l, &a, &b);
    for (int32_t h = 0; h < num_heads; ++h) {
      const int32_t sink = rules.SinkEnd(h, n);
      const int32_t band = std::max(sink, rules.BandStart(num_heads, h, n));
      keys += sink + (n - band);
    }
  }
  return keys / (double(n) * num_layers * num_heads);
}

KvRetention MoaPlan::Retention(int32_t max_context) const {
  std::vector<int32_t> band_min(size_t(max_context) + 1, 0);
  for (int32_t n = 1; n <= max_context; ++n) band_min[size_t(n)] = n - 1;
  int32_t sink_tokens = 0;
  std::vector<double> a, b;
  for (int32_t l = 0; l < num_layers; ++l) {
    const kernels::AttentionSpanRules rules = LayerRules(*this, l, &a, &b);
    for (int32_t h = 0; h < num_heads; ++h) {
      sink_tokens = std::max(sink_tokens, rules.sinks[h]);
      for (int32_t n = 1; n <= max_context; ++n) {
        band_min[size_t(n)] = std::min(band_min[size_t(n)], rules.BandStart(num_heads, h, n));
      }
    }
  }
  return KvRetention::Create(sink_tokens, band_min);
}

LayerBands MoaPlan::LayerReads(int32_t layer, int32_t max_context) const {
  LayerBands out;
  out.band_min.assign(size_t(max_context) + 1, 0);
  for (int32_t n = 1; n <= max_context; ++n) out.band_min[size_t(n)] = n - 1;
  std::vector<double> a, b;
  const kernels::AttentionSpanRules rules = LayerRules(*this, layer, &a, &b);
  for (int32_t h = 0; h < num_heads; ++h) {
    out.sink_tokens = std::max(out.sink_tokens, rules.sinks[h]);
    for (int32_t n = 1; n <= max_context; ++n) {
      out.band_min[size_t(n)] = std::min(out.band_min[size_t(n)], rules.BandStart(num_heads, h, n));
    }
  }
  return out;
}

KvCacheGroups MoaPlan::KvGroups(int32_t max_context, int32_t max_groups) const {
  std::vector<LayerBands> layers;
  layers.reserve(size_t(num_layers));
  for (int32_t l = 0; l < num_layers; ++l) layers.push_back(LayerReads(l, max_context));
  return GroupLayersByBands(layers, max_groups);
}

absl::StatusOr<MoaPlan> ParseMoaPlan(absl::string_view text, const std::string& path) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat("MoA plan ", path, ": not valid JSON"));
  if (!j.is_object()) return Bad(path, "(top level)", "expected a JSON object");
  if (j.contains("alphas")) return ParseMoaFormat(j, path);
  if (j.contains("format")) return ParseTernFormat(j, path);
  return Bad(path, "(top level)",
             absl::StrCat("neither a MoA plan (\"alphas\", \"betas\") nor a tern plan (\"format\": \"", kTernFormat,
                          "\")"));
}

absl::StatusOr<MoaPlan> LoadMoaPlan(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("MoA plan ", path, ": cannot be opened"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseMoaPlan(text.str(), path);
}

absl::Status CheckMoaPlanFits(const MoaPlan& plan, const HfConfig& config, int64_t max_context) {
  if (plan.num_layers != config.num_hidden_layers) {
    return Bad(plan.path, "layers",
               absl::StrCat(plan.num_layers, " layers; the model has ", config.num_hidden_layers,
                            " (num_hidden_layers)"));
  }
  if (plan.num_heads != config.num_attention_heads) {
    return Bad(plan.path, "heads",
               absl::StrCat(plan.num_heads, " heads per layer; the model has ", config.num_attention_heads,
                            " query heads (num_attention_heads); a GQA model's plan has one entry per query head"));
  }
  if (config.sliding_window > 0) {
    return Bad(plan.path, "(model)",
               absl::StrCat("the model attends within a sliding window of ", config.sliding_window,
                            " tokens; MoA spans and sliding windows do not combine"));
  }
  if (plan.format != "tern") return absl::OkStatus();
  // A tern bucket's alpha + beta * N must hold for every N it covers; it is
  // linear in N, so its two ends decide.
  for (int32_t b = 0; b < plan.num_buckets(); ++b) {
    const int64_t lo = b == 0 ? 1 : int64_t(plan.bucket_max_length[size_t(b) - 1]) + 1;
    const int64_t hi = std::min<int64_t>(plan.bucket_max_length[size_t(b)], std::max<int64_t>(max_context, lo));
    for (int32_t l = 0; l < plan.num_layers; ++l) {
      for (int32_t h = 0; h < plan.num_heads; ++h) {
        const size_t i = (size_t(b) * plan.num_layers + l) * plan.num_heads + h;
        for (const int64_t n : {lo, hi}) {
          const double span = plan.alphas[i] + plan.betas[i] * double(n);
          if (span < 0.0) {
            return Bad(plan.path, absl::StrCat("buckets[", b, "].alphas[", l, "][", h, "]"),
                       absl::StrCat("the span alpha + beta * N = ", plan.alphas[i], " + ", plan.betas[i], " * ", n,
                                    " = ", span, " is negative at N = ", n, "; expected >= 0 over the bucket"));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<AttentionSchemeRequest> ParseAttentionScheme(absl::string_view text) {
  AttentionSchemeRequest request;
  if (text.empty() || text == "dense") return request;
  if (absl::StartsWith(text, "moa:")) {
    request.plan_path = std::string(text.substr(4));
    if (request.plan_path.empty()) {
      return absl::InvalidArgumentError("attention_scheme \"moa:\" needs the path of a plan file: moa:<plan file>");
    }
    return request;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("attention_scheme \"", text, "\" is not one of \"dense\", \"moa:<plan file>\""));
}

}  // namespace tern::runtime
