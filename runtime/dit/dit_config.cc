#include "runtime/dit/dit_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

// Reads typed fields of one JSON object; every error names `file` and the
// dotted field name.
class Fields {
 public:
  Fields(const json& doc, std::string file, std::string prefix = "")
      : doc_(doc), file_(std::move(file)), prefix_(std::move(prefix)) {}

  absl::Status Invalid(const std::string& field, const std::string& why) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": ", prefix_, field, ": ", why));
  }
  const std::string& file() const { return file_; }

  // The value of `field`, or nullptr when absent or null.
  const json* Find(const char* field) const {
    const auto it = doc_.find(field);
    if (it == doc_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  // Absent: nullopt. Present: an integer in [min_value, INT32_MAX].
  absl::StatusOr<std::optional<int32_t>> Int(const char* field, int64_t min_value) const {
    const json* v = Find(field);
    if (v == nullptr) return std::optional<int32_t>();
    if (!v->is_number_integer()) return Invalid(field, "is not an integer");
    const int64_t value = v->get<int64_t>();
    if (value < min_value) return Invalid(field, absl::StrCat(value, " is not >= ", min_value));
    if (value > std::numeric_limits<int32_t>::max()) return Invalid(field, absl::StrCat(value, " is too large"));
    return std::optional<int32_t>(static_cast<int32_t>(value));
  }
  absl::StatusOr<int32_t> RequiredInt(const char* field, int64_t min_value = 1) const {
    ASSIGN_OR_RETURN(const std::optional<int32_t> value, Int(field, min_value));
    if (!value) return Invalid(field, "is missing");
    return *value;
  }
  absl::StatusOr<int32_t> IntOr(const char* field, int32_t fallback, int64_t min_value = 1) const {
    ASSIGN_OR_RETURN(const std::optional<int32_t> value, Int(field, min_value));
    return value ? *value : fallback;
  }

  absl::StatusOr<std::optional<double>> Number(const char* field) const {
    const json* v = Find(field);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return Invalid(field, "is not a number");
    const double value = v->get<double>();
    if (!std::isfinite(value)) return Invalid(field, "is not finite");
    return std::optional<double>(value);
  }

  absl::StatusOr<std::optional<std::string>> String(const char* field) const {
    const json* v = Find(field);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return Invalid(field, "is not a string");
    return std::optional<std::string>(v->get<std::string>());
  }
  // Absent, or exactly `expected`.
  absl::Status StringIs(const char* field, const std::string& expected) const {
    ASSIGN_OR_RETURN(const auto value, String(field));
    if (value && *value != expected) {
      return Invalid(field, absl::StrCat("\"", *value, "\" is not supported (", expected, ")"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<bool>> Bool(const char* field) const {
    const json* v = Find(field);
    if (v == nullptr) return std::optional<bool>();
    if (!v->is_boolean()) return Invalid(field, "is not true or false");
    return std::optional<bool>(v->get<bool>());
  }
  absl::StatusOr<bool> BoolOr(const char* field, bool fallback) const {
    ASSIGN_OR_RETURN(const std::optional<bool> value, Bool(field));
    return value ? *value : fallback;
  }
  // Absent, or `expected`; the other value is not supported (`why`).
  absl::Status BoolIs(const char* field, bool expected, const std::string& why) const {
    ASSIGN_OR_RETURN(const std::optional<bool> value, Bool(field));
    if (value && *value != expected) return Invalid(field, absl::StrCat(*value ? "true" : "false", ": ", why));
    return absl::OkStatus();
  }
  // Absent or null; anything else is not supported (`why`).
  absl::Status MustBeNull(const char* field, const std::string& why) const {
    if (Find(field) != nullptr) return Invalid(field, absl::StrCat("is set: ", why));
    return absl::OkStatus();
  }

 private:
  const json& doc_;
  std::string file_;
  std::string prefix_;
};

absl::StatusOr<json> ParseObject(const std::string& text, const std::string& file) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(file, ": not valid JSON"));
  if (!doc.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  return doc;
}

// beta_start, beta_end, num_train_timesteps of `f` (tern's noise_schedule
// object or a diffusers scheduler config) into `out`, checked.
absl::Status ParseBetas(const Fields& f, DitNoiseScheduleConfig* out) {
  ASSIGN_OR_RETURN(const auto schedule, f.String("beta_schedule"));
  if (schedule) out->beta_schedule = *schedule;
  if (out->beta_schedule != "linear") {
    return f.Invalid("beta_schedule", absl::StrCat("\"", out->beta_schedule, "\" is not supported (linear)"));
  }
  ASSIGN_OR_RETURN(const auto start, f.Number("beta_start"));
  ASSIGN_OR_RETURN(const auto end, f.Number("beta_end"));
  ASSIGN_OR_RETURN(const auto steps, f.Int("num_train_timesteps", 2));
  if (start) out->beta_start = *start;
  if (end) out->beta_end = *end;
  if (steps) out->num_train_timesteps = *steps;
  if (!(out->beta_start > 0.0 && out->beta_start < 1.0)) {
    return f.Invalid("beta_start", absl::StrCat(out->beta_start, " is not in (0, 1)"));
  }
  if (!(out->beta_end >= out->beta_start && out->beta_end < 1.0)) {
    return f.Invalid("beta_end",
                     absl::StrCat(out->beta_end, " is not in [beta_start, 1) = [", out->beta_start, ", 1)"));
  }
  return absl::OkStatus();
}

absl::Status ParseNoiseSchedule(const Fields& doc, DitNoiseScheduleConfig* out) {
  const json* ns = doc.Find("noise_schedule");
  if (ns == nullptr) return absl::OkStatus();  // DDPM's linear schedule, T = 1000
  if (!ns->is_object()) return doc.Invalid("noise_schedule", "is not an object");
  return ParseBetas(Fields(*ns, doc.file(), "noise_schedule."), out);
}

absl::Status ParseInput(const Fields& doc, DitConfig* c) {
  const json* input = doc.Find("input");
  if (input == nullptr) return absl::OkStatus();
  if (!input->is_object()) return doc.Invalid("input", "is not an object");
  const Fields in(*input, doc.file(), "input.");
  if (const json* classes = in.Find("classes")) {
    if (!classes->is_array()) return in.Invalid("classes", "is not a list of class names");
    if (static_cast<int64_t>(classes->size()) != c->num_classes) {
      return in.Invalid("classes", absl::StrCat("has ", classes->size(), " names; num_classes is ", c->num_classes));
    }
    for (size_t i = 0; i < classes->size(); ++i) {
      const json& name = (*classes)[i];
      if (!name.is_string() || name.get<std::string>().empty()) {
        return in.Invalid(absl::StrCat("classes[", i, "]"), "is not a non-empty string");
      }
      c->class_names.push_back(name.get<std::string>());
    }
  }
  const json* range = in.Find("pixel_range");
  if (range == nullptr) return absl::OkStatus();
  if (!range->is_array() || range->size() != 2 || !(*range)[0].is_number() || !(*range)[1].is_number()) {
    return in.Invalid("pixel_range", "is not a list of two numbers [lo, hi]");
  }
  c->pixel_min = (*range)[0].get<double>();
  c->pixel_max = (*range)[1].get<double>();
  if (!(std::isfinite(c->pixel_min) && std::isfinite(c->pixel_max) && c->pixel_min < c->pixel_max)) {
    return in.Invalid("pixel_range", absl::StrCat("[", c->pixel_min, ", ", c->pixel_max, "] is not lo < hi"));
  }
  c->pixel_space = true;
  return absl::OkStatus();
}

// The checks every layout shares once the shape is read.
absl::Status CheckShape(const Fields& f, const DitConfig& c, const char* patch_field, const char* heads_field) {
  if (c.image_size % c.patch_size != 0) {
    return f.Invalid(patch_field, absl::StrCat(c.patch_size, " does not divide image_size ", c.image_size));
  }
  if (c.hidden_size % c.num_heads != 0) {
    return f.Invalid(heads_field, absl::StrCat(c.num_heads, " does not divide hidden_size ", c.hidden_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), " cannot be opened"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status WithDir(const absl::Status& status, const std::string& model_dir) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(model_dir, ": ", status.message()));
}

// A latent model and its VAE must agree on the latent channels.
absl::Status CheckVaeFits(const DitConfig& c, const std::string& vae_file, const std::string& dit_file) {
  if (c.pixel_space) {
    return absl::InvalidArgumentError(absl::StrCat(vae_file, ": a VAE beside a pixel-space model (", dit_file,
                                                   " sets input.pixel_range)"));
  }
  if (c.vae.latent_channels != c.in_channels) {
    return absl::InvalidArgumentError(absl::StrCat(vae_file, ": latent_channels: ", c.vae.latent_channels,
                                                   " is not the model's in_channels (", c.in_channels, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DitConfig> ParseDitConfig(const std::string& json_text) {
  ASSIGN_OR_RETURN(const json doc, ParseObject(json_text, "config.json"));
  const Fields f(doc, "config.json");

  DitConfig c;
  RETURN_IF_ERROR(f.StringIs("architecture", "DiT"));

  // tern spells the input side image_size; the original DiT, input_size.
  ASSIGN_OR_RETURN(const auto image_size, f.Int("image_size", 1));
  ASSIGN_OR_RETURN(const auto input_size, f.Int("input_size", 1));
  if (!image_size && !input_size) return f.Invalid("image_size", "is missing (or input_size)");
  if (image_size && input_size && *image_size != *input_size) {
    return f.Invalid("input_size", absl::StrCat(*input_size, " differs from image_size ", *image_size));
  }
  c.image_size = image_size ? *image_size : *input_size;
  ASSIGN_OR_RETURN(c.in_channels, f.RequiredInt("in_channels"));
  ASSIGN_OR_RETURN(c.patch_size, f.RequiredInt("patch_size"));
  ASSIGN_OR_RETURN(c.hidden_size, f.RequiredInt("hidden_size"));
  ASSIGN_OR_RETURN(c.depth, f.RequiredInt("depth"));
  ASSIGN_OR_RETURN(c.num_heads, f.RequiredInt("num_heads"));
  ASSIGN_OR_RETURN(c.num_classes, f.RequiredInt("num_classes"));
  RETURN_IF_ERROR(CheckShape(f, c, "patch_size", "num_heads"));

  ASSIGN_OR_RETURN(const auto mlp_ratio, f.Number("mlp_ratio"));
  if (mlp_ratio) c.mlp_ratio = *mlp_ratio;
  const double mlp_hidden = c.hidden_size * c.mlp_ratio;
  if (!(c.mlp_ratio > 0.0) || mlp_hidden != std::floor(mlp_hidden) || mlp_hidden > 1e9) {
    return f.Invalid("mlp_ratio", absl::StrCat(c.mlp_ratio, " times hidden_size ", c.hidden_size,
                                               " is not a positive whole number"));
  }

  // The null class: the row after the classes, unless the model was trained
  // without label dropout (the original DiT then has no such row).
  ASSIGN_OR_RETURN(const auto dropout, f.Number("class_dropout_prob"));
  if (dropout && !(*dropout >= 0.0 && *dropout < 1.0)) {
    return f.Invalid("class_dropout_prob", absl::StrCat(*dropout, " is not in [0, 1)"));
  }
  ASSIGN_OR_RETURN(const auto null_class, f.Int("null_class", 0));
  if (null_class && *null_class != c.num_classes) {
    return f.Invalid("null_class", absl::StrCat(*null_class, " is not num_classes (", c.num_classes,
                                                "), the class table's last row"));
  }
  if (null_class && dropout && *dropout == 0.0) {
    return f.Invalid("null_class", "is set, but class_dropout_prob 0 means the model has no null class");
  }
  c.null_class = (dropout && *dropout == 0.0) ? -1 : c.num_classes;

  ASSIGN_OR_RETURN(c.learn_sigma, f.BoolOr("learn_sigma", false));
  ASSIGN_OR_RETURN(const auto freq, f.Int("frequency_embedding_size", 2));
  if (freq) c.frequency_embedding_size = *freq;
  if (c.frequency_embedding_size % 2 != 0) {
    return f.Invalid("frequency_embedding_size", absl::StrCat(c.frequency_embedding_size, " is not even"));
  }
  ASSIGN_OR_RETURN(const auto ln_eps, f.Number("layernorm_eps"));
  if (ln_eps) c.layernorm_eps = *ln_eps;
  if (!(c.layernorm_eps > 0.0)) return f.Invalid("layernorm_eps", "is not > 0");
  c.mlp_layernorm_eps = c.layernorm_eps;
  RETURN_IF_ERROR(f.StringIs("mlp_activation", "gelu_tanh"));
  RETURN_IF_ERROR(f.StringIs("prediction_type", "epsilon"));
  RETURN_IF_ERROR(ParseNoiseSchedule(f, &c.noise_schedule));
  RETURN_IF_ERROR(ParseInput(f, &c));
  return c;
}

absl::StatusOr<VaeDecoderConfig> ParseVaeConfig(const std::string& json_text, const std::string& file) {
  ASSIGN_OR_RETURN(const json doc, ParseObject(json_text, file));
  const Fields f(doc, file);
  VaeDecoderConfig v;
  RETURN_IF_ERROR(f.StringIs("_class_name", "AutoencoderKL"));
  RETURN_IF_ERROR(f.StringIs("act_fn", "silu"));
  ASSIGN_OR_RETURN(v.latent_channels, f.IntOr("latent_channels", 4));
  ASSIGN_OR_RETURN(v.out_channels, f.IntOr("out_channels", 3));
  if (v.out_channels != 1 && v.out_channels != 3 && v.out_channels != 4) {
    return f.Invalid("out_channels", absl::StrCat(v.out_channels, " is not 1, 3 or 4 (gray, RGB or RGBA)"));
  }
  ASSIGN_OR_RETURN(v.layers_per_block, f.IntOr("layers_per_block", 1));
  ASSIGN_OR_RETURN(v.norm_num_groups, f.IntOr("norm_num_groups", 32));
  const json* blocks = f.Find("block_out_channels");
  if (blocks == nullptr) {
    v.block_out_channels = {64};  // AutoencoderKL's default
  } else {
    if (!blocks->is_array() || blocks->empty() || blocks->size() > 8) {
      return f.Invalid("block_out_channels", "is not a list of 1 to 8 channel counts");
    }
    for (size_t i = 0; i < blocks->size(); ++i) {
      const json& b = (*blocks)[i];
      if (!b.is_number_integer() || b.get<int64_t>() < 1 || b.get<int64_t>() > 65536) {
        return f.Invalid(absl::StrCat("block_out_channels[", i, "]"), "is not an integer in [1, 65536]");
      }
      v.block_out_channels.push_back(b.get<int32_t>());
    }
  }
  for (size_t i = 0; i < v.block_out_channels.size(); ++i) {
    if (v.block_out_channels[i] % v.norm_num_groups != 0) {
      return f.Invalid(absl::StrCat("block_out_channels[", i, "]"),
                       absl::StrCat(v.block_out_channels[i], " is not a multiple of norm_num_groups ",
                                    v.norm_num_groups));
    }
  }
  if (const json* up = f.Find("up_block_types")) {
    if (!up->is_array() || up->size() != v.block_out_channels.size()) {
      return f.Invalid("up_block_types", absl::StrCat("is not a list of ", v.block_out_channels.size(),
                                                      " block types (one per block_out_channels)"));
    }
    for (size_t i = 0; i < up->size(); ++i) {
      if (!(*up)[i].is_string() || (*up)[i].get<std::string>() != "UpDecoderBlock2D") {
        return f.Invalid(absl::StrCat("up_block_types[", i, "]"),
                         absl::StrCat((*up)[i].dump(), " is not supported (UpDecoderBlock2D)"));
      }
    }
  }
  ASSIGN_OR_RETURN(const auto scaling, f.Number("scaling_factor"));
  if (scaling) v.scaling_factor = *scaling;
  if (!(v.scaling_factor > 0.0)) return f.Invalid("scaling_factor", absl::StrCat(v.scaling_factor, " is not > 0"));
  ASSIGN_OR_RETURN(const auto shift, f.Number("shift_factor"));
  if (shift && *shift != 0.0) return f.Invalid("shift_factor", absl::StrCat(*shift, " is not supported (0 or null)"));
  RETURN_IF_ERROR(f.MustBeNull("latents_mean", "per-channel latent statistics are not supported"));
  RETURN_IF_ERROR(f.MustBeNull("latents_std", "per-channel latent statistics are not supported"));
  RETURN_IF_ERROR(f.StringIs("norm_type", "group"));
  ASSIGN_OR_RETURN(v.post_quant_conv, f.BoolOr("use_post_quant_conv", true));
  ASSIGN_OR_RETURN(v.mid_block_attention, f.BoolOr("mid_block_add_attention", true));
  return v;
}

absl::StatusOr<DitConfig> ParseDiffusersDitConfig(const std::string& model_index_text,
                                                  const std::string& transformer_text,
                                                  const std::string& scheduler_text, const std::string& vae_text) {
  ASSIGN_OR_RETURN(const json index, ParseObject(model_index_text, "model_index.json"));
  ASSIGN_OR_RETURN(const json tdoc, ParseObject(transformer_text, "transformer/config.json"));
  ASSIGN_OR_RETURN(const json sdoc, ParseObject(scheduler_text, "scheduler/scheduler_config.json"));
  const Fields m(index, "model_index.json");
  const Fields t(tdoc, "transformer/config.json");
  const Fields s(sdoc, "scheduler/scheduler_config.json");

  ASSIGN_OR_RETURN(const auto pipeline, m.String("_class_name"));
  if (!pipeline) return m.Invalid("_class_name", "is missing (DiTPipeline)");
  if (*pipeline != "DiTPipeline") {
    return m.Invalid("_class_name", absl::StrCat("\"", *pipeline, "\" is not supported (DiTPipeline)"));
  }
  // Components: ["library", "class"] pairs.
  const auto component = [&](const char* name, std::initializer_list<const char*> classes) -> absl::Status {
    const json* v = m.Find(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_array() || v->size() != 2 || !(*v)[1].is_string()) {
      return m.Invalid(name, "is not a [library, class] pair");
    }
    const std::string cls = (*v)[1].get<std::string>();
    for (const char* ok : classes) {
      if (cls == ok) return absl::OkStatus();
    }
    return m.Invalid(name, absl::StrCat("\"", cls, "\" is not supported"));
  };
  RETURN_IF_ERROR(component("transformer", {"DiTTransformer2DModel", "Transformer2DModel"}));
  RETURN_IF_ERROR(component("vae", {"AutoencoderKL"}));

  DitConfig c;
  c.layout = DitLayout::kDiffusers;
  ASSIGN_OR_RETURN(const auto cls, t.String("_class_name"));
  if (cls && *cls != "DiTTransformer2DModel" && *cls != "Transformer2DModel") {
    return t.Invalid("_class_name",
                     absl::StrCat("\"", *cls, "\" is not supported (DiTTransformer2DModel, Transformer2DModel)"));
  }
  // Transformer2DModel is DiT only with patches and adaLN-Zero.
  ASSIGN_OR_RETURN(const auto norm_type, t.String("norm_type"));
  if (norm_type.value_or("ada_norm_zero") != "ada_norm_zero") {
    return t.Invalid("norm_type", absl::StrCat("\"", *norm_type, "\" is not supported (ada_norm_zero)"));
  }
  if (cls.value_or("") == "Transformer2DModel" && !norm_type) {
    return t.Invalid("norm_type", "is missing (Transformer2DModel is a DiT with norm_type ada_norm_zero)");
  }
  ASSIGN_OR_RETURN(c.num_heads, t.IntOr("num_attention_heads", 16));
  ASSIGN_OR_RETURN(const int32_t head_dim, t.IntOr("attention_head_dim", 72));
  if (int64_t(c.num_heads) * head_dim > (1 << 20)) {
    return t.Invalid("attention_head_dim", "times num_attention_heads is too large");
  }
  c.hidden_size = c.num_heads * head_dim;
  ASSIGN_OR_RETURN(c.in_channels, t.IntOr("in_channels", 4));
  ASSIGN_OR_RETURN(const auto out_channels, t.Int("out_channels", 1));
  const int32_t out = out_channels.value_or(c.in_channels);
  if (out != c.in_channels && out != 2 * c.in_channels) {
    return t.Invalid("out_channels", absl::StrCat(out, " is neither in_channels (", c.in_channels,
                                                  ") nor twice it (learn_sigma)"));
  }
  c.learn_sigma = out == 2 * c.in_channels;
  ASSIGN_OR_RETURN(c.depth, t.IntOr("num_layers", 28));
  ASSIGN_OR_RETURN(c.image_size, t.IntOr("sample_size", 32));
  ASSIGN_OR_RETURN(const auto patch, t.Int("patch_size", 1));
  if (!patch) return t.Invalid("patch_size", "is missing (a DiT works on patches)");
  c.patch_size = *patch;
  ASSIGN_OR_RETURN(const auto classes, t.Int("num_embeds_ada_norm", 1));
  c.num_classes = classes.value_or(1000);
  if (t.Find("num_embeds_ada_norm") == nullptr && tdoc.contains("num_embeds_ada_norm")) {
    return t.Invalid("num_embeds_ada_norm", "is null (adaLN-Zero embeds num_embeds_ada_norm classes)");
  }
  c.null_class = c.num_classes;  // LabelEmbedding(class_dropout_prob 0.1): a null row after the classes
  RETURN_IF_ERROR(CheckShape(t, c, "patch_size", "num_attention_heads"));
  RETURN_IF_ERROR(t.StringIs("activation_fn", "gelu-approximate"));
  RETURN_IF_ERROR(t.BoolIs("norm_elementwise_affine", false, "affine LayerNorms are not supported"));
  ASSIGN_OR_RETURN(c.attention_bias, t.BoolOr("attention_bias", true));
  ASSIGN_OR_RETURN(const auto norm_eps, t.Number("norm_eps"));
  c.mlp_layernorm_eps = norm_eps.value_or(1e-5);
  if (!(c.mlp_layernorm_eps > 0.0)) return t.Invalid("norm_eps", "is not > 0");
  c.layernorm_eps = 1e-6;  // AdaLayerNormZero.norm and norm_out
  c.timestep_freq_shift = 1;
  c.frequency_embedding_size = 256;
  c.mlp_ratio = 4.0;
  RETURN_IF_ERROR(t.MustBeNull("cross_attention_dim", "cross-attention is not supported"));
  RETURN_IF_ERROR(t.MustBeNull("num_vector_embeds", "discrete inputs are not supported"));
  RETURN_IF_ERROR(t.MustBeNull("caption_channels", "captions are not supported"));
  RETURN_IF_ERROR(t.BoolIs("only_cross_attention", false, "cross-attention is not supported"));
  RETURN_IF_ERROR(t.BoolIs("double_self_attention", false, "a second self-attention is not supported"));
  RETURN_IF_ERROR(t.StringIs("attention_type", "default"));
  ASSIGN_OR_RETURN(const auto interpolation, t.Number("interpolation_scale"));
  // Transformer2DModel's default: max(sample_size // 64, 1).
  const double scale =
      interpolation.value_or(cls.value_or("") == "Transformer2DModel" ? std::max(c.image_size / 64, 1) : 1);
  if (scale != 1.0) {
    return t.Invalid("interpolation_scale",
                     absl::StrCat(scale, " is not supported (1: positions 0, 1, 2, ... of the patch grid)"));
  }

  // The training schedule. tern's samplers make their own timesteps, so a
  // scheduler's sampling settings (timestep_spacing, steps_offset,
  // set_alpha_to_one, solver_order, ...) do not apply.
  RETURN_IF_ERROR(ParseBetas(s, &c.noise_schedule));
  RETURN_IF_ERROR(s.MustBeNull("trained_betas", "explicit betas are not supported"));
  RETURN_IF_ERROR(s.StringIs("prediction_type", "epsilon"));
  RETURN_IF_ERROR(s.BoolIs("clip_sample", false, "tern does not clip latents"));
  RETURN_IF_ERROR(s.BoolIs("thresholding", false, "dynamic thresholding is not supported"));
  RETURN_IF_ERROR(s.BoolIs("rescale_betas_zero_snr", false, "zero-SNR rescaling is not supported"));

  if (const json* labels = m.Find("id2label")) {
    if (!labels->is_object()) return m.Invalid("id2label", "is not an object {\"id\": \"label\"}");
    if (static_cast<int64_t>(labels->size()) != c.num_classes) {
      return m.Invalid("id2label", absl::StrCat("has ", labels->size(), " labels; the transformer has ",
                                                c.num_classes, " classes"));
    }
    c.class_names.assign(size_t(c.num_classes), "");
    for (const auto& [key, value] : labels->items()) {
      int64_t id = -1;
      if (!absl::SimpleAtoi(key, &id) || id < 0 || id >= c.num_classes || !c.class_names[id].empty()) {
        return m.Invalid(absl::StrCat("id2label[\"", key, "\"]"),
                         absl::StrCat("is not a distinct class id in [0, ", c.num_classes, ")"));
      }
      if (!value.is_string() || value.get<std::string>().empty()) {
        return m.Invalid(absl::StrCat("id2label[\"", key, "\"]"), "is not a non-empty string");
      }
      c.class_names[id] = value.get<std::string>();
    }
  }

  if (!vae_text.empty()) {
    ASSIGN_OR_RETURN(c.vae, ParseVaeConfig(vae_text, "vae/config.json"));
    c.has_vae = true;
    RETURN_IF_ERROR(CheckVaeFits(c, "vae/config.json", "transformer/config.json"));
  }
  return c;
}

bool IsDiffusersModelDirectory(const std::string& model_dir) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(model_dir) / "model_index.json", ec);
}

absl::StatusOr<DitConfig> LoadDitConfig(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  std::error_code ec;
  if (IsDiffusersModelDirectory(model_dir)) {
    std::string texts[3];
    const char* files[3] = {"model_index.json", "transformer/config.json", "scheduler/scheduler_config.json"};
    for (int i = 0; i < 3; ++i) {
      auto text = ReadFile(dir / files[i]);
      if (!text.ok()) return text.status();
      texts[i] = *std::move(text);
    }
    std::string vae;
    if (std::filesystem::exists(dir / "vae" / "config.json", ec)) {
      auto text = ReadFile(dir / "vae" / "config.json");
      if (!text.ok()) return text.status();
      vae = *std::move(text);
    } else {
      return absl::NotFoundError(absl::StrCat(model_dir, ": vae/config.json is missing (a DiTPipeline has a VAE)"));
    }
    auto config = ParseDiffusersDitConfig(texts[0], texts[1], texts[2], vae);
    if (!config.ok()) return WithDir(config.status(), model_dir);
    return config;
  }
  auto text = ReadFile(dir / "config.json");
  if (!text.ok()) return text.status();
  auto config = ParseDitConfig(*text);
  if (!config.ok()) return WithDir(config.status(), model_dir);
  if (std::filesystem::exists(dir / "vae" / "config.json", ec)) {
    auto vae_text = ReadFile(dir / "vae" / "config.json");
    if (!vae_text.ok()) return vae_text.status();
    auto vae = ParseVaeConfig(*vae_text, "vae/config.json");
    if (!vae.ok()) return WithDir(vae.status(), model_dir);
    config->vae = *vae;
    config->has_vae = true;
    RETURN_IF_ERROR(WithDir(CheckVaeFits(*config, "vae/config.json", "config.json"), model_dir));
  }
  return config;
}

}  // namespace tern::runtime
