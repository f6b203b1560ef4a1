#include "runtime/dit/gaussian_noise.h"

#include <cmath>
#include <numbers>

namespace tern::runtime {

std::vector<float> GaussianNoise(uint64_t seed, int64_t count) {
  std::vector<float> out(count > 0 ? size_t(count) : 0);
  SplitMix64 rng(seed);
  const auto uniform = [&rng] { return (double(rng.Next() >> 11) + 0.5) / 9007199254740992.0; };  // 2^53
  for (size_t i = 0; i < out.size(); i += 2) {
    const double u_a = uniform();
    const double u_b = uniform();
    const double r = std::sqrt(-2.0 * std::log(u_a));
    const double theta = 2.0 * std::numbers::pi * u_b;
    out[i] = static_cast<float>(r * std::cos(theta));
    if (i + 1 < out.size()) out[i + 1] = static_cast<float>(r * std::sin(theta));
  }
  return out;
}

}  // namespace tern::runtime
