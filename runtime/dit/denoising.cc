#include "runtime/dit/denoising.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/dit/gaussian_noise.h"

namespace tern::runtime {

absl::Status ValidateDenoisingParams(const DitConfig& config, const DenoisingParams& params) {
  const int32_t y = params.class_label;
  if (y < 0 || (y >= config.num_classes && y != config.null_class)) {
    const std::string null_class =
        config.has_null_class() ? absl::StrCat(", or ", config.null_class, " (unconditional)") : "";
    return absl::InvalidArgumentError(
        absl::StrCat("class_label: ", y, " is not in [0, ", config.num_classes, ")", null_class));
  }
  const int32_t t = config.noise_schedule.num_train_timesteps;
  if (params.num_steps < 1 || params.num_steps > t) {
    return absl::InvalidArgumentError(absl::StrCat("steps: ", params.num_steps, " is not in [1, ", t, "]"));
  }
  if (params.sampler == DiffusionSamplerKind::kSchedule) {
    if (params.schedule == nullptr) {
      return absl::InvalidArgumentError("sampler: schedule, but the model has no sampler schedule configured");
    }
    if (params.schedule->num_train_timesteps != t) {
      return absl::InvalidArgumentError(absl::StrCat("schedule: ", params.schedule->source, " is for ",
                                                     params.schedule->num_train_timesteps,
                                                     " timesteps; the model has ", t));
    }
    if (params.num_steps != params.schedule->num_steps()) {
      return absl::InvalidArgumentError(absl::StrCat("steps: ", params.num_steps, ", but the sampler schedule ",
                                                     params.schedule->source, " has ",
                                                     params.schedule->num_steps()));
    }
  } else if (params.schedule != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("schedule: given with sampler ", DiffusionSamplerName(params.sampler),
                                                   ", which does not follow one"));
  }
  if (!std::isfinite(params.guidance_scale)) {
    return absl::InvalidArgumentError("guidance_scale: is not finite");
  }
  if (params.guidance_scale != 1.0 && !config.has_null_class()) {
    return absl::InvalidArgumentError(
        "guidance_scale: the model has no null class, so only 1 (no classifier-free guidance) is possible");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DenoisingSample>> DenoisingSample::Create(const DitConfig& config,
                                                                         const NoiseSchedule* schedule,
                                                                         const DenoisingParams& params) {
  RETURN_IF_ERROR(ValidateDenoisingParams(config, params));
  DiffusionSamplerOptions options;
  options.clip_x0 = config.pixel_space;
  options.clip_min = config.pixel_min;
  options.clip_max = config.pixel_max;
  auto sampler = CreateDiffusionSampler(params.sampler, schedule, options, params.schedule);
  RETURN_IF_ERROR(sampler->Init(params.num_steps, config.sample_elements()));
  return std::unique_ptr<DenoisingSample>(new DenoisingSample(
      params, config.null_class, std::move(sampler), GaussianNoise(params.seed, config.sample_elements())));
}

void DenoisingSample::Advance(absl::Span<const float> cond_eps, absl::Span<const float> uncond_eps) {
  if (model_rows() == 1) {
    CHECK(uncond_eps.empty());
    sampler_->Step(cond_eps, absl::MakeSpan(x_));
    return;
  }
  guided_eps_.resize(x_.size());
  CombineGuidance(cond_eps, uncond_eps, params_.guidance_scale, absl::MakeSpan(guided_eps_));
  sampler_->Step(guided_eps_, absl::MakeSpan(x_));
}

absl::Status DenoisingStepper::Step(absl::Span<DenoisingSample* const> samples) {
  const DitConfig& config = model_->config();
  const size_t n = size_t(config.sample_elements());
  x_.clear();
  timesteps_.clear();
  labels_.clear();
  attention_.clear();
  // DiTFastAttn: samples whose step count is the plan's follow it, each at
  // its own step, with cache rows taken at their first step.
  DitAttentionCache* cache = model_->attention_cache();
  bool any_plan = false;
  for (DenoisingSample* sample : samples) {
    CHECK(!sample->done()) << "a finished sample in a denoising step";
    CHECK_EQ(sample->x().size(), n);
    const float t = static_cast<float>(sample->timestep());
    const bool planned = cache != nullptr && !sample->params().exact_attention &&
                         sample->num_steps() == cache->plan().num_steps;
    if (planned && sample->attention_slots_ == nullptr) {
      ASSIGN_OR_RETURN(sample->attention_slots_, cache->Acquire(sample->model_rows()));
    }
    const int32_t cond_row = static_cast<int32_t>(timesteps_.size());
    const auto row_attention = [&](size_t k, int32_t pair) {
      if (!planned) return DitRowAttention{};
      any_plan = true;
      return DitRowAttention{sample->step(), sample->attention_slots_->slot(k), pair};
    };
    x_.insert(x_.end(), sample->x().begin(), sample->x().end());
    timesteps_.push_back(t);
    labels_.push_back(sample->params().class_label);
    attention_.push_back(row_attention(0, -1));
    if (sample->model_rows() == 2) {
      x_.insert(x_.end(), sample->x().begin(), sample->x().end());
      timesteps_.push_back(t);
      labels_.push_back(sample->null_class_);
      attention_.push_back(row_attention(1, cond_row));
    }
  }
  eps_.resize(x_.size());
  absl::Span<const DitRowAttention> attention;
  if (any_plan) attention = attention_;
  RETURN_IF_ERROR(model_->Forward({x_, timesteps_, labels_, attention}, absl::MakeSpan(eps_)));
  size_t row = 0;
  for (DenoisingSample* sample : samples) {
    const absl::Span<const float> cond(eps_.data() + row * n, n);
    absl::Span<const float> uncond;
    if (sample->model_rows() == 2) uncond = absl::Span<const float>(eps_.data() + (row + 1) * n, n);
    sample->Advance(cond, uncond);
    // A finished sample's caches go back at once (its images may wait).
    if (sample->done()) sample->attention_slots_.reset();
    row += size_t(sample->model_rows());
  }
  return absl::OkStatus();
}

}  // namespace tern::runtime
