#include "runtime/model/llama_model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/kv_cache_scales.h"
#include "runtime/model/linear_plan.h"
#include "runtime/model/rope_frequencies.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/weight_layout.h"

namespace tern::runtime {

struct LlamaModel::Layer {
  std::unique_ptr<DeviceWeight> input_norm, post_norm;
  std::unique_ptr<LinearWeight> qkv, o;
  std::unique_ptr<LinearWeight> gate_up, down;  // dense MLP
  std::unique_ptr<LinearWeight> router;         // MoE
  MoeWeights experts;
};

LlamaModel::~LlamaModel() = default;

namespace {

// Scratch slots of one forward pass.
enum Slot : int { kX, kNormed, kQkv, kAttn, kGateUp, kAct, kBranch, kRouter, kSelected, kLogits };

// A linear layer's module name: its weight tensor's name without ".weight".
std::string Module(const std::string& weight_name) {
  return weight_name.substr(0, weight_name.size() - std::string(".weight").size());
}

// The linear layers of decoder layer `l` that run fused: q/k/v, and gate/up
// of a dense MLP.
std::vector<std::vector<std::string>> FusedModules(const HfConfig& c, int l) {
  const LayerNames n = NamesOfLayer(l);
  std::vector<std::vector<std::string>> out = {{Module(n.q), Module(n.k), Module(n.v)}};
  if (c.num_local_experts == 0) out.push_back({Module(n.gate), Module(n.up)});
  return out;
}

// Checks every tensor of the layout that is not a linear layer's weight
// (those are the plan's) and the plan's tensors; returns the plan.
absl::StatusOr<std::unique_ptr<LinearPlan>> CheckCheckpoint(const std::string& model_dir, const HfConfig& c,
                                                            const WeightStore& store,
                                                            const WeightSchemeRequest& request,
                                                            int64_t* parameters) {
  const auto in_dir = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat(model_dir, ": ", status.message()));
  };
  auto plan = LinearPlan::Create(model_dir, c, &store, request);
  if (!plan.ok()) return in_dir(plan.status());
  *parameters = 0;
  for (const auto& entry : LlamaFamilyLayout(c, DType::kF32)) {
    int64_t numel = 1;
    for (int64_t d : entry.spec.shape) numel *= d;
    *parameters += numel;
    if (entry.role == TensorRole::kLinear || entry.role == TensorRole::kRouter) continue;
    auto view = store.GetWithShape(entry.spec.name, entry.spec.shape);
    if (!view.ok()) return in_dir(view.status());
  }
  if (auto status = (*plan)->CheckTensors(); !status.ok()) return in_dir(status);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (const auto& fused : FusedModules(c, l)) {
      if (auto status = (*plan)->CheckFusable(fused); !status.ok()) return in_dir(status);
    }
  }
  return plan;
}

}  // namespace

