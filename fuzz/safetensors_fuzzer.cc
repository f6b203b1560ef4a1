// Fuzzes the safetensors reader (runtime/model/safetensors.h) on whole files:
// 8-byte header length, JSON header, data section. Any input must give OK or
// INVALID_ARGUMENT; on OK every view must lie inside the input and hold
// exactly dtype x shape bytes (read once, so ASan checks the range).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "fuzz/fuzz_support.h"
#include "runtime/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, tern::runtime::TensorView> tensors;
  std::map<std::string, std::string> metadata;
  const absl::Status status = tern::runtime::ParseSafetensors("fuzz.safetensors", data, size, &tensors, &metadata);
  if (!status.ok()) {
    FUZZ_ASSERT(status.code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  static volatile uint8_t sink = 0;
  uint8_t sum = 0;
  for (const auto& [name, view] : tensors) {
    FUZZ_ASSERT(view.data >= data && view.data + view.nbytes <= data + size);
    uint64_t expected = tern::runtime::DTypeSize(view.dtype);
    for (int64_t d : view.shape) expected *= static_cast<uint64_t>(d);
    FUZZ_ASSERT(expected == view.nbytes);
    for (size_t i = 0; i < view.nbytes; ++i) sum ^= view.data[i];
    FUZZ_ASSERT(view.numel() * static_cast<int64_t>(tern::runtime::DTypeSize(view.dtype)) ==
                static_cast<int64_t>(view.nbytes));
    (void)view.ShapeString();
  }
  sink = sum;
  return 0;
}
