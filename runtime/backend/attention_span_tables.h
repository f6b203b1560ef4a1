// An MoA plan's tables in the attention kernels' per-layer layout
// (kernels/attention/attention_spans.h), and the host-memory AttentionSpans
// of backends that run their kernels on the host. A backend-private header:
// it includes kernels/, which no public runtime header does.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/attention/attention_spans.h"
#include "runtime/backend/backend.h"
#include "runtime/model/moa_plan.h"

namespace tern::runtime {

struct AttentionSpanTables {
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_buckets = 0;
  std::vector<int32_t> bucket_max_length;  // [num_buckets]
  std::vector<int32_t> sinks;              // [num_layers, num_heads]
  std::vector<double> alphas, betas;       // [num_layers, num_buckets, num_heads]

  static AttentionSpanTables FromPlan(const MoaPlan& plan) {
    AttentionSpanTables t;
    t.num_layers = plan.num_layers;
    t.num_heads = plan.num_heads;
    t.num_buckets = plan.num_buckets();
    t.bucket_max_length = plan.bucket_max_length;
    t.sinks = plan.sinks;
    for (int32_t l = 0; l < t.num_layers; ++l) {
      for (int32_t b = 0; b < t.num_buckets; ++b) {
        const size_t base = (size_t(b) * t.num_layers + l) * t.num_heads;
        t.alphas.insert(t.alphas.end(), plan.alphas.begin() + base, plan.alphas.begin() + base + t.num_heads);
        t.betas.insert(t.betas.end(), plan.betas.begin() + base, plan.betas.begin() + base + t.num_heads);
      }
    }
    return t;
  }

  // Layer `layer`'s rules over tables laid out as these (host or device
  // copies of bucket_max_length, sinks, alphas, betas).
  kernels::AttentionSpanRules Layer(int32_t layer, const int32_t* max_length, const int32_t* sink_table,
                                    const double* alpha_table, const double* beta_table) const {
    kernels::AttentionSpanRules rules;
    rules.num_buckets = num_buckets;
    rules.bucket_max_length = max_length;
    rules.sinks = sink_table + size_t(layer) * num_heads;
    rules.alphas = alpha_table + size_t(layer) * num_buckets * num_heads;
    rules.betas = beta_table + size_t(layer) * num_buckets * num_heads;
    return rules;
  }
};

class HostAttentionSpans final : public AttentionSpans {
 public:
  explicit HostAttentionSpans(AttentionSpanTables tables) : tables_(std::move(tables)) {}
  kernels::AttentionSpanRules Layer(int32_t layer) const {
    return tables_.Layer(layer, tables_.bucket_max_length.data(), tables_.sinks.data(), tables_.alphas.data(),
                         tables_.betas.data());
  }

 private:
  AttentionSpanTables tables_;
};

}  // namespace tern::runtime
