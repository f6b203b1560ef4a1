#include "runtime/dit/dit_weights.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/dit/dit_linear_plan.h"
#include "runtime/model/rtn_quantizer.h"

namespace tern::runtime {
namespace {

// The checkpoint names of one naming scheme.
struct Names {
  DitNaming naming;
  std::string patch_embed, time_fc1, time_fc2, class_table, final_adaln, final_linear;
  std::string Block(int32_t i, const char* part) const {
    // adaln is the only block part whose name differs.
    const std::string p = std::string(part) == "adaln"
                              ? (naming == DitNaming::kTern ? "adaLN_modulation" : "adaLN_modulation.1")
                              : part;
    return absl::StrCat("blocks.", i, ".", p);
  }
};

Names NamesOf(DitNaming naming) {
  if (naming == DitNaming::kTern) {
    return {naming, "x_embedder", "t_embedder.fc1", "t_embedder.fc2", "y_embedder.weight",
            "final_layer.adaLN_modulation", "final_layer.linear"};
  }
  return {naming, "x_embedder.proj", "t_embedder.mlp.0", "t_embedder.mlp.2", "y_embedder.embedding_table.weight",
          "final_layer.adaLN_modulation.1", "final_layer.linear"};
}

constexpr char kPosEmbed[] = "pos_embed";
constexpr char kDiffusersPosEmbed[] = "pos_embed.pos_embed";

// The tensors' bytes, shapes and dtypes equal.
bool SameTensor(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes &&
         (a.data == b.data || std::memcmp(a.data, b.data, a.nbytes) == 0);
}

// `weight` (any float dtype, read as [out, numel / out]) and `bias` quantized
// by round-to-nearest to `scheme` and prepared by the ops; errors name
// `module`.
absl::StatusOr<std::unique_ptr<DitLinear>> PrepareQuantized(const std::string& module, const LinearScheme& scheme,
                                                            const TensorView& weight, const TensorView* bias,
                                                            DitOps* ops) {
  const auto in_module = [&module](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("layer \"", module, "\" (", s.message(), ")"));
  };
  for (const TensorView* t : {&weight, bias}) {
    if (t == nullptr) continue;
    if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t->name, "\" has dtype ",
                                                     DTypeSafetensorsName(t->dtype), "; expected F32, F16 or BF16"));
    }
  }
  CHECK(!weight.shape.empty() && weight.shape[0] > 0);
  const int64_t out = weight.shape[0];
  const int64_t in = weight.numel() / out;
  std::vector<float> w(weight.numel());
  ConvertToFloat(weight.dtype, weight.data, w.size(), w.data());
  std::vector<float> b;
  if (bias != nullptr) {
    CHECK_EQ(bias->numel(), out) << bias->name;
    b.resize(out);
    ConvertToFloat(bias->dtype, bias->data, b.size(), b.data());
  }
  RtnOptions options;
  options.scheme = scheme;
  auto quantized = QuantizeRtn(w, out, in, options, std::move(b));
  if (!quantized.ok()) return in_module(quantized.status());
  auto linear = ops->PrepareQuantizedLinear(*quantized);
  if (!linear.ok()) return in_module(linear.status());
  return linear;
}

}  // namespace

