#include "runtime/sampling/sampling_params.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("sampling.", field, ": ", why));
}

// `lo_open` makes the lower bound exclusive. Written as negated comparisons so
// that NaN, which compares false to everything, fails too.
absl::Status CheckFloat(const char* field, float value, double lo, double hi, bool lo_open,
                        const char* range) {
  if (!std::isfinite(value)) return Invalid(field, absl::StrCat(value, " is not a finite number"));
  const bool above = lo_open ? value > lo : value >= lo;
  if (!above || !(value <= hi)) return Invalid(field, absl::StrCat(value, " is not in ", range));
  return absl::OkStatus();
}

}  // namespace

absl::Status SamplingParams::Validate() const {
  RETURN_IF_ERROR(CheckFloat("temperature", temperature, 0.0, 100.0, false, "[0, 100]"));
  RETURN_IF_ERROR(CheckFloat("top_p", top_p, 0.0, 1.0, true, "(0, 1]"));
  if (top_k < 0) return Invalid("top_k", absl::StrCat(top_k, " is negative (0 means no limit)"));
  RETURN_IF_ERROR(CheckFloat("min_p", min_p, 0.0, 1.0, false, "[0, 1]"));
  RETURN_IF_ERROR(
      CheckFloat("repetition_penalty", repetition_penalty, 0.0, 100.0, true, "(0, 100]"));
  RETURN_IF_ERROR(CheckFloat("presence_penalty", presence_penalty, -2.0, 2.0, false, "[-2, 2]"));
  RETURN_IF_ERROR(CheckFloat("frequency_penalty", frequency_penalty, -2.0, 2.0, false, "[-2, 2]"));
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty()) return Invalid(absl::StrCat("stop[", i, "]"), "is empty");
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    if (stop_token_ids[i] < 0) {
      return Invalid(absl::StrCat("stop_token_ids[", i, "]"),
                     absl::StrCat(stop_token_ids[i], " is negative"));
    }
  }
  if (max_tokens.has_value() && *max_tokens < 1) {
    return Invalid("max_tokens", absl::StrCat(*max_tokens, " is < 1"));
  }
  if (n < 1) return Invalid("n", absl::StrCat(n, " is < 1"));
  if (logprobs.has_value() && (*logprobs < 0 || *logprobs > 20)) {
    return Invalid("logprobs", absl::StrCat(*logprobs, " is not in [0, 20]"));
  }
  return absl::OkStatus();
}

}  // namespace tern::runtime
