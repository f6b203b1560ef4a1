#include "runtime/dit/dit_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", field, ": ", why));
}

// The value of `field` in `doc`, or nullptr when absent or null.
const json* Find(const json& doc, const char* field) {
  const auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer field; `name` is the dotted name errors report. Absent: nullopt.
// Present: an integer in [min_value, INT32_MAX].
absl::StatusOr<std::optional<int32_t>> GetInt(const json& doc, const char* field, const std::string& name,
                                              int64_t min_value) {
  const json* v = Find(doc, field);
  if (v == nullptr) return std::optional<int32_t>();
  if (!v->is_number_integer()) return Invalid(name, "is not an integer");
  const int64_t value = v->get<int64_t>();
  if (value < min_value) return Invalid(name, absl::StrCat(value, " is not >= ", min_value));
  if (value > std::numeric_limits<int32_t>::max()) return Invalid(name, absl::StrCat(value, " is too large"));
  return std::optional<int32_t>(static_cast<int32_t>(value));
}

absl::StatusOr<int32_t> GetRequiredInt(const json& doc, const char* field) {
  ASSIGN_OR_RETURN(const std::optional<int32_t> value, GetInt(doc, field, field, 1));
  if (!value) return Invalid(field, "is missing");
  return *value;
}

absl::StatusOr<std::optional<double>> GetNumber(const json& doc, const char* field, const std::string& name) {
  const json* v = Find(doc, field);
  if (v == nullptr) return std::optional<double>();
  if (!v->is_number()) return Invalid(name, "is not a number");
  const double value = v->get<double>();
  if (!std::isfinite(value)) return Invalid(name, "is not finite");
  return std::optional<double>(value);
}

absl::StatusOr<std::optional<std::string>> GetString(const json& doc, const char* field, const std::string& name) {
  const json* v = Find(doc, field);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return Invalid(name, "is not a string");
  return std::optional<std::string>(v->get<std::string>());
}

absl::Status ParseNoiseSchedule(const json& doc, DitNoiseScheduleConfig* out) {
  const json* ns = Find(doc, "noise_schedule");
  if (ns == nullptr) return absl::OkStatus();  // DDPM's linear schedule, T = 1000
  if (!ns->is_object()) return Invalid("noise_schedule", "is not an object");
  ASSIGN_OR_RETURN(const auto schedule, GetString(*ns, "beta_schedule", "noise_schedule.beta_schedule"));
  if (schedule) out->beta_schedule = *schedule;
  if (out->beta_schedule != "linear") {
    return Invalid("noise_schedule.beta_schedule",
                   absl::StrCat("\"", out->beta_schedule, "\" is not supported (linear)"));
  }
  ASSIGN_OR_RETURN(const auto start, GetNumber(*ns, "beta_start", "noise_schedule.beta_start"));
  ASSIGN_OR_RETURN(const auto end, GetNumber(*ns, "beta_end", "noise_schedule.beta_end"));
  ASSIGN_OR_RETURN(const auto steps,
                   GetInt(*ns, "num_train_timesteps", "noise_schedule.num_train_timesteps", 2));
  if (start) out->beta_start = *start;
  if (end) out->beta_end = *end;
  if (steps) out->num_train_timesteps = *steps;
  if (!(out->beta_start > 0.0 && out->beta_start < 1.0)) {
    return Invalid("noise_schedule.beta_start", absl::StrCat(out->beta_start, " is not in (0, 1)"));
  }
  if (!(out->beta_end >= out->beta_start && out->beta_end < 1.0)) {
    return Invalid("noise_schedule.beta_end",
                   absl::StrCat(out->beta_end, " is not in [beta_start, 1) = [", out->beta_start, ", 1)"));
  }
  return absl::OkStatus();
}

absl::Status ParseInput(const json& doc, DitConfig* c) {
  const json* input = Find(doc, "input");
  if (input == nullptr) return absl::OkStatus();
  if (!input->is_object()) return Invalid("input", "is not an object");
  if (const json* classes = Find(*input, "classes")) {
    if (!classes->is_array()) return Invalid("input.classes", "is not a list of class names");
    if (static_cast<int64_t>(classes->size()) != c->num_classes) {
      return Invalid("input.classes",
                     absl::StrCat("has ", classes->size(), " names; num_classes is ", c->num_classes));
    }
    for (size_t i = 0; i < classes->size(); ++i) {
      const json& name = (*classes)[i];
      if (!name.is_string() || name.get<std::string>().empty()) {
        return Invalid(absl::StrCat("input.classes[", i, "]"), "is not a non-empty string");
      }
      c->class_names.push_back(name.get<std::string>());
    }
  }
  const json* range = Find(*input, "pixel_range");
  if (range == nullptr) return absl::OkStatus();
  if (!range->is_array() || range->size() != 2 || !(*range)[0].is_number() || !(*range)[1].is_number()) {
    return Invalid("input.pixel_range", "is not a list of two numbers [lo, hi]");
  }
  c->pixel_min = (*range)[0].get<double>();
  c->pixel_max = (*range)[1].get<double>();
  if (!(std::isfinite(c->pixel_min) && std::isfinite(c->pixel_max) && c->pixel_min < c->pixel_max)) {
    return Invalid("input.pixel_range", absl::StrCat("[", c->pixel_min, ", ", c->pixel_max, "] is not lo < hi"));
  }
  c->pixel_space = true;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DitConfig> ParseDitConfig(const std::string& json_text) {
  const json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!doc.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");

  DitConfig c;
  ASSIGN_OR_RETURN(const auto architecture, GetString(doc, "architecture", "architecture"));
  if (architecture && *architecture != "DiT") {
    return Invalid("architecture", absl::StrCat("\"", *architecture, "\" is not supported (DiT)"));
  }

  // tern spells the input side image_size; the original DiT, input_size.
  ASSIGN_OR_RETURN(const auto image_size, GetInt(doc, "image_size", "image_size", 1));
  ASSIGN_OR_RETURN(const auto input_size, GetInt(doc, "input_size", "input_size", 1));
  if (!image_size && !input_size) return Invalid("image_size", "is missing (or input_size)");
  if (image_size && input_size && *image_size != *input_size) {
    return Invalid("input_size", absl::StrCat(*input_size, " differs from image_size ", *image_size));
  }
  c.image_size = image_size ? *image_size : *input_size;
  ASSIGN_OR_RETURN(c.in_channels, GetRequiredInt(doc, "in_channels"));
  ASSIGN_OR_RETURN(c.patch_size, GetRequiredInt(doc, "patch_size"));
  ASSIGN_OR_RETURN(c.hidden_size, GetRequiredInt(doc, "hidden_size"));
  ASSIGN_OR_RETURN(c.depth, GetRequiredInt(doc, "depth"));
  ASSIGN_OR_RETURN(c.num_heads, GetRequiredInt(doc, "num_heads"));
  ASSIGN_OR_RETURN(c.num_classes, GetRequiredInt(doc, "num_classes"));
  if (c.image_size % c.patch_size != 0) {
    return Invalid("patch_size", absl::StrCat(c.patch_size, " does not divide image_size ", c.image_size));
  }
  if (c.hidden_size % c.num_heads != 0) {
    return Invalid("num_heads", absl::StrCat(c.num_heads, " does not divide hidden_size ", c.hidden_size));
  }

  ASSIGN_OR_RETURN(const auto mlp_ratio, GetNumber(doc, "mlp_ratio", "mlp_ratio"));
  if (mlp_ratio) c.mlp_ratio = *mlp_ratio;
  const double mlp_hidden = c.hidden_size * c.mlp_ratio;
  if (!(c.mlp_ratio > 0.0) || mlp_hidden != std::floor(mlp_hidden) || mlp_hidden > 1e9) {
    return Invalid("mlp_ratio", absl::StrCat(c.mlp_ratio, " times hidden_size ", c.hidden_size,
                                             " is not a positive whole number"));
  }

  // The null class: the row after the classes, unless the model was trained
  // without label dropout (the original DiT then has no such row).
  ASSIGN_OR_RETURN(const auto dropout, GetNumber(doc, "class_dropout_prob", "class_dropout_prob"));
  if (dropout && !(*dropout >= 0.0 && *dropout < 1.0)) {
    return Invalid("class_dropout_prob", absl::StrCat(*dropout, " is not in [0, 1)"));
  }
  ASSIGN_OR_RETURN(const auto null_class, GetInt(doc, "null_class", "null_class", 0));
  if (null_class && *null_class != c.num_classes) {
    return Invalid("null_class", absl::StrCat(*null_class, " is not num_classes (", c.num_classes,
                                              "), the class table's last row"));
  }
  if (null_class && dropout && *dropout == 0.0) {
    return Invalid("null_class", "is set, but class_dropout_prob 0 means the model has no null class");
  }
  c.null_class = (dropout && *dropout == 0.0) ? -1 : c.num_classes;

  if (const json* v = Find(doc, "learn_sigma")) {
    if (!v->is_boolean()) return Invalid("learn_sigma", "is not true or false");
    c.learn_sigma = v->get<bool>();
  }
  ASSIGN_OR_RETURN(const auto freq, GetInt(doc, "frequency_embedding_size", "frequency_embedding_size", 2));
  if (freq) c.frequency_embedding_size = *freq;
  if (c.frequency_embedding_size % 2 != 0) {
    return Invalid("frequency_embedding_size", absl::StrCat(c.frequency_embedding_size, " is not even"));
  }
  ASSIGN_OR_RETURN(const auto ln_eps, GetNumber(doc, "layernorm_eps", "layernorm_eps"));
  if (ln_eps) c.layernorm_eps = *ln_eps;
  if (!(c.layernorm_eps > 0.0)) return Invalid("layernorm_eps", "is not > 0");
  ASSIGN_OR_RETURN(const auto activation, GetString(doc, "mlp_activation", "mlp_activation"));
  if (activation && *activation != "gelu_tanh") {
    return Invalid("mlp_activation", absl::StrCat("\"", *activation, "\" is not supported (gelu_tanh)"));
  }
  ASSIGN_OR_RETURN(const auto prediction, GetString(doc, "prediction_type", "prediction_type"));
  if (prediction && *prediction != "epsilon") {
    return Invalid("prediction_type", absl::StrCat("\"", *prediction, "\" is not supported (epsilon)"));
  }
  RETURN_IF_ERROR(ParseNoiseSchedule(doc, &c.noise_schedule));
  RETURN_IF_ERROR(ParseInput(doc, &c));
  return c;
}

absl::StatusOr<DitConfig> LoadDitConfig(const std::string& model_dir) {
  const auto path = std::filesystem::path(model_dir) / "config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), " cannot be opened"));
  std::ostringstream text;
  text << in.rdbuf();
  auto config = ParseDitConfig(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(model_dir, ": ", config.status().message()));
  }
  return config;
}

}  // namespace tern::runtime
