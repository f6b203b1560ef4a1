#include "tools/mkmodel/dit_model_writer.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/dit/vae_decoder.h"
#include "runtime/model/safetensors.h"
#include "tools/mkmodel/normal_stream.h"

namespace tern::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runtime::DitTensorSpec;
using runtime::DType;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The values of one tensor (see the header for the distributions).
std::vector<float> Values(const DitTensorSpec& spec, const std::string& stream_name, uint64_t seed,
                          const runtime::DitConfig& config) {
  int64_t count = 1;
  for (int64_t d : spec.shape) count *= d;
  if (spec.name == "pos_embed") return runtime::DitPositionTable(config.hidden_size, config.grid_size());
  NormalStream normal(seed, stream_name);
  float scale = 1.0f, offset = 0.0f;
  const int64_t fan_in = spec.shape.empty() ? 1 : count / spec.shape[0];
  if (EndsWith(spec.name, ".bias")) {
    scale = 0.02f;
  } else if (spec.shape.size() == 1) {  // a GroupNorm scale
    scale = 0.1f;
    offset = 1.0f;
  } else if (Contains(spec.name, "embedding_table") || Contains(spec.name, "y_embedder")) {
    scale = 1.0f;
  } else if (Contains(spec.name, "adaLN_modulation") || Contains(spec.name, "norm1.linear") ||
             Contains(spec.name, "proj_out_1")) {
    scale = 0.5f / std::sqrt(float(fan_in));
  } else {
    scale = 1.0f / std::sqrt(float(fan_in));
  }
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = offset + scale * normal.Next();
  return values;
}

// A block's embedder name when all blocks share block 0's: block 0's.
std::string StreamName(const std::string& name, bool distinct) {
  const std::string prefix = "transformer_blocks.";
  if (distinct || name.rfind(prefix, 0) != 0 || !Contains(name, ".norm1.emb.")) return name;
  const size_t dot = name.find('.', prefix.size());
  return prefix + "0" + name.substr(dot);
}

void Store(DType dtype, const std::vector<float>& values, uint8_t* out) {
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::kF32: std::memcpy(out + 4 * i, &values[i], 4); break;
      case DType::kF16: {
        const uint16_t h = runtime::FloatToHalf(values[i]);
        std::memcpy(out + 2 * i, &h, 2);
        break;
      }
      case DType::kBF16: {
        const uint16_t b = runtime::FloatToBFloat16(values[i]);
        std::memcpy(out + 2 * i, &b, 2);
        break;
      }
      default: break;
    }
  }
}

absl::Status WriteTensors(const std::string& path, const std::vector<DitTensorSpec>& layout, DType dtype,
                          uint64_t seed, const runtime::DitConfig& config, bool distinct) {
  std::vector<runtime::TensorSpec> specs;
  std::map<std::string, const DitTensorSpec*> by_name;
  for (const DitTensorSpec& t : layout) {
    if (t.optional && t.name != "pos_embed") continue;  // diffusers' pos_embed.pos_embed is not persistent
    specs.push_back({t.name, dtype, t.shape});
    by_name[t.name] = &t;
  }
  return runtime::WriteSafetensors(
      path, specs,
      [&](const runtime::TensorSpec& spec, uint8_t* buffer) {
        const DitTensorSpec& t = *by_name.at(spec.name);
        Store(dtype, Values(t, StreamName(t.name, distinct), seed, config), buffer);
      },
      {{"format", "pt"}});
}

absl::Status WriteJson(const fs::path& path, const json& doc) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", path.parent_path().string(), ": ", ec.message()));
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

json VaeConfigJson(const DitModelSpec& s) {
  const size_t blocks = s.vae_block_out_channels.size();
  return json{{"_class_name", "AutoencoderKL"},
              {"_diffusers_version", "0.30.0"},
              {"act_fn", "silu"},
              {"block_out_channels", s.vae_block_out_channels},
              {"down_block_types", std::vector<std::string>(blocks, "DownEncoderBlock2D")},
              {"up_block_types", std::vector<std::string>(blocks, "UpDecoderBlock2D")},
              {"in_channels", 3},
              {"out_channels", 3},
              {"latent_channels", s.in_channels},
              {"layers_per_block", s.vae_layers_per_block},
              {"norm_num_groups", s.vae_norm_num_groups},
              {"sample_size", s.sample_size * (1 << (blocks - 1))},
              {"scaling_factor", 0.18215}};
}

}  // namespace

