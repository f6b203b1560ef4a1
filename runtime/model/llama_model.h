// The Llama-family decoder (Llama-2/3, Vicuna, TinyLlama, Mistral, Qwen2,
// Mixtral), written once against the Backend op set.
//
//   x = embed(tokens)
//   per layer: x += o_proj(attention(rope(qkv_proj(rmsnorm(x)))))
//              x += mlp(rmsnorm(x))      (SwiGLU, or Mixtral's top-k MoE)
//   logits = lm_head(rmsnorm(x[logits_rows]))
//
// Load checks the directory against the full tensor layout (every tensor
// present with its exact shape; linear layers in their stored form, dense or
// quantized: linear_plan.h) and that the backend runs every weight scheme the
// model needs, all before it uploads anything; then it fuses q/k/v and
// gate/up projections. Forward is not thread-safe: one engine thread drives
// a model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/backend/backend.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/moa_plan.h"
#include "runtime/model/weight_scheme.h"

namespace tern::runtime {

struct LlamaModelOptions {
  // What the linear layers run as (weight_scheme.h): as stored by default.
  WeightSchemeRequest weight_scheme;
  // What the KV cache stores (kv_cache_spec.h). fp8 takes the checkpoint's
  // KV scales (kv_cache_scales.h) when it has them, else 1.0.
  KvCacheDtype kv_cache_dtype = KvCacheDtype::kAuto;
  // How attention reads the cache (moa_plan.h): dense, or an MoA plan's
  // per-head spans, loaded and checked against the model by Load.
  AttentionSchemeRequest attention;
};

// What a model directory holds, checked without loading it.
struct CheckpointSummary {
  int64_t parameters = 0;     // logical: a quantized [out, in] layer counts out * in
  std::string weight_scheme;  // LinearPlan::Describe: "dense", "w4a16-g128 (gptq)", ...
  bool quantized = false;     // some linear layer is not dense
  bool kv_cache_scales = false;  // the checkpoint has fp8 KV cache scales
};

class LlamaModel {
 public:
  // `backend` is borrowed and must outlive the model.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& model_dir, Backend* backend,
                                                          const LlamaModelOptions& options);
  ~LlamaModel();

  // Checks `model_dir`'s tensors (headers only) as Load would, and what
  // `request` makes of its linear layers.
  static absl::StatusOr<CheckpointSummary> Inspect(const std::string& model_dir, const HfConfig& config,
                                                   const WeightSchemeRequest& request);

  const HfConfig& config() const { return config_; }
  // What the linear layers run as (LinearPlan::Describe).
  const std::string& weight_scheme() const { return weight_scheme_; }
  // Bytes the weights hold in the backend's memory, as the backend keeps
  // them (DeviceWeight::bytes and LinearWeight::bytes of every table, norm,
  // linear layer and expert; a tied lm_head is its own copy). Not the KV
  // cache, the MoA span tables or the backend's scratch.
  size_t weight_bytes() const { return weight_bytes_; }
  // True when a decode step of `num_seqs` sequences only enqueues device
  // work (no host round trip mid-pass), so a backend may record it once and
  // replay it as a graph: every step of a dense model, and a mixture of
  // experts' steps of at most Backend::MoeDeviceMaxTokens tokens.
  bool CanRunAsGraph(int32_t num_seqs) const { return num_seqs <= graph_max_seqs_; }
  // A KV cache for this model: its shape, the element type of
  // LlamaModelOptions::kv_cache_dtype and, for fp8, the checkpoint's scales.
  KvCacheSpec CacheSpec(int32_t num_blocks, int32_t block_size) const;
  // What the KV cache stores: "auto", "int8", "fp8 (checkpoint scales)" or
  // "fp8 (scales 1.0: the checkpoint has none)".
  const std::string& kv_cache_description() const { return kv_cache_description_; }
  // The MoA plan attention runs with, or null for dense attention.
  const MoaPlan* moa_plan() const { return moa_plan_.has_value() ? &*moa_plan_ : nullptr; }

  // One forward pass over `batch` (tokens written into `cache` at the
  // batch's slots), ended with Backend::EndForward. Returns the
  // [batch.logits_rows.size(), vocab] logits, left in the backend's memory
  // (a scratch tensor valid until the next forward pass) in its compute
  // dtype: sample them with Backend::SampleRows, or FinishStep and
  // ReadToHost. Errors of the enqueued work surface at that later call.
  absl::StatusOr<Tensor> ForwardLogits(const ForwardBatch& batch, KvCache& cache);

  // ForwardLogits, then FinishStep and a read of the logits: `logits`
  // receives [batch.logits_rows.size(), vocab] fp32.
  absl::Status Forward(const ForwardBatch& batch, KvCache& cache, std::vector<float>* logits);

 private:
  struct Layer;
  LlamaModel() = default;
  size_t SumWeightBytes() const;

  HfConfig config_;
  std::string weight_scheme_;
  size_t weight_bytes_ = 0;
  // CanRunAsGraph's bound: the least MoeDeviceMaxTokens of the MoE layers,
  // read at load; no bound for a dense model.
  int64_t graph_max_seqs_ = INT64_MAX;
  KvCacheDtype kv_cache_dtype_ = KvCacheDtype::kAuto;
  std::vector<float> kv_k_scales_, kv_v_scales_;  // fp8 with checkpoint scales, else empty
  std::string kv_cache_description_ = "auto";
  std::optional<MoaPlan> moa_plan_;
  std::unique_ptr<AttentionSpans> spans_;  // moa_plan_ in the backend's memory
  Backend* backend_ = nullptr;
  std::unique_ptr<DeviceWeight> embed_;
  std::unique_ptr<DeviceWeight> final_norm_;
  std::unique_ptr<LinearWeight> lm_head_;
  std::unique_ptr<DeviceWeight> inv_freq_;
  std::vector<Layer> layers_;
};

}  // namespace tern::runtime