absl::StatusOr<TensorView> StackTensorRows(const std::vector<TensorView>& parts, const std::string& name,
                                           std::vector<uint8_t>* storage) {
  CHECK(!parts.empty());
  const int64_t cols = parts[0].numel() / std::max<int64_t>(parts[0].shape.empty() ? 1 : parts[0].shape[0], 1);
  bool same_dtype = true;
  int64_t rows = 0;
  for (const TensorView& part : parts) {
    if (part.shape.empty() || part.numel() == 0 || part.numel() / part.shape[0] != cols) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", part.name, "\" ", part.ShapeString(),
                                                     " is not [rows, ", cols, "] like \"", parts[0].name, "\""));
    }
    same_dtype = same_dtype && part.dtype == parts[0].dtype;
    rows += part.shape[0];
  }
  TensorView out;
  out.name = name;
  out.shape = {rows, cols};
  out.dtype = same_dtype ? parts[0].dtype : DType::kF32;
  const size_t element = DTypeSize(out.dtype);
  storage->resize(size_t(rows) * size_t(cols) * element);
  size_t offset = 0;
  for (const TensorView& part : parts) {
    const size_t count = size_t(part.numel());
    if (same_dtype) {
      std::memcpy(storage->data() + offset, part.data, part.nbytes);
    } else {
      ConvertToFloat(part.dtype, part.data, count, reinterpret_cast<float*>(storage->data() + offset));
    }
    offset += count * element;
  }
  out.data = storage->data();
  out.nbytes = storage->size();
  return out;
}

static std::vector<DitTensorSpec> DiffusersLayout(const DitConfig& c) {
  const int64_t h = c.hidden_size, p = c.patch_size;
  std::vector<DitTensorSpec> layout;
  const auto linear = [&layout](const std::string& prefix, int64_t out, int64_t in, bool bias = true) {
    layout.push_back({prefix + ".weight", {out, in}});
    if (bias) layout.push_back({prefix + ".bias", {out}});
  };
  layout.push_back({"pos_embed.proj.weight", {h, c.in_channels, p, p}});
  layout.push_back({"pos_embed.proj.bias", {h}});
  layout.push_back({kDiffusersPosEmbed, {1, c.num_tokens(), h}, /*optional=*/true});
  for (int32_t i = 0; i < c.depth; ++i) {
    const std::string b = absl::StrCat("transformer_blocks.", i, ".");
    linear(b + "norm1.emb.timestep_embedder.linear_1", h, c.frequency_embedding_size);
    linear(b + "norm1.emb.timestep_embedder.linear_2", h, h);
    layout.push_back({b + "norm1.emb.class_embedder.embedding_table.weight", {c.num_classes + 1, h}});
    linear(b + "norm1.linear", 6 * h, h);
    linear(b + "attn1.to_q", h, h, c.attention_bias);
    linear(b + "attn1.to_k", h, h, c.attention_bias);
    linear(b + "attn1.to_v", h, h, c.attention_bias);
    linear(b + "attn1.to_out.0", h, h);
    linear(b + "ff.net.0.proj", c.mlp_hidden(), h);
    linear(b + "ff.net.2", h, c.mlp_hidden());
  }
  linear("proj_out_1", 2 * h, h);
  linear("proj_out_2", p * p * c.out_channels(), h);
  return layout;
}

std::vector<DitTensorSpec> DitTensorLayout(const DitConfig& c, DitNaming naming) {
  if (naming == DitNaming::kDiffusers) return DiffusersLayout(c);
  const Names n = NamesOf(naming);
  const int64_t h = c.hidden_size, p = c.patch_size;
  std::vector<DitTensorSpec> layout;
  const auto linear = [&layout](const std::string& prefix, int64_t out, int64_t in) {
    layout.push_back({prefix + ".weight", {out, in}});
    layout.push_back({prefix + ".bias", {out}});
  };
  layout.push_back({n.patch_embed + ".weight", {h, c.in_channels, p, p}});
  layout.push_back({n.patch_embed + ".bias", {h}});
  layout.push_back({kPosEmbed, {1, c.num_tokens(), h}, /*optional=*/true});
  linear(n.time_fc1, h, c.frequency_embedding_size);
  linear(n.time_fc2, h, h);
  layout.push_back({n.class_table, {c.num_classes + (c.has_null_class() ? 1 : 0), h}});
  for (int32_t i = 0; i < c.depth; ++i) {
    linear(n.Block(i, "adaln"), 6 * h, h);
    linear(n.Block(i, "attn.qkv"), 3 * h, h);
    linear(n.Block(i, "attn.proj"), h, h);
    linear(n.Block(i, "mlp.fc1"), c.mlp_hidden(), h);
    linear(n.Block(i, "mlp.fc2"), h, c.mlp_hidden());
  }
  linear(n.final_adaln, 2 * h, h);
  linear(n.final_linear, p * p * c.out_channels(), h);
  return layout;
}

