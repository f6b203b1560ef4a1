#include "runtime/model/weight_layout.h"

#include "absl/strings/str_cat.h"

namespace tern::runtime {

std::string LayerNames::ExpertGate(int e) const {
  return absl::StrCat(prefix, "block_sparse_moe.experts.", e, ".w1.weight");
}
std::string LayerNames::ExpertDown(int e) const {
  return absl::StrCat(prefix, "block_sparse_moe.experts.", e, ".w2.weight");
}
std::string LayerNames::ExpertUp(int e) const {
  return absl::StrCat(prefix, "block_sparse_moe.experts.", e, ".w3.weight");
}

LayerNames NamesOfLayer(int layer) {
  LayerNames n;
  n.prefix = absl::StrCat("model.layers.", layer, ".");
  n.input_norm = n.prefix + "input_layernorm.weight";
  n.q = n.prefix + "self_attn.q_proj.weight";
  n.k = n.prefix + "self_attn.k_proj.weight";
  n.v = n.prefix + "self_attn.v_proj.weight";
  n.o = n.prefix + "self_attn.o_proj.weight";
  n.q_bias = n.prefix + "self_attn.q_proj.bias";
  n.k_bias = n.prefix + "self_attn.k_proj.bias";
  n.v_bias = n.prefix + "self_attn.v_proj.bias";
  n.post_norm = n.prefix + "post_attention_layernorm.weight";
  n.gate = n.prefix + "mlp.gate_proj.weight";
  n.up = n.prefix + "mlp.up_proj.weight";
  n.down = n.prefix + "mlp.down_proj.weight";
  n.router = n.prefix + "block_sparse_moe.gate.weight";
  return n;
}

std::vector<LayoutEntry> LlamaFamilyLayout(const HfConfig& c, DType dtype) {
  const int64_t h = c.hidden_size;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  const int64_t inter = c.intermediate_size;
  std::vector<LayoutEntry> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, TensorRole role) {
    out.push_back({TensorSpec{name, dtype, std::move(shape)}, role});
  };
  add(kEmbedTokens, {c.vocab_size, h}, TensorRole::kEmbedding);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerNames n = NamesOfLayer(l);
    add(n.input_norm, {h}, TensorRole::kNorm);
    add(n.q, {q, h}, TensorRole::kLinear);
    add(n.k, {kv, h}, TensorRole::kLinear);
    add(n.v, {kv, h}, TensorRole::kLinear);
    if (c.attention_bias) {
      add(n.q_bias, {q}, TensorRole::kBias);
      add(n.k_bias, {kv}, TensorRole::kBias);
      add(n.v_bias, {kv}, TensorRole::kBias);
    }
    add(n.o, {h, q}, TensorRole::kLinear);
    add(n.post_norm, {h}, TensorRole::kNorm);
    if (c.num_local_experts > 0) {
      add(n.router, {c.num_local_experts, h}, TensorRole::kRouter);
      for (int e = 0; e < c.num_local_experts; ++e) {
        add(n.ExpertGate(e), {inter, h}, TensorRole::kLinear);
        add(n.ExpertDown(e), {h, inter}, TensorRole::kLinear);
        add(n.ExpertUp(e), {inter, h}, TensorRole::kLinear);
      }
    } else {
      add(n.gate, {inter, h}, TensorRole::kLinear);
      add(n.up, {inter, h}, TensorRole::kLinear);
      add(n.down, {h, inter}, TensorRole::kLinear);
    }
  }
  add(kFinalNorm, {h}, TensorRole::kNorm);
  if (!c.tie_word_embeddings) add(kLmHead, {c.vocab_size, h}, TensorRole::kLinear);
  return out;
}

}  // namespace tern::runtime
