// Small weights for tests of the backends' weight preparation: seeded
// normal values, an fp32 TensorView over them, and a layer quantized by
// round-to-nearest to a named scheme.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/model/rtn_quantizer.h"
#include "runtime/model/weight_scheme.h"

namespace tern::runtime::test_weights {

// `n` values drawn from N(0, 0.05^2) with `seed`.
inline std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> out(n);
  for (auto& v : out) v = normal(rng);
  return out;
}

// An F32 view of `values` (borrowed: they must outlive the view).
inline TensorView View(const std::string& name, const std::vector<float>& values, std::vector<int64_t> shape) {
  TensorView view;
  view.name = name;
  view.dtype = DType::kF32;
  view.shape = std::move(shape);
  view.data = reinterpret_cast<const uint8_t*>(values.data());
  view.nbytes = values.size() * sizeof(float);
  return view;
}

// A random [out, in] layer (with a random bias when `bias`) quantized by
// round-to-nearest to `scheme` ("w4a16-g128", "w8a8-int8", ...).
inline QuantizedLinear Rtn(const std::string& scheme, int64_t out, int64_t in, bool bias, uint32_t seed = 3) {
  RtnOptions options;
  auto parsed = ParseLinearScheme(scheme);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  options.scheme = *parsed;
  auto q = QuantizeRtn(Random(size_t(out * in), seed), out, in, options,
                       bias ? Random(size_t(out), seed + 1) : std::vector<float>{});
  EXPECT_TRUE(q.ok()) << q.status();
  return *q;
}

}  // namespace tern::runtime::test_weights
