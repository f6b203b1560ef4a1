// tern-quantize: quantizes a dense Hugging Face model directory by
// round-to-nearest and writes it in a published checkpoint format
// (tools/quantize/checkpoint_writer.h), which tern loads back.
//
//   tern-quantize --model DIR --out DIR --scheme w4a16-g128|w8a16|fp8|int8|mixed:<plan>
//                 [--format gptq|compressed-tensors] [--max-shard-mib 4096]
//
// --format defaults to gptq for weight-only schemes and compressed-tensors
// for W8A8 and mixed plans.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "runtime/base/flag_names.h"
#include "tools/quantize/checkpoint_writer.h"

ABSL_FLAG(std::string, model, "", "Dense Hugging Face model directory (fp32, fp16 or bf16 weights)");
ABSL_FLAG(std::string, out, "", "Output directory (created)");
ABSL_FLAG(std::string, scheme, "",
          "w8a16[-g<N>][-asym], w4a16[-g<N>][-asym] (N = 32, 64, 128, 256), fp8, int8, or mixed:<plan file>");
ABSL_FLAG(std::string, format, "", "gptq or compressed-tensors (default: gptq for weight-only schemes)");
ABSL_FLAG(int64_t, max_shard_mib, 4096, "Largest safetensors shard; more shards get an index");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-quantize: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tern;
  absl::SetProgramUsageMessage(
      "quantizes a dense model directory by round-to-nearest into a published checkpoint format\n\n"
      "  tern-quantize --model DIR --out DIR --scheme w4a16-g128 [--format gptq|compressed-tensors]\n");
  std::vector<std::string> args = base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  const std::vector<char*> positional = absl::ParseCommandLine(int(arg_ptrs.size()), arg_ptrs.data());
  if (positional.size() != 1) return Fail("takes no positional arguments");

  tools::QuantizeOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.out_dir = absl::GetFlag(FLAGS_out);
  options.max_shard_mib = absl::GetFlag(FLAGS_max_shard_mib);
  if (options.model_dir.empty() || options.out_dir.empty()) return Fail("--model and --out are required");
  if (absl::GetFlag(FLAGS_scheme).empty()) return Fail("--scheme is required");
  auto scheme = runtime::ParseWeightSchemeRequest(absl::GetFlag(FLAGS_scheme));
  if (!scheme.ok()) return Fail("--scheme: " + std::string(scheme.status().message()));
  options.scheme = *scheme;
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format == "gptq") {
    options.format = tools::CheckpointWriteFormat::kGptq;
  } else if (format == "compressed-tensors") {
    options.format = tools::CheckpointWriteFormat::kCompressedTensors;
  } else if (format.empty()) {
    const bool weight_only =
        scheme->kind == runtime::WeightSchemeRequest::Kind::kUniform && runtime::IsWeightOnly(scheme->uniform.scheme);
    options.format =
        weight_only ? tools::CheckpointWriteFormat::kGptq : tools::CheckpointWriteFormat::kCompressedTensors;
  } else {
    return Fail("--format: \"" + format + "\" is not gptq or compressed-tensors");
  }
  auto report = tools::QuantizeCheckpoint(options);
  if (!report.ok()) return Fail(std::string(report.status().message()));
  std::printf("wrote %s: %s, %lld layers quantized, %lld dense, %.1f MiB -> %.1f MiB\n", options.out_dir.c_str(),
              report->description.c_str(), static_cast<long long>(report->quantized_layers),
              static_cast<long long>(report->dense_layers), double(report->bytes_in) / (1 << 20),
              double(report->bytes_out) / (1 << 20));
  return 0;
}
