// Requests the diffusion e2e tests share.
#pragma once

#include <cstdint>
#include <string>

#include "tern/v1/diffusion.pb.h"

namespace tern::testing {

// Two guided images of the demo DiT's "Sneaker" class: DPM-Solver++(2M),
// guidance 2, seed 1234, `steps` steps, from `model`.
inline tern::v1::GenerateImageRequest SneakerRequest(const std::string& model, int32_t steps) {
  tern::v1::GenerateImageRequest r;
  r.set_model(model);
  r.set_class_name("Sneaker");
  r.set_steps(steps);
  r.set_guidance_scale(2.0f);
  r.set_sampler(tern::v1::SAMPLER_DPM_SOLVER_PP_2M);
  r.set_seed(1234);
  r.set_batch(2);
  return r;
}

}  // namespace tern::testing
