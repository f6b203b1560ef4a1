#include "runtime/dit/diffusion_runner.h"

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {

absl::StatusOr<std::unique_ptr<DitRunner>> DitRunner::Create(const std::string& model_dir,
                                                            std::unique_ptr<DitOps> ops,
                                                            const DitRunnerOptions& options) {
  if (ops == nullptr) return absl::InvalidArgumentError("no DitOps");
  if (options.max_decode_batch < 1) return absl::InvalidArgumentError("max_decode_batch must be at least 1");
  ASSIGN_OR_RETURN(std::unique_ptr<DitModel> model, DitModel::Load(model_dir, ops.get(), options.model));
  const DitConfig& config = model->config();
  std::unique_ptr<VaeDecoder> vae;
  if (config.has_vae) {
    const std::string vae_dir = (std::filesystem::path(model_dir) / DitConfig::kVaeDir).string();
    auto loaded = VaeDecoder::Load(vae_dir, config.vae, config.image_size, ops.get());
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(), absl::StrCat(vae_dir, ": ", loaded.status().message()));
    }
    vae = *std::move(loaded);
  }
  ASSIGN_OR_RETURN(NoiseSchedule schedule, NoiseSchedule::Create(config.noise_schedule));
  return std::unique_ptr<DitRunner>(
      new DitRunner(std::move(ops), std::move(model), std::move(vae), std::move(schedule), options));
}

absl::Status DitRunner::Warmup(int32_t max_rows) { return Run(max_rows, /*every_shape=*/true); }

absl::Status DitRunner::ReserveWorkspaces(int32_t max_rows) { return Run(max_rows, /*every_shape=*/false); }

absl::Status DitRunner::Run(int32_t max_rows, bool every_shape) {
  if (max_rows < 1) return absl::InvalidArgumentError(absl::StrCat("warm-up rows must be at least 1, not ", max_rows));
  const DitConfig& c = config();
  const int32_t label = c.has_null_class() ? c.null_class : 0;
  const float timestep = 0.5f * float(c.noise_schedule.num_train_timesteps);
  std::vector<float> x, eps, timesteps;
  std::vector<int32_t> labels;
  const auto forward = [&](int32_t rows) -> absl::Status {
    x.assign(size_t(rows) * size_t(c.sample_elements()), 0.0f);
    eps.resize(x.size());
    timesteps.assign(size_t(rows), timestep);
    labels.assign(size_t(rows), label);
    DitBatch batch;
    batch.x = x;
    batch.timesteps = timesteps;
    batch.labels = labels;
    ++warmup_counts_.forwards;
    return model_->Forward(batch, absl::MakeSpan(eps));
  };
  std::vector<float> latents, images;
  const auto decode = [&](int32_t n) -> absl::Status {
    latents.assign(size_t(n) * size_t(vae_->latent_elements()), 0.0f);
    images.resize(size_t(n) * size_t(vae_->image_elements()));
    ++warmup_counts_.decodes;
    return vae_->Decode(latents, absl::MakeSpan(images));
  };
  const int32_t decode_batch = options_.max_decode_batch;
  // The largest of each first, so that no later pass grows a buffer.
  if (vae_ != nullptr) RETURN_IF_ERROR(decode(decode_batch));
  RETURN_IF_ERROR(forward(max_rows));
  if (!every_shape) return absl::OkStatus();
  for (int32_t rows = 1; rows <= max_rows; ++rows) {
    for (int pass = 0; pass < 2; ++pass) RETURN_IF_ERROR(forward(rows));
  }
  if (vae_ != nullptr) {
    for (int32_t n = 1; n <= decode_batch; ++n) {
      for (int pass = 0; pass < 2; ++pass) RETURN_IF_ERROR(decode(n));
    }
  }
  return absl::OkStatus();
}

}  // namespace tern::runtime
