// What a DiT's weight_scheme makes of each of its linear layers (ViDiT-Q /
// MixDQ style W8A8): the layers by name, which of them a scheme quantizes,
// and the per-layer plan DitWeights::Load follows.
//
// The spellings are the LLM's (runtime/model/weight_scheme.h), restricted to
// what a DiT runs:
//   auto                 every layer as stored, in the ops' compute dtype
//   w8a8-int8 | int8     every layer of the DiT blocks (adaLN modulation,
//   w8a8-fp8  | fp8      qkv, attention out, MLP fc1 and fc2) quantized at
//                        load by round-to-nearest (rtn_quantizer.h: one
//                        scale per output channel), activations per token at
//                        run time; the patch embedding, the timestep
//                        embedder and the final layer stay dense
//   mixed:<plan file>    per-layer schemes from the LLM's plan file:
//                        {"default": "<scheme>", "layers": {"<module>": "<scheme>"}}
//                        with schemes "dense", "w8a8-int8" or "w8a8-fp8".
//                        Layers the plan does not name take "default" if
//                        they are block layers, and stay dense otherwise
//                        (unless named). tools/dit_quant writes such plans:
//                        the default scheme with its most sensitive layers
//                        "dense".
// Module names are the checkpoint's without ".weight" (DitLinearModules,
// dit_weights.h):
// "blocks.3.attn.qkv", "blocks.3.adaLN_modulation", "final_layer.linear" in
// tern's naming; "transformer_blocks.3.attn1.to_q" in diffusers' (to_q,
// to_k and to_v are one fused layer and must share a scheme; a block's
// timestep embedder equal to block 0's is block 0's, so only block 0's
// name changes it).
//
// Errors (INVALID_ARGUMENT, naming the scheme, plan file and layer): a
// weight-only scheme (the DiT path has no W4A16/W8A16 kernels), a plan that
// names a layer the model does not have, fused parts with different schemes.
// Whether the ops can run a scheme (FP8 needs compute capability 8.9+ on
// CUDA) is DitOps::CheckWeightScheme's, asked by DitWeights::Load before any
// layer is prepared.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/model/quantized_weight.h"
#include "runtime/model/weight_scheme.h"

namespace tern::runtime {

// Per layer: the scheme it runs as.
class DitLinearPlan {
 public:
  // Every layer dense (weight_scheme "auto").
  static DitLinearPlan Dense(const DitConfig& config, DitNaming naming);
  // From the model config's weight_scheme. A mixed request reads its plan
  // file (NOT_FOUND when it cannot be read).
  static absl::StatusOr<DitLinearPlan> Create(const DitConfig& config, DitNaming naming,
                                              const WeightSchemeRequest& request);
  // From a plan in memory; `source` names it in errors.
  static absl::StatusOr<DitLinearPlan> FromMixed(const DitConfig& config, DitNaming naming,
                                                 const MixedPrecisionPlan& plan, const std::string& source);

  // The scheme of `module` (one of DitLinearModules'); CHECK-fails otherwise.
  const LinearScheme& For(const std::string& module) const;
  const std::map<std::string, LinearScheme>& layers() const { return layers_; }
  bool any_quantized() const;
  // The distinct schemes the plan uses, dense included.
  std::vector<LinearScheme> schemes() const;
  // What ModelInfo reports: `dense_name` (the compute dtype, "bf16") when
  // no layer is quantized, else the scheme ("mixed" for a plan) and the
  // layer counts: "w8a8-int8 (dense x 5, w8a8-int8 x 40; quantized at load,
  // dense layers in bf16)".
  std::string Describe(const std::string& dense_name) const;

 private:
  std::map<std::string, LinearScheme> layers_;
  bool mixed_ = false;  // from a plan file
};

}  // namespace tern::runtime
