// A DiTFastAttn attention plan (Yuan et al. 2024, "DiTFastAttn: Attention
// Compression for Diffusion Transformer Models"): for every denoising step
// and every block of a DiT, what the block's self-attention does.
//
//   full        attention over all tokens (exact)
//   window      window attention (query i attends keys j with |i - j| <=
//               window, a 1-D band over the token order) plus the residual
//               (full minus window output) this layer cached at its last
//               full step: WA-RS
//   reuse       the attention output (after the projection) of this layer at
//               the previous step, unchanged: AST
//   full+cfg    full, computed for a guided sample's conditional row only;
//   window+cfg  the unconditional row takes the conditional row's output
//               (ASC, sharing across the classifier-free guidance halves)
//
// A plan is written for one number of sampler steps: requests with another
// step count (and requests that ask for exact attention) run full attention.
//
// Two file forms are read (runtime/dit/README.md "DiTFastAttn"):
//
//   tern's:  {"format": "tern-dit-attention-plan", "version": 1,
//             "steps": 20, "layers": 28, "window": 128,
//             "methods": [["full", "full", ...], ...],   // [step][layer]
//             "metadata": {...}}                          // optional
//   the reference implementation's (thu-nics/DiTFastAttn), its per-block
//   method lists as JSON: [{"attn1": ["full_attn", "output_share", ...],
//   "attn2": null, "ff": null}, ...] with methods full_attn,
//   full_attn+cfg_attn_share, residual_window_attn,
//   residual_window_attn+cfg_attn_share and output_share; its window is the
//   reference's default, 64 tokens on each side. Cross-attention (attn2) and
//   MLP (ff) sharing are refused: a class-conditional DiT has neither.
//
// Checks (INVALID_ARGUMENT "<source>: <field>: <why>"): the layer count is the
// model's depth; steps in [1, num_train_timesteps] and one row of methods a
// step; every method known; window in [1, tokens per image]; a window step
// needs an earlier full step of its layer (the residual), a reuse step an
// earlier step of its layer that computed attention (so step 0 is full).
//
// Immutable after parsing; shared by the model and any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dit/dit_config.h"

namespace tern::runtime {

enum class DitAttentionMethod : uint8_t {
  kFull = 0,
  kFullShareCfg = 1,
  kWindow = 2,
  kWindowShareCfg = 3,
  kReuse = 4,
};

// "full", "full+cfg", "window", "window+cfg", "reuse".
const char* DitAttentionMethodName(DitAttentionMethod method);
inline bool SharesCfg(DitAttentionMethod m) {
  return m == DitAttentionMethod::kFullShareCfg || m == DitAttentionMethod::kWindowShareCfg;
}
inline bool IsWindow(DitAttentionMethod m) {
  return m == DitAttentionMethod::kWindow || m == DitAttentionMethod::kWindowShareCfg;
}
inline bool IsFull(DitAttentionMethod m) {
  return m == DitAttentionMethod::kFull || m == DitAttentionMethod::kFullShareCfg;
}

struct DitAttentionPlan {
  int32_t num_steps = 0;
  int32_t num_layers = 0;
  int32_t window = 0;  // keys on each side of a query in window steps
  std::vector<DitAttentionMethod> methods;  // [step * num_layers + layer]
  std::string metadata_json = "{}";         // tern form's "metadata" (compact JSON)
  std::string source;                       // the file, for messages

  DitAttentionMethod method(int32_t step, int32_t layer) const {
    return methods[size_t(step) * size_t(num_layers) + size_t(layer)];
  }
  // A full step whose window residual a later window step of the layer reads
  // (before the layer's next full step).
  bool StoresResidual(int32_t step, int32_t layer) const;
  // A step that computes attention and whose output the next step reuses.
  bool StoresOutput(int32_t step, int32_t layer) const;
  // Layers that ever read a residual / a reused output (they get cache rows).
  bool LayerUsesResidual(int32_t layer) const;
  bool LayerUsesOutput(int32_t layer) const;
  // Fraction of (step, layer) entries using `method`.
  double Share(DitAttentionMethod method) const;
  // The attention score work kept, relative to full attention everywhere, at
  // `tokens` tokens per image: window steps count (band keys) / tokens, reuse
  // 0, the +cfg methods half for guided samples (counted as guided).
  double AttentionFraction(int64_t tokens) const;
  // "ditfastattn (20 steps, window 32: full 45%, window 30%, reuse 25%, +cfg 10%)".
  std::string Describe() const;
};

// Parses and checks a plan for `config` (either form). Errors as above.
absl::StatusOr<DitAttentionPlan> ParseDitAttentionPlan(std::string_view json_text, const std::string& source,
                                                       const DitConfig& config);
// Reads `path`; NOT_FOUND naming it when it cannot be read.
absl::StatusOr<DitAttentionPlan> LoadDitAttentionPlan(const std::string& path, const DitConfig& config);
// tern's form, one step a line.
std::string DitAttentionPlanToJson(const DitAttentionPlan& plan);

// `plan`, made for a model of `source_tokens` tokens an image, stretched
// over `config`'s model: target layer l follows source layer
// l * plan.num_layers / config.depth at every step (so the method mix and
// each layer's step sequence stay the plan's), and the window keeps its share
// of the tokens (at least 1). The result is checked against `config` as
// ParseDitAttentionPlan checks a file; INVALID_ARGUMENT for source_tokens <=
// 0, errors naming the plan's source otherwise.
absl::StatusOr<DitAttentionPlan> StretchDitAttentionPlan(const DitAttentionPlan& plan, int32_t source_tokens,
                                                         const DitConfig& config);

}  // namespace tern::runtime
