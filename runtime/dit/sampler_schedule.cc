#include "runtime/dit/sampler_schedule.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/dit/noise_schedule.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "tern-sampler-schedule";

absl::Status Invalid(const std::string& source, const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", why));
}

// A JSON integer that fits int32 (5.0 and "5" are not integers here).
absl::StatusOr<int32_t> Int32Field(const json& value, const std::string& source, const std::string& field) {
  if (!value.is_number_integer()) return Invalid(source, field, absl::StrCat(value.dump(), " is not an integer"));
  const int64_t v = value.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(value.get<uint64_t>(),
                                                                                          uint64_t(INT64_MAX)))
                                               : value.get<int64_t>();
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return Invalid(source, field, absl::StrCat(value.dump(), " is out of range"));
  }
  return static_cast<int32_t>(v);
}

}  // namespace

std::vector<int32_t> SamplerSchedule::timesteps() const {
  std::vector<int32_t> out;
  for (const SamplerScheduleStep& s : steps) out.push_back(s.timestep);
  return out;
}

std::vector<int32_t> SamplerSchedule::orders() const {
  std::vector<int32_t> out;
  for (const SamplerScheduleStep& s : steps) out.push_back(s.order);
  return out;
}

absl::StatusOr<SamplerSchedule> ParseSamplerSchedule(std::string_view json_text, const std::string& source,
                                                     int32_t model_num_train_timesteps) {
  const json doc = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  if (!doc.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  for (const auto& [key, value] : doc.items()) {
    if (key != "format" && key != "version" && key != "num_train_timesteps" && key != "steps" && key != "metadata") {
      return Invalid(source, key,
                     "unknown field (a schedule has format, version, num_train_timesteps, steps and metadata)");
    }
  }
  const auto format = doc.find("format");
  if (format == doc.end() || !format->is_string() || format->get<std::string>() != kFormat) {
    return Invalid(source, "format",
                   absl::StrCat(format == doc.end() ? "missing" : format->dump(), "; expected \"", kFormat, "\""));
  }
  const auto version = doc.find("version");
  if (version == doc.end()) return Invalid(source, "version", "missing; expected 1");
  ASSIGN_OR_RETURN(const int32_t v, Int32Field(*version, source, "version"));
  if (v != 1) return Invalid(source, "version", absl::StrCat(v, " is not a version this build reads (1)"));

  SamplerSchedule out;
  out.source = source;
  const auto t_field = doc.find("num_train_timesteps");
  if (t_field == doc.end()) return Invalid(source, "num_train_timesteps", "missing");
  ASSIGN_OR_RETURN(out.num_train_timesteps, Int32Field(*t_field, source, "num_train_timesteps"));
  if (out.num_train_timesteps < 1) {
    return Invalid(source, "num_train_timesteps", absl::StrCat(out.num_train_timesteps, " is not >= 1"));
  }
  if (model_num_train_timesteps > 0 && out.num_train_timesteps != model_num_train_timesteps) {
    return Invalid(source, "num_train_timesteps",
                   absl::StrCat(out.num_train_timesteps, ", but the model was trained with ", model_num_train_timesteps,
                                " timesteps"));
  }
  const auto metadata = doc.find("metadata");
  if (metadata != doc.end() && !metadata->is_object()) {
    return Invalid(source, "metadata", "is not a JSON object");
  }
  out.metadata_json = metadata == doc.end() ? "{}" : metadata->dump();

  const auto steps = doc.find("steps");
  if (steps == doc.end() || !steps->is_array()) return Invalid(source, "steps", "missing or not a list");
  if (steps->empty()) return Invalid(source, "steps", "empty; a schedule has at least one step");
  if (steps->size() > size_t(out.num_train_timesteps)) {
    return Invalid(source, "steps", absl::StrCat(steps->size(), " steps, more than the ", out.num_train_timesteps,
                                                 " timesteps"));
  }
  const int32_t n = static_cast<int32_t>(steps->size());
  for (int32_t i = 0; i < n; ++i) {
    const json& step = (*steps)[size_t(i)];
    const std::string at = absl::StrCat("steps[", i, "]");
    if (!step.is_object()) return Invalid(source, at, "is not an object {\"timestep\": ..., \"order\": ...}");
    for (const auto& [key, value] : step.items()) {
      if (key != "timestep" && key != "order") {
        return Invalid(source, absl::StrCat(at, ".", key), "unknown field (a step has timestep and order)");
      }
    }
    SamplerScheduleStep s;
    const auto t = step.find("timestep");
    if (t == step.end()) return Invalid(source, at + ".timestep", "missing");
    ASSIGN_OR_RETURN(s.timestep, Int32Field(*t, source, at + ".timestep"));
    if (s.timestep < 0 || s.timestep >= out.num_train_timesteps) {
      return Invalid(source, at + ".timestep",
                     absl::StrCat(s.timestep, " is not in [0, ", out.num_train_timesteps - 1, "]"));
    }
    if (i > 0 && s.timestep >= out.steps.back().timestep) {
      return Invalid(source, at + ".timestep",
                     absl::StrCat(s.timestep, " does not decrease from steps[", i - 1, "]'s ", out.steps.back().timestep,
                                  " (timesteps are strictly decreasing)"));
    }
    const auto order = step.find("order");
    if (order == step.end()) return Invalid(source, at + ".order", "missing (1 or 2)");
    ASSIGN_OR_RETURN(s.order, Int32Field(*order, source, at + ".order"));
    if (s.order != 1 && s.order != 2) return Invalid(source, at + ".order", absl::StrCat(s.order, " is not 1 or 2"));
    if (s.order == 2 && i == 0) {
      return Invalid(source, at + ".order", "2 on the first step, which has no previous step to extrapolate from");
    }
    if (s.order == 2 && i == n - 1) {
      return Invalid(source, at + ".order",
                     "2 on the last step, which ends at the clean sample (sigma 0, an infinite log-SNR step): "
                     "it is order 1");
    }
    out.steps.push_back(s);
  }
  return out;
}

absl::StatusOr<SamplerSchedule> LoadSamplerSchedule(const std::string& path, int32_t model_num_train_timesteps) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the sampler schedule"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseSamplerSchedule(text.str(), path, model_num_train_timesteps);
}

