// PNG encoding of generated images (libpng's simplified API), and decoding
// for tests and tools. 8-bit grayscale (1 channel), RGB (3) or RGBA (4).
//
// Thread-safe (no shared state). Costs a few milliseconds for a 512x512 RGB
// image: the diffusion service runs it on the engine's delivery thread,
// never on the engine thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace tern::server {

// `planar` is [channels, height, width] (the DiT's layout); the PNG is
// interleaved, as the format has it. INVALID_ARGUMENT for a channel count
// other than 1, 3 or 4, a size that does not match, or an empty image.
absl::StatusOr<std::string> EncodePng(absl::Span<const uint8_t> planar, int channels, int height, int width);

struct DecodedPng {
  int channels = 0;  // 1, 3 or 4, as stored
  int height = 0;
  int width = 0;
  std::vector<uint8_t> planar;  // [channels, height, width]
};

// INVALID_ARGUMENT when `png` is not a PNG libpng can read.
absl::StatusOr<DecodedPng> DecodePng(const std::string& png);

}  // namespace tern::server
