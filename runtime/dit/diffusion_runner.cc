#include "runtime/dit/diffusion_runner.h"

#include <filesystem>

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

}  // namespace tern::runtime