std::vector<DitLinearModule> DitLinearModules(const DitConfig& c, DitNaming naming) {
  const int64_t h = c.hidden_size, p = c.patch_size;
  const int64_t patch_in = int64_t(c.in_channels) * p * p, final_out = p * p * c.out_channels();
  std::vector<DitLinearModule> modules;
  const auto add = [&modules](std::string name, DitLinearRole role, int32_t block, int64_t out, int64_t in) {
    modules.push_back({std::move(name), role, block, out, in});
  };
  if (naming == DitNaming::kDiffusers) {
    add("pos_embed.proj", DitLinearRole::kPatchEmbed, -1, h, patch_in);
    for (int32_t i = 0; i < c.depth; ++i) {
      const std::string b = absl::StrCat("transformer_blocks.", i, ".");
      add(b + "norm1.emb.timestep_embedder.linear_1", DitLinearRole::kTimestepEmbed, i, h,
          c.frequency_embedding_size);
      add(b + "norm1.emb.timestep_embedder.linear_2", DitLinearRole::kTimestepEmbed, i, h, h);
      add(b + "norm1.linear", DitLinearRole::kAdaLN, i, 6 * h, h);
      for (const char* part : {"to_q", "to_k", "to_v"}) add(b + "attn1." + part, DitLinearRole::kQkv, i, h, h);
      add(b + "attn1.to_out.0", DitLinearRole::kAttentionOut, i, h, h);
      add(b + "ff.net.0.proj", DitLinearRole::kMlpFc1, i, c.mlp_hidden(), h);
      add(b + "ff.net.2", DitLinearRole::kMlpFc2, i, h, c.mlp_hidden());
    }
    add("proj_out_1", DitLinearRole::kFinalAdaLN, -1, 2 * h, h);
    add("proj_out_2", DitLinearRole::kFinalLinear, -1, final_out, h);
    return modules;
  }
  const Names n = NamesOf(naming);
  add(n.patch_embed, DitLinearRole::kPatchEmbed, -1, h, patch_in);
  add(n.time_fc1, DitLinearRole::kTimestepEmbed, -1, h, c.frequency_embedding_size);
  add(n.time_fc2, DitLinearRole::kTimestepEmbed, -1, h, h);
  for (int32_t i = 0; i < c.depth; ++i) {
    add(n.Block(i, "adaln"), DitLinearRole::kAdaLN, i, 6 * h, h);
    add(n.Block(i, "attn.qkv"), DitLinearRole::kQkv, i, 3 * h, h);
    add(n.Block(i, "attn.proj"), DitLinearRole::kAttentionOut, i, h, h);
    add(n.Block(i, "mlp.fc1"), DitLinearRole::kMlpFc1, i, c.mlp_hidden(), h);
    add(n.Block(i, "mlp.fc2"), DitLinearRole::kMlpFc2, i, h, c.mlp_hidden());
  }
  add(n.final_adaln, DitLinearRole::kFinalAdaLN, -1, 2 * h, h);
  add(n.final_linear, DitLinearRole::kFinalLinear, -1, final_out, h);
  return modules;
}

DitNaming DetectDitNaming(const DitConfig& config, const WeightStore& store) {
  if (config.layout == DitLayout::kDiffusers) return DitNaming::kDiffusers;
  return store.Contains("x_embedder.proj.weight") ? DitNaming::kOriginal : DitNaming::kTern;
}

