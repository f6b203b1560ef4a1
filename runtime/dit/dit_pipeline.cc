#include "runtime/dit/dit_pipeline.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {

std::vector<uint8_t> SampleToPixels(absl::Span<const float> x, const DitConfig& config) {
  if (!config.pixel_space) return {};
  const double lo = config.pixel_min;
  const double scale = 255.0 / (config.pixel_max - config.pixel_min);
  std::vector<uint8_t> pixels(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = std::floor((double(x[i]) - lo) * scale + 0.5);
    pixels[i] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
  }
  return pixels;
}

absl::StatusOr<std::unique_ptr<DitPipeline>> DitPipeline::Create(DitModel* model) {
  ASSIGN_OR_RETURN(NoiseSchedule schedule, NoiseSchedule::Create(model->config().noise_schedule));
  return std::unique_ptr<DitPipeline>(new DitPipeline(model, std::move(schedule)));
}

absl::StatusOr<std::vector<DitImage>> DitPipeline::Generate(const DitGenerateRequest& request) {
  ASSIGN_OR_RETURN(auto images, GenerateBatch({request}));
  return std::move(images[0]);
}

absl::StatusOr<std::vector<std::vector<DitImage>>> DitPipeline::GenerateBatch(
    absl::Span<const DitGenerateRequest> requests) {
  const DitConfig& config = model_->config();
  std::vector<std::vector<std::unique_ptr<DenoisingSample>>> samples(requests.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    const DitGenerateRequest& request = requests[r];
    if (request.num_images < 1) {
      return absl::InvalidArgumentError(absl::StrCat("num_images: ", request.num_images, " is not >= 1"));
    }
    for (int32_t i = 0; i < request.num_images; ++i) {
      DenoisingParams params;
      params.class_label = request.class_label;
      params.sampler = request.sampler;
      params.num_steps = request.num_steps;
      params.guidance_scale = request.guidance_scale;
      params.seed = request.seed + uint64_t(i);
      ASSIGN_OR_RETURN(auto sample, DenoisingSample::Create(config, &schedule_, params));
      samples[r].push_back(std::move(sample));
    }
  }

  std::vector<DenoisingSample*> running;
  for (;;) {
    running.clear();
    for (auto& request_samples : samples) {
      for (auto& sample : request_samples) {
        if (!sample->done()) running.push_back(sample.get());
      }
    }
    if (running.empty()) break;
    RETURN_IF_ERROR(stepper_.Step(running));
  }

  std::vector<std::vector<DitImage>> out(requests.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    for (const auto& sample : samples[r]) {
      DitImage image;
      image.seed = sample->params().seed;
      image.channels = config.in_channels;
      image.height = config.image_size;
      image.width = config.image_size;
      image.sample.assign(sample->x().begin(), sample->x().end());
      image.pixels = SampleToPixels(image.sample, config);
      out[r].push_back(std::move(image));
    }
  }
  return out;
}

}  // namespace tern::runtime
