// RoPE inverse frequencies of a model, with its rope_scaling applied, as
// Hugging Face computes them: f[i] = 1 / theta^(2i / head_dim), then
// "linear" divides by factor and "llama3" rescales by wavelength band.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/hf_config.h"

namespace tern::runtime {

// [head_dim / 2] fp32 inverse frequencies. UNIMPLEMENTED for a scaling type
// tern does not reproduce exactly.
absl::StatusOr<std::vector<float>> RopeInverseFrequencies(const HfConfig& config);

}  // namespace tern::runtime
