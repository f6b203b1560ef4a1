// An fp32 TensorView over a vector, for tests of code that loads tensors
// (the DiT and VAE ops' Prepare* calls). The view borrows `values`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/model/dtype.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime::dit_test {

inline TensorView View(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values) {
  TensorView t;
  t.name = name;
  t.dtype = DType::kF32;
  t.shape = shape;
  t.data = reinterpret_cast<const uint8_t*>(values.data());
  t.nbytes = values.size() * sizeof(float);
  return t;
}

}  // namespace tern::runtime::dit_test
