// The demo DiT (models/tern-demo-dit) and its PyTorch reference outputs
// (golden.json, written by tools/train/dit/golden.py in float64), shared by
// the DiT tests.
#pragma once

#include <string>

#include "nlohmann/json.hpp"
#include "tests/test_files.h"

namespace tern::runtime::dit_test {

inline const std::string kDemoDitDir = std::string(TERN_MODELS_DIR) + "/tern-demo-dit";

inline const nlohmann::json& Golden() {
  static const nlohmann::json* golden =
      new nlohmann::json(nlohmann::json::parse(test_data::ReadTestFile(kDemoDitDir + "/golden.json")));
  return *golden;
}

}  // namespace tern::runtime::dit_test
