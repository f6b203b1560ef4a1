// Quantized checkpoints as published on Hugging Face: config.json's
// quantization_config, parsed once, and the readers that repack one linear
// layer's tensors into tern's layout (QuantizedLinear, quantized_weight.h).
//
// Formats (quant_method), per linear module M ("model.layers.0.mlp.up_proj"):
//   gptq   M.qweight I32 [in / pf, out], M.qzeros I32 [groups, out / pf],
//          M.scales F16 [groups, out], M.g_idx I32 [in] (act order:
//          desc_act); bits 4 or 8, group_size -1 (per channel) or > 0, sym
//          or not, checkpoint_format "gptq" (qzeros hold zero - 1) or
//          "gptq_v2"; lm_head only with "lm_head": true; MoE routers dense.
//   awq    M.qweight I32 [in, out / 8], M.qzeros I32 [groups, out / 8],
//          M.scales F16 [groups, out]; 4 bits, zero_point true, version
//          "gemm"; modules_to_not_convert; lm_head and routers dense.
//   fp8    M.weight F8_E4M3 [out, in], M.weight_scale F32 [] / [1] (per
//          tensor) or [out] / [out, 1], M.input_scale F32 [] / [1] when
//          activation_scheme is "static"; ignored_layers; lm_head and routers
//          dense. weight_block_size is not supported.
//   compressed-tensors  config_groups of targets ("Linear", "re:<regex>",
//          names) and quantization args, minus `ignore`:
//          pack-quantized (int 4/8-bit weights only): M.weight_packed I32
//            [out, ceil(in / pf)], M.weight_shape [2], M.weight_scale
//            [out, groups] / [out, 1] / [1], M.weight_zero_point I32
//            [ceil(out / pf), groups] when asymmetric, M.weight_g_idx [in]
//            with actorder "group";
//          int-quantized / naive-quantized: M.weight I8 [out, in] plus
//            scales: int8 W8A8 (input_activations int 8-bit, per token
//            dynamic or per tensor static), or int weight-only;
//          float-quantized: M.weight F8_E4M3 [out, in], M.weight_scale
//            [out, 1] / [1], activations float 8-bit (FP8 W8A8).
//          M.input_scale [1] for static activations.
// Scales may be F32, F16 or BF16. Anything else (another quant_method, 2 or
// 3 bits, asymmetric activations, block-wise FP8, sparsity, a KV-cache
// scheme, a tensor with the wrong dtype or shape) is INVALID_ARGUMENT (or
// NOT_FOUND for a missing tensor) naming the field or tensor and what was
// expected.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/quantized_weight.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {

enum class CheckpointFormat { kDense, kGptq, kAwq, kFp8, kCompressedTensors };
// "dense", "gptq", "awq", "fp8", "compressed-tensors".
const char* CheckpointFormatName(CheckpointFormat format);

// How one linear layer is stored.
struct StoredLinear {
  enum class Layout {
    kFloat,       // M.weight in a float dtype (not quantized)
    kGptq,        // qweight / qzeros / scales / g_idx
    kAwq,         // qweight / qzeros / scales, AWQ order
    kFp8,         // weight F8_E4M3 + weight_scale (+ input_scale)
    kCtPacked,    // compressed-tensors weight_packed ...
    kCtUnpacked,  // compressed-tensors weight (I8 or F8_E4M3) + weight_scale ...
  };
  Layout layout = Layout::kFloat;
  CheckpointFormat format = CheckpointFormat::kDense;
  LinearScheme scheme;                   // what tern computes with
  bool gptq_zero_minus_one = false;      // GPTQ's original qzeros convention
  bool act_order = false;                // a g_idx tensor is part of the layer
  bool static_input_scale = false;       // W8A8: M.input_scale holds the activation scale
  bool weight_scale_per_tensor = false;  // one weight scale for the whole tensor
};

class CheckpointQuantization {
 public:
  // A dense checkpoint.
  CheckpointQuantization();
  // From the text of config.json; dense when it has no quantization_config.
  static absl::StatusOr<CheckpointQuantization> Parse(const std::string& config_json_text);
  // <model_dir>/config.json.
  static absl::StatusOr<CheckpointQuantization> Load(const std::string& model_dir);

  CheckpointFormat format() const { return format_; }
  bool quantized() const { return format_ != CheckpointFormat::kDense; }
  // How `module` (a linear layer's name without ".weight", "lm_head"
  // included) is stored.
  StoredLinear ForModule(const std::string& module) const;
  // "dense", "gptq w4a16-g128", "compressed-tensors w8a8-fp8".
  std::string Describe() const;

 private:
  struct CompiledRegex;  // std::regex, kept out of this header
  struct Target {
    std::string text;
    // For "re:" targets, compiled once; shared because copies of the
    // configuration share the immutable compiled pattern.
    std::shared_ptr<const CompiledRegex> regex;
  };
  struct Group {
    std::vector<Target> targets;
    StoredLinear stored;
  };
  static bool Matches(const Target& target, const std::string& module);

  CheckpointFormat format_ = CheckpointFormat::kDense;
  StoredLinear quantized_;                    // gptq, awq, fp8: every quantized layer
  bool quantize_lm_head_ = false;             // gptq "lm_head"
  std::vector<std::string> block_modules_;    // gptq modules_in_block_to_quantize (empty: all)
  std::vector<std::string> skip_substrings_;  // awq modules_to_not_convert
  std::vector<std::string> skip_exact_;       // fp8 ignored_layers
  std::vector<Group> groups_;                 // compressed-tensors
  std::vector<Target> ignore_;                // compressed-tensors
};

// Checks that the tensors of `module`, stored as `stored`, are present with
// the dtypes and shapes of an [out, in] linear layer.
absl::Status CheckStoredLinear(const WeightStore& store, const std::string& module, const StoredLinear& stored,
                               int64_t out, int64_t in);

// Reads a quantized layer (stored.layout != kFloat) and repacks it into
// tern's layout; also checks the values (zero codes, g_idx, shapes) and
// ValidateQuantizedLinear. `bias` [out] float, or null.
absl::StatusOr<QuantizedLinear> ReadQuantizedLinear(const WeightStore& store, const std::string& module,
                                                    const StoredLinear& stored, int64_t out, int64_t in,
                                                    const TensorView* bias);

// fp32 values of a float tensor (F32, F16, BF16, F8_E4M3).
std::vector<float> TensorToFloat(const TensorView& tensor);

}  // namespace tern::runtime
