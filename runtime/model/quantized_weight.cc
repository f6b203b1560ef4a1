#include "runtime/model/quantized_weight.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/common/float8.h"
#include "kernels/gemm/quant_gemm.h"

namespace tern::runtime {

const char* WeightSchemeName(WeightScheme scheme) {
  switch (scheme) {
    case WeightScheme::kDense:
      return "dense";
    case WeightScheme::kW8A16:
      return "w8a16";
    case WeightScheme::kW4A16:
      return "w4a16";
    case WeightScheme::kW8A8Int8:
      return "w8a8-int8";
    case WeightScheme::kW8A8Fp8:
      return "w8a8-fp8";
  }
  return "?";
}

int32_t WeightSchemeBits(WeightScheme scheme) {
  switch (scheme) {
    case WeightScheme::kDense:
      return 16;
    case WeightScheme::kW4A16:
      return 4;
    default:
      return 8;
  }
}

bool IsWeightOnly(WeightScheme scheme) { return scheme == WeightScheme::kW8A16 || scheme == WeightScheme::kW4A16; }
bool IsW8A8(WeightScheme scheme) { return scheme == WeightScheme::kW8A8Int8 || scheme == WeightScheme::kW8A8Fp8; }

std::string LinearScheme::ToString() const {
  std::string text = WeightSchemeName(scheme);
  if (IsWeightOnly(scheme)) {
    if (group_size > 0) absl::StrAppend(&text, "-g", group_size);
    if (!symmetric) absl::StrAppend(&text, "-asym");
  }
  return text;
}

size_t QuantizedLinear::StorageBytes() const {
  return weight.size() + scales.size() * sizeof(float) + zeros.size() + input_order.size() * sizeof(int32_t) +
         input_smoothing.size() * sizeof(float) + bias.size() * sizeof(float);
}

absl::Status ValidateQuantizedLinear(const QuantizedLinear& q, const std::string& what) {
  const auto bad = [&](const std::string& why) { return absl::InvalidArgumentError(absl::StrCat(what, ": ", why)); };
  const WeightScheme s = q.scheme.scheme;
  if (s == WeightScheme::kDense) return bad("a quantized linear cannot have the dense scheme");
  if (q.out_features <= 0 || q.in_features <= 0) return bad("non-positive shape");
  const size_t out = size_t(q.out_features), in = size_t(q.in_features);
  if (IsWeightOnly(s)) {
    if (q.group_size <= 0 || q.in_features % q.group_size != 0) {
      return bad(absl::StrCat("group size ", q.group_size, " does not divide in_features ", q.in_features));
    }
    const int32_t bits = WeightSchemeBits(s);
    if (bits == 4 && in % 2 != 0) return bad("4-bit weights need an even in_features");
    const size_t groups = size_t(q.num_groups());
    if (q.weight.size() != out * in * size_t(bits) / 8) return bad("weight has the wrong number of bytes");
    if (q.scales.size() != out * groups) return bad("scales has the wrong number of values");
    if (q.zeros.size() != out * groups) return bad("zeros has the wrong number of values");
    const uint32_t max_zero = 1u << bits;
    for (uint8_t z : q.zeros) {
      if (z > max_zero) return bad(absl::StrCat("zero code ", int(z), " is outside [0, ", max_zero, "]"));
    }
    if (!q.input_order.empty()) {
      if (q.input_order.size() != in) return bad("input_order has the wrong length");
      std::vector<bool> seen(in, false);
      for (int32_t i : q.input_order) {
        if (i < 0 || size_t(i) >= in || seen[i]) return bad("input_order is not a permutation of the inputs");
        seen[i] = true;
      }
    }
    if (q.input_scale != 0.0f || !q.input_smoothing.empty()) {
      return bad("weight-only layers have no activation scale or smoothing");
    }
  } else {
    if (q.group_size != q.in_features) return bad("W8A8 weights have one scale per output channel");
    if (q.weight.size() != out * in) return bad("weight has the wrong number of bytes");
    if (q.scales.size() != out) return bad("scales has the wrong number of values");
    if (!q.zeros.empty() || !q.input_order.empty()) return bad("W8A8 weights are symmetric and in input order");
    if (!(q.input_scale >= 0.0f) || !std::isfinite(q.input_scale)) return bad("input scale is negative or not finite");
    if (!q.input_smoothing.empty() && q.input_smoothing.size() != in)
      return bad("input_smoothing has the wrong length");
    for (float f : q.input_smoothing) {
      if (!(f > 0.0f) || !std::isfinite(f)) return bad("smoothing factors must be positive and finite");
    }
  }
  for (float f : q.scales) {
    if (!std::isfinite(f)) return bad("a scale is not finite");
  }
  if (!q.bias.empty() && q.bias.size() != out) return bad("bias has the wrong length");
  return absl::OkStatus();
}

std::vector<float> DequantizeLinear(const QuantizedLinear& q) {
  const int64_t out = q.out_features, in = q.in_features;
  std::vector<float> stored(size_t(out * in));
  if (IsWeightOnly(q.scheme.scheme)) {
    kernels::WeightOnlyParams p{out, in, q.group_size, WeightSchemeBits(q.scheme.scheme)};
    kernels::DequantizeWeightOnlyReference(p, q.weight.data(), q.scales.data(), q.zeros.data(), stored.data());
  } else {
    const bool fp8 = q.scheme.scheme == WeightScheme::kW8A8Fp8;
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t c = 0; c < in; ++c) {
        const uint8_t b = q.weight[r * in + c];
        stored[r * in + c] = (fp8 ? kernels::Fp8E4M3ToFloat(b) : float(int8_t(b))) * q.scales[r];
      }
    }
  }
  if (q.input_order.empty()) return stored;
  std::vector<float> w(stored.size());
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t j = 0; j < in; ++j) w[r * in + q.input_order[j]] = stored[r * in + j];
  }
  return w;
}

