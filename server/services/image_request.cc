#include "server/services/image_request.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/sampling/sequence_sampling_state.h"

namespace tern::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::StatusOr<int32_t> ClassOf(const tern::v1::GenerateImageRequest& r, const std::string& model_name,
                                const runtime::DitConfig& config) {
  switch (r.condition_case()) {
    case tern::v1::GenerateImageRequest::kPrompt:
      return Invalid("prompt", absl::StrCat("model \"", model_name,
                                            "\" is class-conditional, not text-conditioned; set class_label or "
                                            "class_name"));
    case tern::v1::GenerateImageRequest::kClassLabel: {
      const int32_t y = r.class_label();
      if (y < 0 || (y >= config.num_classes && y != config.null_class)) {
        return Invalid("class_label",
                       absl::StrCat(y, " is not in [0, ", config.num_classes, ")",
                                    config.has_null_class()
                                        ? absl::StrCat(", or ", config.null_class, " (unconditional)")
                                        : ""));
      }
      return y;
    }
    case tern::v1::GenerateImageRequest::kClassName: {
      const auto& names = config.class_names;
      const auto it = std::find(names.begin(), names.end(), r.class_name());
      if (it == names.end()) {
        if (names.empty()) {
          return Invalid("class_name", absl::StrCat("model \"", model_name, "\" names no classes; use class_label"));
        }
        return Invalid("class_name", absl::StrCat("\"", r.class_name(), "\" is not a class of model \"", model_name,
                                                  "\": ", absl::StrJoin(names, ", ")));
      }
      return static_cast<int32_t>(it - names.begin());
    }
    case tern::v1::GenerateImageRequest::CONDITION_NOT_SET:
      break;
  }
  return Invalid("condition", "set exactly one of prompt, class_label or class_name");
}

absl::StatusOr<runtime::DiffusionSamplerKind> SamplerOf(tern::v1::Sampler sampler, const ServedDiffusion& model) {
  switch (sampler) {
    case tern::v1::SAMPLER_UNSPECIFIED: return model.default_sampler;
    case tern::v1::SAMPLER_DDIM: return runtime::DiffusionSamplerKind::kDdim;
    case tern::v1::SAMPLER_DPM_SOLVER_PP_2M: return runtime::DiffusionSamplerKind::kDpmSolverPp2m;
    case tern::v1::SAMPLER_EULER: return runtime::DiffusionSamplerKind::kEuler;
    case tern::v1::SAMPLER_SCHEDULE: return runtime::DiffusionSamplerKind::kSchedule;
    default: break;
  }
  return Invalid("sampler", absl::StrCat(static_cast<int>(sampler), " is not a Sampler"));
}

}  // namespace

absl::StatusOr<scheduler::DiffusionRequest> MakeDiffusionRequest(const tern::v1::GenerateImageRequest& r,
                                                                 const std::string& model_name,
                                                                 const ServedDiffusion& model,
                                                                 const std::string& request_id,
                                                                 const scheduler::Tenant& tenant, absl::Time deadline) {
  const runtime::DitConfig& config = model.config;
  scheduler::DiffusionRequest out;
  out.request_id = request_id;
  out.tenant = &tenant;
  out.priority = std::clamp(r.priority() + tenant.priority, -200, 200);
  out.deadline = deadline;
  auto label = ClassOf(r, model_name, config);
  if (!label.ok()) return label.status();
  out.params.class_label = *label;
  for (const auto& [field, value] : {std::pair{"width", r.width()}, std::pair{"height", r.height()}}) {
    if (value != 0 && value != config.output_size()) {
      return Invalid(field, absl::StrCat(value, " is not a size model \"", model_name, "\" makes: it makes ",
                                         config.output_size(), "x", config.output_size(), " (0 takes that)"));
    }
  }
  const int32_t timesteps = config.noise_schedule.num_train_timesteps;
  auto sampler = SamplerOf(r.sampler(), model);
  if (!sampler.ok()) return sampler.status();
  out.params.sampler = *sampler;
  if (*sampler == runtime::DiffusionSamplerKind::kSchedule) {
    if (model.schedule == nullptr) {
      return Invalid("sampler", absl::StrCat("SAMPLER_SCHEDULE, but model \"", model_name,
                                             "\" has no sampler schedule (diffusion.sampler_schedule)"));
    }
    const int32_t n = model.schedule->num_steps();
    if (r.steps() != 0 && r.steps() != n) {
      return Invalid("steps", absl::StrCat(r.steps(), ", but model \"", model_name, "\"'s sampler schedule has ", n,
                                           " steps (0 takes them; name another sampler for other step counts)"));
    }
    out.params.schedule = model.schedule;
  }
  out.params.num_steps = *sampler == runtime::DiffusionSamplerKind::kSchedule ? model.schedule->num_steps()
                         : r.steps() > 0                                     ? r.steps()
                                                                             : model.default_steps;
  if (out.params.num_steps > timesteps) {
    return Invalid("steps", absl::StrCat(out.params.num_steps, " is not in [1, ", timesteps, "], the timesteps of model \"",
                                         model_name, "\""));
  }
  out.params.guidance_scale = r.has_guidance_scale() ? r.guidance_scale() : model.default_guidance_scale;
  if (!std::isfinite(out.params.guidance_scale) || out.params.guidance_scale < 0) {
    return Invalid("guidance_scale", absl::StrCat(out.params.guidance_scale, " is not a finite number >= 0"));
  }
  if (out.params.guidance_scale != 1.0 && !config.has_null_class()) {
    return Invalid("guidance_scale", absl::StrCat("model \"", model_name,
                                                  "\" has no null class, so only 1 (no guidance) is possible"));
  }
  switch (r.attention()) {
    case tern::v1::DIFFUSION_ATTENTION_UNSPECIFIED: break;
    case tern::v1::DIFFUSION_ATTENTION_EXACT: out.params.exact_attention = true; break;
    case tern::v1::DIFFUSION_ATTENTION_PLAN:
      if (model.attention_plan == nullptr) {
        return Invalid("attention", absl::StrCat("DIFFUSION_ATTENTION_PLAN, but model \"", model_name,
                                                 "\" has no attention plan (diffusion.attention_plan)"));
      }
      if (out.params.num_steps != model.attention_plan->num_steps) {
        return Invalid("attention", absl::StrCat("DIFFUSION_ATTENTION_PLAN with ", out.params.num_steps,
                                                 " steps, but model \"", model_name, "\"'s attention plan is for ",
                                                 model.attention_plan->num_steps));
      }
      break;
    default:
      return Invalid("attention", absl::StrCat(static_cast<int>(r.attention()), " is not a DiffusionAttention"));
  }
  out.params.seed = r.has_seed() ? r.seed() : runtime::DrawRandomSeed();
  out.num_images = r.batch() > 0 ? r.batch() : 1;
  const int32_t rows = out.num_images * (out.params.guidance_scale != 1.0 ? 2 : 1);
  if (rows > model.max_batch_rows) {
    return Invalid("batch", absl::StrCat(out.num_images, " images", out.params.guidance_scale != 1.0 ? " with guidance" : "",
                                         " need ", rows, " rows a step; model \"", model_name, "\" batches ",
                                         model.max_batch_rows));
  }
  return out;
}

}  // namespace tern::server
