#include "runtime/dit/diffusion_runner.h"

#include "runtime/base/status_macros.h"

namespace tern::runtime {

absl::StatusOr<std::unique_ptr<DitRunner>> DitRunner::Create(const std::string& model_dir,
                                                            std::unique_ptr<DitOps> ops) {
  if (ops == nullptr) return absl::InvalidArgumentError("no DitOps");
  ASSIGN_OR_RETURN(std::unique_ptr<DitModel> model, DitModel::Load(model_dir, ops.get()));
  ASSIGN_OR_RETURN(NoiseSchedule schedule, NoiseSchedule::Create(model->config().noise_schedule));
  return std::unique_ptr<DitRunner>(new DitRunner(std::move(ops), std::move(model), std::move(schedule)));
}

}  // namespace tern::runtime
