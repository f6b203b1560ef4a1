// What a model's configuration asks of its linear layers (ModelConfig's
// weight_scheme, tern-perplexity's --weight-scheme), parsed once into a typed
// value, and the per-layer plan of mixed precision.
//
// Spellings (exact, lower case):
//   auto                     the checkpoint as stored (dense, or its quantization_config)
//   w8a16[-g<N>][-asym]      8-bit weights; default one scale per output channel
//   w4a16[-g<N>][-asym]      4-bit weights; default group 128
//   w4a16-channel, w8a16-channel    one group per output channel
//   fp8 | w8a8-fp8           FP8 E4M3 weights per channel, activations per token
//   int8 | w8a8-int8         INT8 weights per channel, activations per token
//   mixed:<plan file>        per-layer schemes from a JSON plan (below)
// N is 32, 64, 128 or 256; -asym gives weight-only groups a zero point
// (min/max) instead of the symmetric midpoint. "w8a8" alone is ambiguous
// and rejected. A scheme other than auto on a dense checkpoint quantizes it
// at load by round-to-nearest (rtn_quantizer.h); on a quantized checkpoint it
// must match what is stored.
//
// Plan file (JSON): {"default": "<scheme>", "layers": {"<module>": "<scheme>"}}
// where <module> is a linear layer's name without ".weight"
// ("model.layers.0.self_attn.q_proj", "lm_head") and <scheme> is one of the
// spellings above or "dense". Layers the plan does not name take "default"
// (itself "dense" when absent); lm_head and MoE routers stay dense unless
// named. Layers that tern fuses (q/k/v, gate/up) must share a scheme.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/model/quantized_weight.h"

namespace tern::runtime {

struct WeightSchemeRequest {
  enum class Kind { kAuto, kUniform, kMixed };
  Kind kind = Kind::kAuto;
  LinearScheme uniform;   // kUniform
  std::string plan_path;  // kMixed

  // The canonical spelling: "auto", "w4a16-g128", "mixed:<path>".
  std::string ToString() const;
};

// INVALID_ARGUMENT naming the value and listing the accepted spellings. The
// empty string is "auto".
absl::StatusOr<WeightSchemeRequest> ParseWeightSchemeRequest(const std::string& text);

// One layer's scheme: the spellings above but auto and mixed, plus "dense".
absl::StatusOr<LinearScheme> ParseLinearScheme(const std::string& text);

struct MixedPrecisionPlan {
  LinearScheme default_scheme;                 // for layers not named
  std::map<std::string, LinearScheme> layers;  // module name -> scheme
};

// `source` names the plan in errors (its path).
absl::StatusOr<MixedPrecisionPlan> ParseMixedPrecisionPlan(const std::string& json_text, const std::string& source);
// NOT_FOUND when the file cannot be read.
absl::StatusOr<MixedPrecisionPlan> LoadMixedPrecisionPlan(const std::string& path);

}  // namespace tern::runtime