absl::StatusOr<CheckpointSummary> LlamaModel::Inspect(const std::string& model_dir, const HfConfig& config,
                                                      const WeightSchemeRequest& request) {
  ASSIGN_OR_RETURN(auto store, WeightStore::Open(model_dir));
  CheckpointSummary summary;
  ASSIGN_OR_RETURN(auto plan, CheckCheckpoint(model_dir, config, *store, request, &summary.parameters));
  summary.weight_scheme = plan->Describe();
  summary.quantized = plan->quantized();
  auto kv_scales = ReadKvCacheScales(*store, config);
  if (!kv_scales.ok()) {
    return absl::Status(kv_scales.status().code(), absl::StrCat(model_dir, ": ", kv_scales.status().message()));
  }
  summary.kv_cache_scales = kv_scales->present();
  return summary;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& model_dir, Backend* backend,
                                                            const LlamaModelOptions& options) {
  std::unique_ptr<LlamaModel> model(new LlamaModel());
  model->backend_ = backend;
  ASSIGN_OR_RETURN(model->config_, LoadHfConfig(model_dir));
  const HfConfig& c = model->config_;
  ASSIGN_OR_RETURN(auto store, WeightStore::Open(model_dir));
  // Check the whole layout and the backend's schemes first, so a bad
  // checkpoint or an unsupported scheme fails before any upload.
  int64_t parameters = 0;
  ASSIGN_OR_RETURN(auto plan, CheckCheckpoint(model_dir, c, *store, options.weight_scheme, &parameters));
  for (const LinearScheme& scheme : plan->Schemes()) {
    if (auto status = backend->SupportsWeightScheme(scheme); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat(model_dir, " (", plan->Describe(), "): ", status.message()));
    }
  }
  model->weight_scheme_ = plan->Describe();
  auto kv_scales = ReadKvCacheScales(*store, c);
  if (!kv_scales.ok()) {
    return absl::Status(kv_scales.status().code(), absl::StrCat(model_dir, ": ", kv_scales.status().message()));
  }
  model->kv_cache_dtype_ = options.kv_cache_dtype;
  model->kv_cache_description_ = KvCacheDtypeName(options.kv_cache_dtype);
  if (options.kv_cache_dtype == KvCacheDtype::kFp8E4M3) {
    if (kv_scales->present()) {
      model->kv_k_scales_ = std::move(kv_scales->k);
      model->kv_v_scales_ = std::move(kv_scales->v);
      model->kv_cache_description_ = "fp8 (checkpoint scales)";
    } else {
      model->kv_cache_description_ = "fp8 (scales 1.0: the checkpoint has none)";
    }
  }
  if (options.attention.moa()) {
    auto moa = LoadMoaPlan(options.attention.plan_path);
    if (!moa.ok()) return moa.status();
    RETURN_IF_ERROR(CheckMoaPlanFits(*moa, c, c.max_position_embeddings));
    model->moa_plan_ = std::move(*moa);
  }
  const auto get = [&](const std::string& name) { return store->Get(name); };
  const auto linear = [&](const std::vector<std::string>& modules, bool with_bias) {
    return plan->Prepare(*backend, modules, with_bias);
  };

  ASSIGN_OR_RETURN(TensorView embed, get(kEmbedTokens));
  ASSIGN_OR_RETURN(model->embed_, backend->UploadWeight(embed));
  ASSIGN_OR_RETURN(TensorView final_norm, get(kFinalNorm));
  ASSIGN_OR_RETURN(model->final_norm_, backend->UploadWeight(final_norm));
  ASSIGN_OR_RETURN(model->lm_head_, linear({"lm_head"}, false));
  ASSIGN_OR_RETURN(std::vector<float> inv_freq, RopeInverseFrequencies(c));
  ASSIGN_OR_RETURN(model->inv_freq_, backend->UploadFp32Table(inv_freq));

  if (model->moa_plan_.has_value()) {
    ASSIGN_OR_RETURN(model->spans_, backend->UploadAttentionSpans(*model->moa_plan_));
  }

  model->layers_.resize(c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerNames n = NamesOfLayer(l);
    const std::vector<std::vector<std::string>> fused = FusedModules(c, l);
    Layer& layer = model->layers_[l];
    ASSIGN_OR_RETURN(TensorView in_norm, get(n.input_norm));
    ASSIGN_OR_RETURN(layer.input_norm, backend->UploadWeight(in_norm));
    ASSIGN_OR_RETURN(TensorView post_norm, get(n.post_norm));
    ASSIGN_OR_RETURN(layer.post_norm, backend->UploadWeight(post_norm));
    ASSIGN_OR_RETURN(layer.qkv, linear(fused[0], c.attention_bias));
    ASSIGN_OR_RETURN(layer.o, linear({Module(n.o)}, false));
    if (c.num_local_experts > 0) {
      ASSIGN_OR_RETURN(layer.router, linear({Module(n.router)}, false));
      layer.experts.top_k = static_cast<int32_t>(c.num_experts_per_tok);
      for (int e = 0; e < c.num_local_experts; ++e) {
        ASSIGN_OR_RETURN(auto gate, linear({Module(n.ExpertGate(e))}, false));
        ASSIGN_OR_RETURN(auto up, linear({Module(n.ExpertUp(e))}, false));
        ASSIGN_OR_RETURN(auto down, linear({Module(n.ExpertDown(e))}, false));
        layer.experts.gate.push_back(std::move(gate));
        layer.experts.up.push_back(std::move(up));
        layer.experts.down.push_back(std::move(down));
      }
    } else {
      ASSIGN_OR_RETURN(layer.gate_up, linear(fused[1], false));
      ASSIGN_OR_RETURN(layer.down, linear({Module(n.down)}, false));
    }
  }
  model->weight_bytes_ = model->SumWeightBytes();
  for (const Layer& layer : model->layers_) {
    if (layer.experts.gate.empty()) continue;
    model->graph_max_seqs_ = std::min(model->graph_max_seqs_, backend->MoeDeviceMaxTokens(layer.experts));
  }
  return model;
}

size_t LlamaModel::SumWeightBytes() const {
  size_t total = 0;
  const auto add = [&total](const auto& weight) {
    if (weight != nullptr) total += weight->bytes();
  };
  add(embed_);
  add(final_norm_);
  add(lm_head_);
  add(inv_freq_);
  for (const Layer& layer : layers_) {
    add(layer.input_norm);
    add(layer.post_norm);
    add(layer.qkv);
    add(layer.o);
    add(layer.gate_up);
    add(layer.down);
    add(layer.router);
    for (const auto* experts : {&layer.experts.gate, &layer.experts.up, &layer.experts.down}) {
      for (const auto& expert : *experts) add(expert);
    }
  }
  return total;
}

