#include "runtime/model/llama_model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
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

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& model_dir, Backend* backend,
                                                            const LlamaModelOptions& options) {
  std::unique_ptr<LlamaModel> model(new LlamaModel());
  model->backend_ = backend;
  ASSIGN_OR_RETURN(model->config_, LoadHfConfig(model_dir));
  const HfConfig& c = model->config_;
  ASSIGN_OR_RETURN(auto store, WeightStore::Open(model_dir));
  // Check the whole layout first, so a bad checkpoint fails before any upload.
  for (const auto& entry : LlamaFamilyLayout(c, DType::kF32)) {
    auto view = store->GetWithShape(entry.spec.name, entry.spec.shape);
    if (!view.ok()) return absl::Status(view.status().code(), absl::StrCat(model_dir, ": ", view.status().message()));
  }
  const auto get = [&](const std::string& name) { return store->Get(name); };

  ASSIGN_OR_RETURN(TensorView embed, get(kEmbedTokens));
  ASSIGN_OR_RETURN(model->embed_, backend->UploadWeight(embed));
  ASSIGN_OR_RETURN(TensorView final_norm, get(kFinalNorm));
  ASSIGN_OR_RETURN(model->final_norm_, backend->UploadWeight(final_norm));
  if (c.tie_word_embeddings) {
    ASSIGN_OR_RETURN(model->lm_head_, backend->PrepareLinear(embed, nullptr, options.linear));
  } else {
    ASSIGN_OR_RETURN(TensorView lm_head, get(kLmHead));
    ASSIGN_OR_RETURN(model->lm_head_, backend->PrepareLinear(lm_head, nullptr, options.linear));
  }
  ASSIGN_OR_RETURN(std::vector<float> inv_freq, RopeInverseFrequencies(c));
  ASSIGN_OR_RETURN(model->inv_freq_, backend->UploadFp32Table(inv_freq));

  model->layers_.resize(c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerNames n = NamesOfLayer(l);
    Layer& layer = model->layers_[l];
    ASSIGN_OR_RETURN(TensorView in_norm, get(n.input_norm));
    ASSIGN_OR_RETURN(layer.input_norm, backend->UploadWeight(in_norm));
    ASSIGN_OR_RETURN(TensorView post_norm, get(n.post_norm));
    ASSIGN_OR_RETURN(layer.post_norm, backend->UploadWeight(post_norm));
    ASSIGN_OR_RETURN(TensorView q, get(n.q));
    ASSIGN_OR_RETURN(TensorView k, get(n.k));
    ASSIGN_OR_RETURN(TensorView v, get(n.v));
    std::vector<TensorView> qkv_bias;
    if (c.attention_bias) {
      ASSIGN_OR_RETURN(TensorView qb, get(n.q_bias));
      ASSIGN_OR_RETURN(TensorView kb, get(n.k_bias));
      ASSIGN_OR_RETURN(TensorView vb, get(n.v_bias));
      qkv_bias = {qb, kb, vb};
    }
    ASSIGN_OR_RETURN(layer.qkv, backend->PrepareFusedLinear({q, k, v}, qkv_bias, options.linear));
    ASSIGN_OR_RETURN(TensorView o, get(n.o));
    ASSIGN_OR_RETURN(layer.o, backend->PrepareLinear(o, nullptr, options.linear));
    if (c.num_local_experts > 0) {
      ASSIGN_OR_RETURN(TensorView router, get(n.router));
      ASSIGN_OR_RETURN(layer.router, backend->PrepareLinear(router, nullptr, LinearOptions{}));
      layer.experts.top_k = static_cast<int32_t>(c.num_experts_per_tok);
      for (int e = 0; e < c.num_local_experts; ++e) {
        ASSIGN_OR_RETURN(TensorView w1, get(n.ExpertGate(e)));
        ASSIGN_OR_RETURN(TensorView w3, get(n.ExpertUp(e)));
        ASSIGN_OR_RETURN(TensorView w2, get(n.ExpertDown(e)));
        ASSIGN_OR_RETURN(auto gate, backend->PrepareLinear(w1, nullptr, options.linear));
        ASSIGN_OR_RETURN(auto up, backend->PrepareLinear(w3, nullptr, options.linear));
        ASSIGN_OR_RETURN(auto down, backend->PrepareLinear(w2, nullptr, options.linear));
        layer.experts.gate.push_back(std::move(gate));
        layer.experts.up.push_back(std::move(up));
        layer.experts.down.push_back(std::move(down));
      }
    } else {
      ASSIGN_OR_RETURN(TensorView gate, get(n.gate));
      ASSIGN_OR_RETURN(TensorView up, get(n.up));
      ASSIGN_OR_RETURN(TensorView down, get(n.down));
      ASSIGN_OR_RETURN(layer.gate_up, backend->PrepareFusedLinear({gate, up}, {}, options.linear));
      ASSIGN_OR_RETURN(layer.down, backend->PrepareLinear(down, nullptr, options.linear));
    }
  }
  return model;
}

KvCacheSpec LlamaModel::CacheSpec(int32_t num_blocks, int32_t block_size) const {
  KvCacheSpec spec;
  spec.num_layers = static_cast<int32_t>(config_.num_hidden_layers);
  spec.num_blocks = num_blocks;
  spec.block_size = block_size;
  spec.num_kv_heads = static_cast<int32_t>(config_.num_key_value_heads);
  spec.head_dim = static_cast<int32_t>(config_.head_dim);
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