std::vector<float> DitPositionTable(int32_t hidden, int32_t grid) {
  CHECK(hidden % 4 == 0) << "hidden " << hidden << " is not a multiple of 4";
  const int32_t quarter = hidden / 4;
  std::vector<float> table(size_t(grid) * grid * hidden);
  for (int32_t row = 0; row < grid; ++row) {
    for (int32_t col = 0; col < grid; ++col) {
      float* out = table.data() + (size_t(row) * grid + col) * hidden;
      for (int32_t i = 0; i < quarter; ++i) {
        const double w = 1.0 / std::pow(10000.0, double(i) / double(quarter));
        out[i] = static_cast<float>(std::sin(col * w));
        out[quarter + i] = static_cast<float>(std::cos(col * w));
        out[2 * quarter + i] = static_cast<float>(std::sin(row * w));
        out[3 * quarter + i] = static_cast<float>(std::cos(row * w));
      }
    }
  }
  return table;
}

absl::StatusOr<DitWeights> DitWeights::Load(const DitConfig& config, const WeightStore& store, DitOps* ops,
                                            const DitLinearPlan* plan, bool stack_modulations) {
  const DitNaming naming = DetectDitNaming(config, store);
  if (plan != nullptr) {
    for (const LinearScheme& scheme : plan->schemes()) RETURN_IF_ERROR(ops->CheckWeightScheme(scheme));
  }
  // `module`'s layer as the plan says: as stored, or quantized here.
  const auto prepare = [&](const std::string& module, const TensorView& weight,
                           const TensorView* bias) -> absl::StatusOr<std::unique_ptr<DitLinear>> {
    if (plan == nullptr || plan->For(module).scheme == WeightScheme::kDense) return ops->PrepareLinear(weight, bias);
    return PrepareQuantized(module, plan->For(module), weight, bias, ops);
  };
  std::map<std::string, DitTensorSpec> specs;
  for (auto& spec : DitTensorLayout(config, naming)) specs.emplace(spec.name, spec);
  const auto get = [&](const std::string& name) -> absl::StatusOr<TensorView> {
    const auto it = specs.find(name);
    CHECK(it != specs.end()) << name << " is not in the layout";
    return store.GetWithShape(name, it->second.shape);
  };
  const auto linear = [&](const std::string& prefix) -> absl::StatusOr<std::unique_ptr<DitLinear>> {
    ASSIGN_OR_RETURN(const TensorView weight, get(prefix + ".weight"));
    ASSIGN_OR_RETURN(const TensorView bias, get(prefix + ".bias"));
    return prepare(prefix, weight, &bias);
  };
  // The adaLN projections (the blocks' `prefixes`, then the final layer's),
  // all reading SiLU(cond) when `shared_cond`: stacked into w.modulations
  // when the blocks' share a scheme (the final layer's with them when it
  // runs that scheme too), else prepared one by one.
  const auto modulation_layers = [&](const std::vector<std::string>& prefixes, bool shared_cond,
                                     DitWeights* w) -> absl::Status {
    CHECK_EQ(prefixes.size(), w->blocks.size() + 1);
    const auto same_scheme = [&](const std::string& a, const std::string& b) {
      return plan == nullptr || plan->For(a) == plan->For(b);
    };
    bool stack = stack_modulations && shared_cond && !w->blocks.empty();
    for (size_t i = 1; stack && i < w->blocks.size(); ++i) stack = same_scheme(prefixes[i], prefixes[0]);
    const bool with_final = stack && same_scheme(prefixes.back(), prefixes[0]);
    if (!with_final) {
      ASSIGN_OR_RETURN(w->final_adaln, linear(prefixes.back()));
    }
    if (!stack) {
      for (size_t i = 0; i < w->blocks.size(); ++i) {
        ASSIGN_OR_RETURN(w->blocks[i].adaln, linear(prefixes[i]));
      }
      return absl::OkStatus();
    }
    std::vector<TensorView> weights, biases;
    for (size_t i = 0; i < prefixes.size() - (with_final ? 0 : 1); ++i) {
      ASSIGN_OR_RETURN(TensorView weight, get(prefixes[i] + ".weight"));
      ASSIGN_OR_RETURN(TensorView bias, get(prefixes[i] + ".bias"));
      weights.push_back(std::move(weight));
      biases.push_back(std::move(bias));
    }
    std::vector<uint8_t> weight_storage, bias_storage;
    ASSIGN_OR_RETURN(const TensorView weight,
                     StackTensorRows(weights, "the stacked adaLN projections' weight", &weight_storage));
    ASSIGN_OR_RETURN(TensorView bias, StackTensorRows(biases, "the stacked adaLN projections' bias", &bias_storage));
    bias.shape = {bias.shape[0]};
    ASSIGN_OR_RETURN(w->modulations, prepare(prefixes[0], weight, &bias));
    return absl::OkStatus();
  };
  const auto position_table = [&](const char* name) -> absl::StatusOr<std::unique_ptr<DitTable>> {
    if (store.Contains(name)) {
      ASSIGN_OR_RETURN(const TensorView pos, get(name));
      return ops->UploadTable(pos, config.num_tokens());
    }
    if (config.hidden_size % 4 != 0) {
      return absl::NotFoundError(absl::StrCat("tensor \"", name, "\" is absent, and hidden_size ",
                                              config.hidden_size, " is not a multiple of 4 to compute it"));
    }
    const std::vector<float> table = DitPositionTable(config.hidden_size, config.grid_size());
    return ops->UploadTable(table, config.num_tokens(), config.hidden_size);
  };

  DitWeights w;
  if (naming == DitNaming::kDiffusers) {
    ASSIGN_OR_RETURN(w.patch_embed, linear("pos_embed.proj"));
    ASSIGN_OR_RETURN(w.pos_embed, position_table(kDiffusersPosEmbed));
    // Block i's conditioning embedders: shared with block 0's when equal.
    std::vector<TensorView> first;
    std::vector<std::string> adaln_prefixes;
    bool shared_cond = true;
    for (int32_t i = 0; i < config.depth; ++i) {
      const std::string b = absl::StrCat("transformer_blocks.", i, ".");
      const std::string names[5] = {
          b + "norm1.emb.timestep_embedder.linear_1.weight", b + "norm1.emb.timestep_embedder.linear_1.bias",
          b + "norm1.emb.timestep_embedder.linear_2.weight", b + "norm1.emb.timestep_embedder.linear_2.bias",
          b + "norm1.emb.class_embedder.embedding_table.weight"};
      std::vector<TensorView> views;
      for (const std::string& name : names) {
        ASSIGN_OR_RETURN(TensorView view, get(name));
        views.push_back(std::move(view));
      }
      DitBlockWeights block;
      bool shared = i > 0;
      for (size_t k = 0; shared && k < views.size(); ++k) shared = SameTensor(views[k], first[k]);
      if (!shared) {
        DitConditioningWeights cond;
        ASSIGN_OR_RETURN(cond.t_fc1, prepare(b + "norm1.emb.timestep_embedder.linear_1", views[0], &views[1]));
        ASSIGN_OR_RETURN(cond.t_fc2, prepare(b + "norm1.emb.timestep_embedder.linear_2", views[2], &views[3]));
        ASSIGN_OR_RETURN(cond.class_table, ops->UploadTable(views[4], 0));
        if (i == 0) {
          w.cond = std::move(cond);
          first = views;
        } else {
          block.cond = std::make_unique<DitConditioningWeights>(std::move(cond));
          shared_cond = false;
        }
      }
      adaln_prefixes.push_back(b + "norm1.linear");
      std::vector<TensorView> qkv_weights, qkv_biases;
      for (const char* part : {"to_q", "to_k", "to_v"}) {
        ASSIGN_OR_RETURN(TensorView weight, get(absl::StrCat(b, "attn1.", part, ".weight")));
        qkv_weights.push_back(std::move(weight));
        if (config.attention_bias) {
          ASSIGN_OR_RETURN(TensorView bias, get(absl::StrCat(b, "attn1.", part, ".bias")));
          qkv_biases.push_back(std::move(bias));
        }
      }
      std::vector<uint8_t> weight_storage, bias_storage;
      ASSIGN_OR_RETURN(const TensorView qkv_weight,
                       StackTensorRows(qkv_weights, b + "attn1.to_q/to_k/to_v.weight", &weight_storage));
      if (config.attention_bias) {
        ASSIGN_OR_RETURN(const TensorView qkv_bias,
                         StackTensorRows(qkv_biases, b + "attn1.to_q/to_k/to_v.bias", &bias_storage));
        TensorView bias = qkv_bias;
        bias.shape = {bias.shape[0]};
        ASSIGN_OR_RETURN(block.qkv, prepare(b + "attn1.to_q", qkv_weight, &bias));
      } else {
        ASSIGN_OR_RETURN(block.qkv, prepare(b + "attn1.to_q", qkv_weight, nullptr));
      }
      ASSIGN_OR_RETURN(block.proj, linear(b + "attn1.to_out.0"));
      ASSIGN_OR_RETURN(block.fc1, linear(b + "ff.net.0.proj"));
      ASSIGN_OR_RETURN(block.fc2, linear(b + "ff.net.2"));
      w.blocks.push_back(std::move(block));
    }
    adaln_prefixes.push_back("proj_out_1");
    RETURN_IF_ERROR(modulation_layers(adaln_prefixes, shared_cond, &w));
    ASSIGN_OR_RETURN(w.final_linear, linear("proj_out_2"));
    return w;
  }

  const Names n = NamesOf(naming);
  ASSIGN_OR_RETURN(w.patch_embed, linear(n.patch_embed));
  ASSIGN_OR_RETURN(w.pos_embed, position_table(kPosEmbed));
  ASSIGN_OR_RETURN(w.cond.t_fc1, linear(n.time_fc1));
  ASSIGN_OR_RETURN(w.cond.t_fc2, linear(n.time_fc2));
  ASSIGN_OR_RETURN(const TensorView table, get(n.class_table));
  ASSIGN_OR_RETURN(w.cond.class_table, ops->UploadTable(table, 0));
  std::vector<std::string> adaln_prefixes;
  for (int32_t i = 0; i < config.depth; ++i) {
    DitBlockWeights block;
    adaln_prefixes.push_back(n.Block(i, "adaln"));
    ASSIGN_OR_RETURN(block.qkv, linear(n.Block(i, "attn.qkv")));
    ASSIGN_OR_RETURN(block.proj, linear(n.Block(i, "attn.proj")));
    ASSIGN_OR_RETURN(block.fc1, linear(n.Block(i, "mlp.fc1")));
    ASSIGN_OR_RETURN(block.fc2, linear(n.Block(i, "mlp.fc2")));
    w.blocks.push_back(std::move(block));
  }
  adaln_prefixes.push_back(n.final_adaln);
  RETURN_IF_ERROR(modulation_layers(adaln_prefixes, /*shared_cond=*/true, &w));
  ASSIGN_OR_RETURN(w.final_linear, linear(n.final_linear));
  return w;
}

size_t DitWeights::bytes() const {
  const auto conditioning = [](const DitConditioningWeights& c) {
    return PreparedBytes(c.t_fc1, c.t_fc2, c.class_table);
  };
  size_t total = PreparedBytes(patch_embed, pos_embed, final_adaln, final_linear, modulations) + conditioning(cond);
  for (const DitBlockWeights& b : blocks) {
    total += PreparedBytes(b.adaln, b.qkv, b.proj, b.fc1, b.fc2);
    if (b.cond != nullptr) total += conditioning(*b.cond);
  }
  return total;
}

}  // namespace tern::runtime
