// Where each linear layer of a Llama-family checkpoint comes from and what it
// becomes at load: dense as stored, quantized as stored (the checkpoint's
// quantization_config), or quantized at load by round-to-nearest when the
// configuration asks a dense checkpoint for a scheme (weight_scheme.h).
//
// Rules: "auto" keeps every layer as stored. A uniform scheme must match what
// a quantized checkpoint stores (scheme and group size); on a dense
// checkpoint it quantizes every linear layer but lm_head and MoE routers. A
// mixed plan applies to dense checkpoints only; it may name any linear layer,
// lm_head included, and names that are not layers of the model are errors.
// Layers that LlamaModel fuses must end up with one scheme (CheckFusable).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/backend/backend.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/quantized_checkpoint.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/weight_scheme.h"

namespace tern::runtime {

class LinearPlan {
 public:
  // `store` is borrowed and must outlive the plan. Reads a mixed plan's file.
  // INVALID_ARGUMENT for a malformed quantization_config, a request that
  // does not match the checkpoint, or a plan naming unknown layers.
  static absl::StatusOr<std::unique_ptr<LinearPlan>> Create(const std::string& model_dir, const HfConfig& config,
                                                            const WeightStore* store,
                                                            const WeightSchemeRequest& request);

  // Every linear layer's tensors are present with the dtypes and shapes its
  // stored form needs (headers only; values are checked when read).
  absl::Status CheckTensors() const;
  // `modules` (the parts of one fused layer) share a target scheme and a
  // source (all stored quantized, or all quantized at load, or all dense).
  absl::Status CheckFusable(const std::vector<std::string>& modules) const;
  // The distinct schemes the layers will run as.
  std::vector<LinearScheme> Schemes() const;
  // Every linear layer's module name ("lm_head" included), sorted.
  std::vector<std::string> Modules() const;
  // What `module` runs as; INVALID_ARGUMENT for an unknown module.
  absl::StatusOr<LinearScheme> Target(const std::string& module) const;

  // Prepares the rows-concatenation of `modules` on `backend`, with their
  // biases (module + ".bias") when `with_bias`.
  absl::StatusOr<std::unique_ptr<LinearWeight>> Prepare(Backend& backend, const std::vector<std::string>& modules,
                                                        bool with_bias) const;

  // What the linear layers run as: "dense", "w4a16-g128 (gptq)",
  // "w8a8-fp8 (quantized at load)", "mixed (w4a16-g128 x 14, dense x 2)".
  std::string Describe() const;
  // True when some layer is not dense.
  bool quantized() const;
  const CheckpointQuantization& checkpoint() const { return checkpoint_; }

 private:
  struct Entry {
    int64_t out = 0, in = 0;
    std::string weight_tensor;  // the float tensor of a dense source (tied lm_head: the embedding)
    StoredLinear stored;
    LinearScheme target;
    bool quantize_at_load = false;
  };
  LinearPlan() = default;
  absl::StatusOr<const Entry*> Find(const std::string& module) const;

  const WeightStore* store_ = nullptr;
  CheckpointQuantization checkpoint_;
  std::map<std::string, Entry> entries_;  // by module name
};

}  // namespace tern::runtime
