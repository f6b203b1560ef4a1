#include "server/services/png_codec.h"

#include <png.h>

#include "absl/strings/str_cat.h"

namespace tern::server {
namespace {

absl::StatusOr<png_uint_32> FormatOf(int channels) {
  switch (channels) {
    case 1: return png_uint_32{PNG_FORMAT_GRAY};
    case 3: return png_uint_32{PNG_FORMAT_RGB};
    case 4: return png_uint_32{PNG_FORMAT_RGBA};
    default: return absl::InvalidArgumentError(absl::StrCat("a PNG holds 1, 3 or 4 channels, not ", channels));
  }
}

}  // namespace

absl::StatusOr<std::string> EncodePng(absl::Span<const uint8_t> planar, int channels, int height, int width) {
  auto format = FormatOf(channels);
  if (!format.ok()) return format.status();
  if (height <= 0 || width <= 0) return absl::InvalidArgumentError(absl::StrCat("empty image ", height, "x", width));
  const size_t plane = size_t(height) * size_t(width);
  if (planar.size() != plane * size_t(channels)) {
    return absl::InvalidArgumentError(absl::StrCat("an image of ", channels, "x", height, "x", width, " has ",
                                                   plane * channels, " values, not ", planar.size()));
  }
  std::vector<uint8_t> interleaved(planar.size());
  for (size_t p = 0; p < plane; ++p) {
    for (int c = 0; c < channels; ++c) interleaved[p * channels + c] = planar[size_t(c) * plane + p];
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = *format;
  png_alloc_size_t size = 0;
  // First call sizes the output, the second writes it.
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, interleaved.data(), 0, nullptr)) {
    return absl::InternalError(absl::StrCat("libpng: ", image.message));
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, interleaved.data(), 0, nullptr)) {
    return absl::InternalError(absl::StrCat("libpng: ", image.message));
  }
  out.resize(size);
  return out;
}

absl::StatusOr<DecodedPng> DecodePng(const std::string& png) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, png.data(), png.size())) {
    return absl::InvalidArgumentError(absl::StrCat("not a readable PNG: ", image.message));
  }
  DecodedPng out;
  out.channels = PNG_IMAGE_SAMPLE_CHANNELS(image.format);
  if (out.channels == 2) out.channels = 4;  // gray + alpha: read as RGBA
  auto format = FormatOf(out.channels);
  if (!format.ok()) {
    png_image_free(&image);
    return format.status();
  }
  image.format = *format;
  out.height = static_cast<int>(image.height);
  out.width = static_cast<int>(image.width);
  std::vector<uint8_t> interleaved(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, interleaved.data(), 0, nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat("not a readable PNG: ", image.message));
  }
  const size_t plane = size_t(out.height) * size_t(out.width);
  out.planar.resize(interleaved.size());
  for (size_t p = 0; p < plane; ++p) {
    for (int c = 0; c < out.channels; ++c) out.planar[size_t(c) * plane + p] = interleaved[p * out.channels + c];
  }
  return out;
}

}  // namespace tern::server
