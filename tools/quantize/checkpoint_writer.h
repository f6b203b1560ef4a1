// tern-quantize's writer: a dense Hugging Face Llama-family directory in,
// the same model with its linear layers quantized by round-to-nearest
// (runtime/model/rtn_quantizer.h) out, in a published checkpoint format that
// tern (runtime/model/quantized_checkpoint.h) and other engines load:
//   gptq                 W4A16 / W8A16: qweight, qzeros (zero - 1, the
//                        original "gptq" convention), fp16 scales, g_idx
//   compressed-tensors   every scheme: pack-quantized (W4A16 / W8A16),
//                        int-quantized (INT8 W8A8), float-quantized (FP8
//                        W8A8), per-channel weights, per-token dynamic
//                        activations; one config group per scheme, so a
//                        mixed-precision plan is written too
// lm_head and MoE routers stay dense unless a plan names them; every other
// tensor is copied as stored. Tokenizer and other files are copied.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/dtype.h"
#include "runtime/model/quantized_weight.h"
#include "runtime/model/weight_scheme.h"

namespace tern::tools {

enum class CheckpointWriteFormat { kGptq, kCompressedTensors };

struct QuantizeOptions {
  std::string model_dir;
  std::string out_dir;
  // kUniform or kMixed (auto is not a target).
  runtime::WeightSchemeRequest scheme;
  CheckpointWriteFormat format = CheckpointWriteFormat::kGptq;
  int64_t max_shard_mib = 4096;
};

struct QuantizeReport {
  int64_t quantized_layers = 0;
  int64_t dense_layers = 0;
  size_t bytes_in = 0;  // safetensors payload
  size_t bytes_out = 0;
  std::string description;  // "gptq w4a16-g128"
};

absl::StatusOr<QuantizeReport> QuantizeCheckpoint(const QuantizeOptions& options);

// One tensor of a written checkpoint.
struct PublishedTensor {
  std::string name;
  runtime::DType dtype = runtime::DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// The tensors of `module` (without ".weight") holding `linear` in GPTQ's
// original format (weight-only schemes; zero codes in [1, 2^bits]), or in
// compressed-tensors' format for its scheme. Biases are not included.
absl::StatusOr<std::vector<PublishedTensor>> ExportGptq(const runtime::QuantizedLinear& linear,
                                                        const std::string& module);
absl::StatusOr<std::vector<PublishedTensor>> ExportCompressedTensors(const runtime::QuantizedLinear& linear,
                                                                     const std::string& module);

}  // namespace tern::tools
