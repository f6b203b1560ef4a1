// A sampler schedule: the exact timesteps a diffusion sampler visits and the
// solver order of each step, read from a small JSON file (tern's own
// format, runtime/dit/README.md "Sampler schedules"):
//
//   {
//     "format": "tern-sampler-schedule", "version": 1,
//     "num_train_timesteps": 1000,
//     "steps": [{"timestep": 999, "order": 1}, {"timestep": 749, "order": 2}, ...],
//     "metadata": {...}                        // optional, any JSON object
//   }
//
// Timesteps are integers in [0, num_train_timesteps), strictly decreasing;
// after the last one the sampler jumps to the clean sample (alpha 1, sigma
// 0). Order 1 is the DDIM (eta 0) update, order 2 DPM-Solver++'s
// second-order multistep update with the previous step's x0; the first step
// has no previous step and the last one ends at lambda = +inf (its
// second-order coefficient is undefined), so both are order 1. Unknown fields
// are errors (a typo must not silently change how images are made).
//
// Immutable after parsing; share it (std::shared_ptr<const SamplerSchedule>)
// among any number of samplers and threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::runtime {

struct SamplerScheduleStep {
  int32_t timestep = 0;  // model timestep, [0, num_train_timesteps)
  int32_t order = 1;     // 1: DDIM; 2: DPM-Solver++ multistep (needs a previous step)
};

struct SamplerSchedule {
  int32_t num_train_timesteps = 0;
  std::vector<SamplerScheduleStep> steps;  // non-empty, timesteps strictly decreasing
  std::string metadata_json;               // the "metadata" object as compact JSON ("{}" when absent)
  std::string source;                      // where it was read from (a path), for messages

  int32_t num_steps() const { return static_cast<int32_t>(steps.size()); }
  std::vector<int32_t> timesteps() const;
  std::vector<int32_t> orders() const;
};

// Parses and checks a schedule. `source` names it in errors, which are
// INVALID_ARGUMENT "<source>: <field>: <why>" with the field spelled as in
// the file ("steps[3].timestep", "steps[0].order", "num_train_timesteps").
// When `model_num_train_timesteps` > 0 the file's num_train_timesteps must
// equal it (a schedule for another noise schedule does not fit the model).
absl::StatusOr<SamplerSchedule> ParseSamplerSchedule(std::string_view json_text, const std::string& source,
                                                     int32_t model_num_train_timesteps = 0);

// Reads `path` and parses it; NOT_FOUND naming the path when it cannot be read.
absl::StatusOr<SamplerSchedule> LoadSamplerSchedule(const std::string& path, int32_t model_num_train_timesteps = 0);

// The schedule that the fixed samplers follow at `num_steps` steps:
// SamplingTimesteps, with every step order 1 (ddim) or the first and last
// order 1 and the others order 2 (dpmpp2m: DPM-Solver++(2M) as
// DiffusionSampler runs it). INVALID_ARGUMENT naming "steps" as
// SamplingTimesteps does.
absl::StatusOr<SamplerSchedule> UniformSamplerSchedule(int32_t num_train_timesteps, int32_t num_steps,
                                                       bool second_order);

// The schedule in the file format above (metadata included), one step a line.
std::string SamplerScheduleToJson(const SamplerSchedule& schedule);

}  // namespace tern::runtime
