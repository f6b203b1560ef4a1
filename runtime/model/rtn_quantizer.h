// Round-to-nearest quantization of one linear layer's fp32 weights into a
// QuantizedLinear: what tern-quantize writes and what a weight_scheme other
// than auto does to a dense checkpoint at load. Deterministic (ties to even).
//
// Weight-only, per (output row, group), maxq = 2^bits - 1, as GPTQ's
// quantizer defines its grids:
//   symmetric:  scale = 2 * absmax / maxq, zero = 2^(bits-1)
//   asymmetric: lo = min(min w, 0), hi = max(max w, 0),
//               scale = (hi - lo) / maxq, zero = round(-lo / scale)
//   (an all-zero group uses absmax = 1, lo = -1, hi = 1), the scale rounded
//   to fp16 first (checkpoints store fp16 scales), then
//   code = clamp(round(w / scale) + zero, 0, maxq).
// W8A8, per output row:
//   INT8: scale = absmax / 127, value = clamp(round(w / scale), -127, 127)
//   FP8:  scale = absmax / 448, value = e4m3(w / scale)
//   (an all-zero row uses scale 1), scales kept in fp32.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/model/quantized_weight.h"

namespace tern::runtime {

struct RtnOptions {
  LinearScheme scheme;  // not kDense
  // Smallest zero code of an asymmetric group. GPTQ's original format stores
  // zero - 1 and cannot hold 0, so tern-quantize sets 1 when writing it.
  int32_t min_zero = 0;
};

// `weight` [out, in] fp32; `bias` [out] or empty. INVALID_ARGUMENT when the
// group size does not divide `in`, a weight is not finite, or a scale
// overflows fp16.
absl::StatusOr<QuantizedLinear> QuantizeRtn(absl::Span<const float> weight, int64_t out, int64_t in,
                                            const RtnOptions& options, std::vector<float> bias = {});

}  // namespace tern::runtime
