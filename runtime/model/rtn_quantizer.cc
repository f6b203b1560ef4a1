#include "runtime/model/rtn_quantizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/common/float8.h"
#include "runtime/model/dtype.h"
#include "runtime/model/quantized_formats.h"

namespace tern::runtime {
namespace {

// The fp16 value nearest to `value` (what a checkpoint stores), never 0.
absl::StatusOr<float> Fp16Scale(float value) {
  float rounded = HalfToFloat(FloatToHalf(value));
  if (!std::isfinite(rounded)) {
    return absl::InvalidArgumentError(absl::StrCat("a scale of ", value, " overflows fp16"));
  }
  if (rounded == 0.0f) rounded = std::ldexp(1.0f, -24);  // the smallest fp16 subnormal
  return rounded;
}

}  // namespace

absl::StatusOr<QuantizedLinear> QuantizeRtn(absl::Span<const float> weight, int64_t out, int64_t in,
                                            const RtnOptions& options, std::vector<float> bias) {
  const LinearScheme& scheme = options.scheme;
  if (scheme.scheme == WeightScheme::kDense) return absl::InvalidArgumentError("RTN needs a quantized scheme");
  if (int64_t(weight.size()) != out * in) return absl::InvalidArgumentError("RTN: weight size is not out x in");
  for (float w : weight) {
    if (!std::isfinite(w)) return absl::InvalidArgumentError("RTN: a weight is not finite");
  }
  QuantizedLinear q;
  q.scheme = scheme;
  q.out_features = out;
  q.in_features = in;
  q.bias = std::move(bias);
  if (IsWeightOnly(scheme.scheme)) {
    const int64_t group = scheme.group_size > 0 ? scheme.group_size : in;
    if (in % group != 0) {
      return absl::InvalidArgumentError(absl::StrCat("group size ", group, " does not divide in_features ", in));
    }
    const int bits = WeightSchemeBits(scheme.scheme);
    const int32_t maxq = (1 << bits) - 1;
    const int64_t groups = in / group;
    q.group_size = group;
    q.scales.resize(size_t(out * groups));
    q.zeros.resize(size_t(out * groups));
    std::vector<uint8_t> codes(size_t(out * in));
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const float* w = weight.data() + r * in + g * group;
        float lo = 0.0f, hi = 0.0f;
        for (int64_t i = 0; i < group; ++i) {
          lo = std::min(lo, w[i]);
          hi = std::max(hi, w[i]);
        }
        float scale_value;
        int32_t zero;
        if (scheme.symmetric) {
          float absmax = std::max(-lo, hi);
          if (absmax == 0.0f) absmax = 1.0f;
          scale_value = 2.0f * absmax / float(maxq);
        } else {
          if (lo == 0.0f && hi == 0.0f) {
            lo = -1.0f;
            hi = 1.0f;
          }
          scale_value = (hi - lo) / float(maxq);
        }
        auto scale = Fp16Scale(scale_value);
        if (!scale.ok()) return scale.status();
        if (scheme.symmetric) {
          zero = 1 << (bits - 1);
        } else {
          zero = std::clamp(int32_t(std::nearbyint(-lo / *scale)), options.min_zero, maxq);
        }
        q.scales[r * groups + g] = *scale;
        q.zeros[r * groups + g] = uint8_t(zero);
        for (int64_t i = 0; i < group; ++i) {
          const float code = std::nearbyint(w[i] / *scale) + float(zero);
          codes[r * in + g * group + i] = uint8_t(std::clamp(code, 0.0f, float(maxq)));
        }
      }
    }
    q.weight = PackTernCodes(codes, out, in, bits);
    return q;
  }
  const bool fp8 = scheme.scheme == WeightScheme::kW8A8Fp8;
  q.group_size = in;
  q.scales.resize(size_t(out));
  q.weight.resize(size_t(out * in));
  for (int64_t r = 0; r < out; ++r) {
    const float* w = weight.data() + r * in;
    float absmax = 0.0f;
    for (int64_t i = 0; i < in; ++i) absmax = std::max(absmax, std::fabs(w[i]));
    const float scale = absmax > 0.0f ? absmax / (fp8 ? kernels::kFp8E4M3Max : 127.0f) : 1.0f;
    q.scales[r] = scale;
    for (int64_t i = 0; i < in; ++i) {
      const float v = w[i] / scale;
      q.weight[r * in + i] =
          fp8 ? kernels::FloatToFp8E4M3(v) : uint8_t(int8_t(std::clamp(std::nearbyint(v), -127.0f, 127.0f)));
    }
  }
  return q;
}

}  // namespace tern::runtime
