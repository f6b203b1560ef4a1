#include "runtime/model/rope_frequencies.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace tern::runtime {

absl::StatusOr<std::vector<float>> RopeInverseFrequencies(const HfConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    // fp32 exponent and power, as torch computes base ** (arange(0, d, 2).float() / d).
    const float exponent = float(2 * i) / float(c.head_dim);
    inv_freq[i] = 1.0f / std::pow(float(c.rope_theta), exponent);
  }
  if (!c.rope_scaling.has_value()) return inv_freq;
  const RopeScaling& s = *c.rope_scaling;
  if (s.type == "linear") {
    for (auto& f : inv_freq) f = f / float(s.factor);
    return inv_freq;
  }
  if (s.type == "dynamic") {
    // Dynamic NTK changes frequencies only past max_position_embeddings, and
    // tern caps the context there, so the base frequencies are exact.
    return inv_freq;
  }
  if (s.type == "llama3") {
    const double old_context = s.original_max_position_embeddings > 0
                                   ? double(s.original_max_position_embeddings)
                                   : double(c.max_position_embeddings);
    const double low_freq_wavelen = old_context / s.low_freq_factor;
    const double high_freq_wavelen = old_context / s.high_freq_factor;
    for (auto& f : inv_freq) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen < high_freq_wavelen) continue;  // high frequencies unchanged
      if (wavelen > low_freq_wavelen) {
        f = float(f / s.factor);
        continue;
      }
      const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = float((1.0 - smooth) * f / s.factor + smooth * f);
    }
    return inv_freq;
  }
  return absl::UnimplementedError(absl::StrCat("rope_scaling type \"", s.type, "\" is not supported"));
}

}  // namespace tern::runtime