absl::StatusOr<QuantizedLinear> ConcatQuantizedLinears(std::vector<QuantizedLinear> parts,
                                                       const std::vector<std::string>& names) {
  if (parts.empty()) return absl::InvalidArgumentError("fused linear of no parts");
  if (parts.size() == 1) return std::move(parts[0]);
  QuantizedLinear fused = std::move(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) {
    QuantizedLinear& part = parts[i];
    const auto mismatch = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(names[i], " and ", names[0], " differ in ", what,
                                                     "; tern fuses them into one linear layer, so they must agree"));
    };
    if (part.scheme.scheme != fused.scheme.scheme || part.scheme.group_size != fused.scheme.group_size) {
      return mismatch(absl::StrCat("scheme (", part.scheme.ToString(), " vs ", fused.scheme.ToString(), ")"));
    }
    fused.scheme.symmetric = fused.scheme.symmetric && part.scheme.symmetric;
    if (part.in_features != fused.in_features || part.group_size != fused.group_size) return mismatch("shape");
    if (part.input_order != fused.input_order) return mismatch("act-order permutation (g_idx)");
    if (part.input_smoothing != fused.input_smoothing) return mismatch("smoothing factors");
    if (part.bias.empty() != fused.bias.empty()) return mismatch("having a bias");
    if ((part.input_scale == 0.0f) != (fused.input_scale == 0.0f)) {
      return mismatch("activation scales (one static, one dynamic)");
    }
    fused.out_features += part.out_features;
    fused.weight.insert(fused.weight.end(), part.weight.begin(), part.weight.end());
    fused.scales.insert(fused.scales.end(), part.scales.begin(), part.scales.end());
    fused.zeros.insert(fused.zeros.end(), part.zeros.begin(), part.zeros.end());
    fused.bias.insert(fused.bias.end(), part.bias.begin(), part.bias.end());
    fused.input_scale = std::max(fused.input_scale, part.input_scale);
  }
  return fused;
}

}  // namespace tern::runtime