absl::StatusOr<SamplerSchedule> UniformSamplerSchedule(int32_t num_train_timesteps, int32_t num_steps,
                                                       bool second_order) {
  ASSIGN_OR_RETURN(const std::vector<int32_t> timesteps, SamplingTimesteps(num_train_timesteps, num_steps));
  SamplerSchedule out;
  out.num_train_timesteps = num_train_timesteps;
  out.metadata_json = "{}";
  out.source = absl::StrCat(second_order ? "dpmpp2m" : "ddim", " at ", num_steps, " steps");
  for (int32_t i = 0; i < num_steps; ++i) {
    const bool inner = i > 0 && i < num_steps - 1;
    out.steps.push_back({timesteps[size_t(i)], second_order && inner ? 2 : 1});
  }
  return out;
}

std::string SamplerScheduleToJson(const SamplerSchedule& schedule) {
  std::string out = absl::StrCat("{\n  \"format\": \"", kFormat, "\",\n  \"version\": 1,\n  \"num_train_timesteps\": ",
                                 schedule.num_train_timesteps, ",\n  \"steps\": [\n");
  for (size_t i = 0; i < schedule.steps.size(); ++i) {
    absl::StrAppend(&out, "    {\"timestep\": ", schedule.steps[i].timestep, ", \"order\": ", schedule.steps[i].order,
                    "}", i + 1 < schedule.steps.size() ? ",\n" : "\n");
  }
  absl::StrAppend(&out, "  ],\n  \"metadata\": ", schedule.metadata_json.empty() ? "{}" : schedule.metadata_json,
                  "\n}\n");
  return out;
}

}  // namespace tern::runtime
