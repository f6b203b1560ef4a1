// Seeded standard normals for tern-mkmodel: splitmix64 with Box-Muller, one
// stream per (seed, tensor name), so a tensor's values depend on neither the
// order nor the presence of the others, and the bytes are the same on every
// platform.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

namespace tern::tools {

inline uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline uint64_t Fnv1a(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

class NormalStream {
 public:
  NormalStream(uint64_t seed, const std::string& name) : state_(seed * 0x2545f4914f6cdd1dull ^ Fnv1a(name)) {}
  float Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (double(SplitMix64(&state_) >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = double(SplitMix64(&state_) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = float(r * std::sin(2.0 * M_PI * u2));
    has_spare_ = true;
    return float(r * std::cos(2.0 * M_PI * u2));
  }

 private:
  uint64_t state_;
  float spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace tern::tools
