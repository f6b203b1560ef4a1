#include "runtime/dit/dit_weights.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

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

}  // namespace

std::vector<DitTensorSpec> DitTensorLayout(const DitConfig& c, DitNaming naming) {
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

DitNaming DetectDitNaming(const WeightStore& store) {
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

absl::StatusOr<DitWeights> DitWeights::Load(const DitConfig& config, const WeightStore& store, DitOps* ops) {
  const DitNaming naming = DetectDitNaming(store);
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
    return ops->PrepareLinear(weight, &bias);
  };

  const Names n = NamesOf(naming);
  DitWeights w;
  ASSIGN_OR_RETURN(w.patch_embed, linear(n.patch_embed));
  if (store.Contains(kPosEmbed)) {
    ASSIGN_OR_RETURN(const TensorView pos, get(kPosEmbed));
    ASSIGN_OR_RETURN(w.pos_embed, ops->UploadTable(pos, config.num_tokens()));
  } else {
    if (config.hidden_size % 4 != 0) {
      return absl::NotFoundError(absl::StrCat("tensor \"", kPosEmbed, "\" is absent, and hidden_size ",
                                              config.hidden_size, " is not a multiple of 4 to compute it"));
    }
    const std::vector<float> table = DitPositionTable(config.hidden_size, config.grid_size());
    ASSIGN_OR_RETURN(w.pos_embed, ops->UploadTable(table, config.num_tokens(), config.hidden_size));
  }
  ASSIGN_OR_RETURN(w.t_fc1, linear(n.time_fc1));
  ASSIGN_OR_RETURN(w.t_fc2, linear(n.time_fc2));
  ASSIGN_OR_RETURN(const TensorView table, get(n.class_table));
  ASSIGN_OR_RETURN(w.class_table, ops->UploadTable(table, 0));
  for (int32_t i = 0; i < config.depth; ++i) {
    DitBlockWeights block;
    ASSIGN_OR_RETURN(block.adaln, linear(n.Block(i, "adaln")));
    ASSIGN_OR_RETURN(block.qkv, linear(n.Block(i, "attn.qkv")));
    ASSIGN_OR_RETURN(block.proj, linear(n.Block(i, "attn.proj")));
    ASSIGN_OR_RETURN(block.fc1, linear(n.Block(i, "mlp.fc1")));
    ASSIGN_OR_RETURN(block.fc2, linear(n.Block(i, "mlp.fc2")));
    w.blocks.push_back(std::move(block));
  }
  ASSIGN_OR_RETURN(w.final_adaln, linear(n.final_adaln));
  ASSIGN_OR_RETURN(w.final_linear, linear(n.final_linear));
  return w;
}

}  // namespace tern::runtime