KvCacheSpec LlamaModel::CacheSpec(int32_t num_blocks, int32_t block_size) const {
  KvCacheSpec spec;
  spec.num_layers = static_cast<int32_t>(config_.num_hidden_layers);
  spec.num_blocks = num_blocks;
  spec.block_size = block_size;
  spec.num_kv_heads = static_cast<int32_t>(config_.num_key_value_heads);
  spec.head_dim = static_cast<int32_t>(config_.head_dim);
  spec.dtype = kv_cache_dtype_;
  spec.k_head_scales = kv_k_scales_;
  spec.v_head_scales = kv_v_scales_;
  return spec;
}

absl::StatusOr<Tensor> LlamaModel::ForwardLogits(const ForwardBatch& batch, KvCache& cache) {
  const HfConfig& c = config_;
  Backend& b = *backend_;
  const int64_t tokens = batch.num_tokens();
  const int64_t hidden = c.hidden_size;
  const int64_t q_width = c.num_attention_heads * c.head_dim;
  const int64_t kv_width = c.num_key_value_heads * c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  RETURN_IF_ERROR(b.BeginStep(batch));

  AttentionOptions attention;
  attention.num_heads = static_cast<int32_t>(c.num_attention_heads);
  attention.num_kv_heads = static_cast<int32_t>(c.num_key_value_heads);
  attention.head_dim = static_cast<int32_t>(c.head_dim);
  attention.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  attention.sliding_window = static_cast<int32_t>(c.sliding_window);
  attention.spans = spans_.get();

  Tensor x = b.Scratch(kX, tokens, hidden);
  Tensor normed = b.Scratch(kNormed, tokens, hidden);
  Tensor qkv = b.Scratch(kQkv, tokens, q_width + 2 * kv_width);
  Tensor attn = b.Scratch(kAttn, tokens, q_width);
  Tensor branch = b.Scratch(kBranch, tokens, hidden);
  b.Embed(*embed_, x);
  for (int32_t l = 0; l < int32_t(layers_.size()); ++l) {
    const Layer& layer = layers_[l];
    // The previous layer's FFN output joins the residual stream in the same
    // pass that normalizes it for this layer.
    if (l == 0) {
      b.RmsNorm(x, *layer.input_norm, eps, normed);
    } else {
      b.AddRmsNorm(x, branch, *layer.input_norm, eps, normed);
    }
    b.Linear(normed, *layer.qkv, qkv);
    Tensor q = qkv.Columns(0, q_width);
    Tensor k = qkv.Columns(q_width, kv_width);
    Tensor v = qkv.Columns(q_width + kv_width, kv_width);
    b.RopeWriteKv(q, k, v, attention.head_dim, *inv_freq_, cache, l);
    b.Attention(q, cache, l, attention, attn);
    b.Linear(attn, *layer.o, branch);
    b.AddRmsNorm(x, branch, *layer.post_norm, eps, normed);
    if (layer.router != nullptr) {
      Tensor router = b.Scratch(kRouter, tokens, c.num_local_experts);
      b.Linear(normed, *layer.router, router);
      b.MoeFfn(normed, router, layer.experts, branch);
    } else {
      Tensor gate_up = b.Scratch(kGateUp, tokens, 2 * c.intermediate_size);
      Tensor act = b.Scratch(kAct, tokens, c.intermediate_size);
      b.Linear(normed, *layer.gate_up, gate_up);
      b.SiluMul(gate_up, act);
      b.Linear(act, *layer.down, branch);
    }
  }
  if (!layers_.empty()) b.Add(x, branch);
  const int64_t rows = int64_t(batch.logits_rows.size());
  Tensor selected = b.Scratch(kSelected, rows, hidden);
  Tensor out = b.Scratch(kLogits, rows, c.vocab_size);
  b.GatherLogitRows(x, selected);
  b.RmsNorm(selected, *final_norm_, eps, selected);
  b.Linear(selected, *lm_head_, out);
  b.EndForward();
  return out;
}

absl::Status LlamaModel::Forward(const ForwardBatch& batch, KvCache& cache, std::vector<float>* logits) {
  ASSIGN_OR_RETURN(Tensor out, ForwardLogits(batch, cache));
  RETURN_IF_ERROR(backend_->FinishStep());
  logits->resize(size_t(out.rows) * size_t(out.cols));
  backend_->ReadToHost(out, logits->data());
  return absl::OkStatus();
}

}  // namespace tern::runtime
