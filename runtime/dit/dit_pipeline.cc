#include "runtime/dit/dit_pipeline.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {

std::vector<uint8_t> ToPixels(absl::Span<const float> x, double lo, double hi) {
  const double scale = 255.0 / (hi - lo);
  std::vector<uint8_t> pixels(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = std::floor((double(x[i]) - lo) * scale + 0.5);
    pixels[i] = static_cast<uint8_t>(v >= 255.0 ? 255.0 : v >= 0.0 ? v : 0.0);  // NaN: 0
  }
  return pixels;
}

std::vector<uint8_t> SampleToPixels(absl::Span<const float> x, const DitConfig& config) {
  if (!config.pixel_space) return {};
  return ToPixels(x, config.pixel_min, config.pixel_max);
}

absl::StatusOr<std::vector<DitImage>> MakeDitImages(const DitConfig& config, VaeDecoder* vae,
                                                    absl::Span<const DenoisingSample* const> samples,
                                                    int32_t max_decode_batch) {
  std::vector<DitImage> images(samples.size());
  const bool decode = !config.pixel_space && vae != nullptr;
  for (size_t i = 0; i < samples.size(); ++i) {
    DitImage& image = images[i];
    image.seed = samples[i]->params().seed;
    image.sample.assign(samples[i]->x().begin(), samples[i]->x().end());
    if (decode) {
      image.channels = vae->config().out_channels;
      image.height = image.width = vae->image_size();
    } else {
      image.channels = config.in_channels;
      image.height = image.width = config.image_size;
      image.pixels = SampleToPixels(image.sample, config);
    }
  }
  if (!decode) return images;
  const int64_t per_latent = vae->latent_elements(), per_image = vae->image_elements();
  const size_t chunk = size_t(std::max(1, max_decode_batch));
  std::vector<float> latents, decoded;
  for (size_t first = 0; first < samples.size(); first += chunk) {
    const size_t count = std::min(chunk, samples.size() - first);
    latents.clear();
    for (size_t i = first; i < first + count; ++i) {
      if (int64_t(images[i].sample.size()) != per_latent) {
        return absl::InvalidArgumentError(absl::StrCat("sample ", i, " has ", images[i].sample.size(),
                                                       " latent values; the VAE decodes ", per_latent));
      }
      latents.insert(latents.end(), images[i].sample.begin(), images[i].sample.end());
    }
    decoded.resize(count * size_t(per_image));
    RETURN_IF_ERROR(vae->Decode(latents, absl::MakeSpan(decoded)));
    for (size_t i = 0; i < count; ++i) {
      images[first + i].pixels =
          ToPixels(absl::MakeConstSpan(decoded.data() + i * per_image, size_t(per_image)), -1.0, 1.0);
    }
  }
  return images;
}

absl::StatusOr<std::unique_ptr<DitPipeline>> DitPipeline::Create(DitModel* model, VaeDecoder* vae) {
  ASSIGN_OR_RETURN(NoiseSchedule schedule, NoiseSchedule::Create(model->config().noise_schedule));
  return std::unique_ptr<DitPipeline>(new DitPipeline(model, vae, std::move(schedule)));
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
      params.schedule = request.schedule;
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

  // Every finished sample decoded together, as the engine does for the
  // requests that finish at one step.
  std::vector<const DenoisingSample*> finished;
  for (const auto& request_samples : samples) {
    for (const auto& sample : request_samples) finished.push_back(sample.get());
  }
  ASSIGN_OR_RETURN(std::vector<DitImage> images,
                   MakeDitImages(config, vae_, finished, std::max<int32_t>(1, int32_t(finished.size()))));
  std::vector<std::vector<DitImage>> out(requests.size());
  size_t next = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    for (size_t i = 0; i < samples[r].size(); ++i) out[r].push_back(std::move(images[next++]));
  }
  return out;
}

}  // namespace tern::runtime