absl::StatusOr<DitModelSpec> DitPreset(const std::string& preset) {
  DitModelSpec s;
  if (preset == "dit-xl-2-256") return s;
  if (preset == "dit-xl-2-512") {
    s.sample_size = 64;
    return s;
  }
  if (preset == "tiny") {
    s.sample_size = 8;
    s.hidden_size = 64;
    s.depth = 2;
    s.num_heads = 2;
    s.num_classes = 10;
    s.vae_block_out_channels = {32, 32, 64, 64};
    return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--preset ", preset, ": a dit preset is tiny, dit-xl-2-256 or dit-xl-2-512"));
}

absl::StatusOr<std::string> WriteDitModel(const DitModelSpec& s, const std::string& out, uint64_t seed, DType dtype) {
  const fs::path dir(out);
  const std::string dtype_name = dtype == DType::kF32 ? "float32" : dtype == DType::kF16 ? "float16" : "bfloat16";
  json id2label = json::object();
  for (int32_t i = 0; i < s.num_classes; ++i) id2label[std::to_string(i)] = absl::StrCat("class ", i);

  // Parse what we write, so a spec tern cannot load fails here, not later.
  const json vae = VaeConfigJson(s);
  ASSIGN_OR_RETURN(const runtime::VaeDecoderConfig vae_config, runtime::ParseVaeConfig(vae.dump()));
  runtime::DitConfig config;
  json model_index, transformer, scheduler, single;
  if (s.diffusers) {
    model_index = {{"_class_name", "DiTPipeline"},
                   {"_diffusers_version", "0.30.0"},
                   {"transformer", {"diffusers", "DiTTransformer2DModel"}},
                   {"vae", {"diffusers", "AutoencoderKL"}},
                   {"scheduler", {"diffusers", "DDIMScheduler"}},
                   {"id2label", id2label}};
    transformer = {{"_class_name", "DiTTransformer2DModel"},
                   {"_diffusers_version", "0.30.0"},
                   {"num_attention_heads", s.num_heads},
                   {"attention_head_dim", s.hidden_size / s.num_heads},
                   {"in_channels", s.in_channels},
                   {"out_channels", s.learn_sigma ? 2 * s.in_channels : s.in_channels},
                   {"num_layers", s.depth},
                   {"dropout", 0.0},
                   {"norm_num_groups", 32},
                   {"attention_bias", true},
                   {"sample_size", s.sample_size},
                   {"patch_size", s.patch_size},
                   {"activation_fn", "gelu-approximate"},
                   {"num_embeds_ada_norm", s.num_classes},
                   {"upcast_attention", false},
                   {"norm_type", "ada_norm_zero"},
                   {"norm_elementwise_affine", false},
                   {"norm_eps", 1e-5}};
    scheduler = {{"_class_name", "DDIMScheduler"},
                 {"_diffusers_version", "0.30.0"},
                 {"beta_start", 0.0001},
                 {"beta_end", 0.02},
                 {"beta_schedule", "linear"},
                 {"num_train_timesteps", 1000},
                 {"clip_sample", false},
                 {"set_alpha_to_one", true},
                 {"steps_offset", 0},
                 {"prediction_type", "epsilon"},
                 {"trained_betas", nullptr}};
    ASSIGN_OR_RETURN(config, runtime::ParseDiffusersDitConfig(model_index.dump(), transformer.dump(),
                                                              scheduler.dump(), vae.dump()));
  } else {
    single = {{"architecture", "DiT"},
              {"input_size", s.sample_size},
              {"patch_size", s.patch_size},
              {"in_channels", s.in_channels},
              {"hidden_size", s.hidden_size},
              {"depth", s.depth},
              {"num_heads", s.num_heads},
              {"mlp_ratio", 4.0},
              {"class_dropout_prob", 0.1},
              {"num_classes", s.num_classes},
              {"learn_sigma", s.learn_sigma},
              {"torch_dtype", dtype_name}};
    ASSIGN_OR_RETURN(config, runtime::ParseDitConfig(single.dump()));
    config.vae = vae_config;
    config.has_vae = true;
  }
  if (!s.diffusers && s.distinct_block_embedders) {
    return absl::InvalidArgumentError("--distinct_block_embedders: only the diffusers layout has per-block embedders");
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", out, ": ", ec.message()));
  if (s.diffusers) {
    RETURN_IF_ERROR(WriteJson(dir / "model_index.json", model_index));
    RETURN_IF_ERROR(WriteJson(dir / "transformer" / "config.json", transformer));
    RETURN_IF_ERROR(WriteJson(dir / "scheduler" / "scheduler_config.json", scheduler));
    RETURN_IF_ERROR(WriteTensors((dir / "transformer" / "diffusion_pytorch_model.safetensors").string(),
                                 runtime::DitTensorLayout(config, runtime::DitNaming::kDiffusers), dtype, seed, config,
                                 s.distinct_block_embedders));
  } else {
    RETURN_IF_ERROR(WriteJson(dir / "config.json", single));
    RETURN_IF_ERROR(WriteTensors((dir / "model.safetensors").string(),
                                 runtime::DitTensorLayout(config, runtime::DitNaming::kOriginal), dtype, seed, config,
                                 false));
  }
  RETURN_IF_ERROR(WriteJson(dir / "vae" / "config.json", vae));
  RETURN_IF_ERROR(WriteTensors((dir / "vae" / "diffusion_pytorch_model.safetensors").string(),
                               runtime::VaeTensorLayout(vae_config, /*encoder=*/true), dtype, seed, config, false));
  return absl::StrFormat("DiT %s layout, latent %dx%dx%d (%d tokens), hidden %d, depth %d, %d classes, %s; VAE %dx%d",
                         s.diffusers ? "diffusers" : "original", s.in_channels, s.sample_size, s.sample_size,
                         config.num_tokens(), s.hidden_size, s.depth, s.num_classes, dtype_name,
                         config.output_size(), config.output_size());
}

}  // namespace tern::tools
