// Seeded Gaussian noise that any language can reproduce bit for bit: the
// generator of tools/train/dit/diffusion.py (gaussian_noise), which the
// golden outputs of the demo DiT start from.
//
// SplitMix64 from state = seed; each draw: state += 0x9E3779B97F4A7C15,
// z = state, z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9,
// z = (z ^ z >> 27) * 0x94D049BB133111EB, out = z ^ z >> 31 (mod 2^64).
// u = ((out >> 11) + 0.5) / 2^53 in (0, 1). Consecutive pairs (u_a, u_b) give,
// in float64, r = sqrt(-2 ln u_a), n0 = r cos(2 pi u_b), n1 = r sin(2 pi u_b),
// rounded to float32; values fill the output in order (an odd count drops
// the last sine).
#pragma once

#include <cstdint>
#include <vector>

namespace tern::runtime {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// `count` standard normal values from one seed.
std::vector<float> GaussianNoise(uint64_t seed, int64_t count);

}  // namespace tern::runtime
