// The demo DiT (models/tern-demo-dit) and its PyTorch reference outputs
// (golden.json, written by tools/train/dit/golden.py in float64), shared by
// the DiT tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/samplers.h"
#include "tests/test_files.h"

namespace tern::runtime::dit_test {

inline const std::string kDemoDitDir = std::string(TERN_MODELS_DIR) + "/tern-demo-dit";

inline const nlohmann::json& Golden() {
  static const nlohmann::json* golden =
      new nlohmann::json(nlohmann::json::parse(test_data::ReadTestFile(kDemoDitDir + "/golden.json")));
  return *golden;
}

// The request of one golden sample case (golden.json's "samples").
inline DitGenerateRequest GoldenRequest(const nlohmann::json& c) {
  DitGenerateRequest r;
  r.class_label = c["class"].get<int32_t>();
  r.seed = c["seed"].get<uint64_t>();
  r.sampler = *ParseDiffusionSamplerKind(c["sampler"].get<std::string>());
  r.num_steps = c["steps"].get<int32_t>();
  r.guidance_scale = c["guidance"].get<double>();
  return r;
}

// A forward's eps against reference eps (the golden's float64, or another
// backend's): the largest absolute difference and the L2 norm of the
// differences over the reference's.
struct EpsError {
  double max_abs = 0.0;
  double relative = 0.0;
};
template <typename Reference>
EpsError CompareEps(const std::vector<float>& eps, const std::vector<Reference>& want) {
  double max_abs = 0.0, diff2 = 0.0, ref2 = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = double(eps[i]) - want[i];
    max_abs = std::max(max_abs, std::abs(d));
    diff2 += d * d;
    ref2 += double(want[i]) * want[i];
  }
  return {max_abs, std::sqrt(diff2 / ref2)};
}

// An image against a golden case's pixels: the largest pixel difference,
// how many pixels differ, and the mean of the image's sample (the golden's
// "mean" is that of its float sample).
struct PixelComparison {
  int max_diff = 0;
  int differing = 0;
  double mean = 0.0;
};
inline PixelComparison ComparePixels(const DitImage& image, const std::vector<int>& want) {
  PixelComparison c;
  for (size_t i = 0; i < want.size(); ++i) {
    const int d = std::abs(int(image.pixels[i]) - want[i]);
    c.max_diff = std::max(c.max_diff, d);
    c.differing += d != 0;
    c.mean += image.sample[i];
  }
  c.mean /= double(want.size());
  return c;
}

}  // namespace tern::runtime::dit_test
