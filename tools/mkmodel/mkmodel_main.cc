// tern-mkmodel: writes a Hugging Face-format model directory with random
// weights from a fixed seed, at any preset shape, with a real tokenizer.
//
//   tern-mkmodel --arch llama|mistral|qwen2|mixtral --preset tiny|100m|1b|llama-2-7b|llama-3-8b
//                (--tokenizer DIR | --vocab-size N) --seed N
//                --dtype float32|float16|bfloat16 --out DIR [--max-shard-mib N] [--layers N]
//                [--experts N --experts-per-token K] (mixtral)
//                [--max-position-embeddings N]
//
// Weights: linear W ~ N(0, 1/in_features), embeddings ~ N(0, 1), norm
// weights ~ 1 + N(0, 0.1^2), biases ~ N(0, 0.02^2). Each tensor's stream is
// seeded from (seed, tensor name), so a tensor does not depend on the order
// or the presence of the others. The generator is splitmix64 with
// Box-Muller, so the bytes are the same on every platform.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/model/hf_config.h"
#include "runtime/model/weight_layout.h"
#include "runtime/base/flag_names.h"
#include "tools/mkmodel/dit_model_writer.h"
#include "tools/mkmodel/model_presets.h"
#include "tools/mkmodel/normal_stream.h"
#include "tools/mkmodel/tokenizer_facts.h"

ABSL_FLAG(std::string, arch, "llama", "llama, mistral, qwen2, mixtral, or dit (a latent DiT with its VAE)");
ABSL_FLAG(std::string, preset, "tiny",
          "tiny, 100m, 1b, llama-2-7b or llama-3-8b; for dit: tiny, dit-xl-2-256 or dit-xl-2-512");
ABSL_FLAG(std::string, layout, "diffusers",
          "dit only: diffusers (model_index.json, transformer/, scheduler/, vae/) or original (config.json and "
          "model.safetensors in the original DiT's names, vae/ beside)");
ABSL_FLAG(bool, distinct_block_embedders, false,
          "dit, diffusers layout only: every block gets its own timestep and class embedders (converted "
          "checkpoints repeat one set)");
ABSL_FLAG(std::string, tokenizer, "",
          "Directory with tokenizer.json or tokenizer.model, copied into the model; sets the vocabulary");
ABSL_FLAG(int64_t, vocab_size, 0,
          "Vocabulary size of a model without a tokenizer (tests that feed token ids); "
          "exclusive with --tokenizer");
ABSL_FLAG(uint64_t, seed, 0, "Seed of the random weights");
ABSL_FLAG(std::string, dtype, "float32", "float32, float16 or bfloat16");
ABSL_FLAG(std::string, out, "", "Output directory (created)");
ABSL_FLAG(int64_t, max_shard_mib, 4096, "Largest safetensors shard; more shards get an index");
ABSL_FLAG(int64_t, layers, 0, "Override the preset's number of layers (0 keeps it)");
ABSL_FLAG(int64_t, experts, 0,
          "mixtral: experts per layer instead of the preset's (fewer, as an expert-pruned checkpoint holds; 0 keeps it)");
ABSL_FLAG(int64_t, experts_per_token, 0, "mixtral: experts each token is routed to (0 keeps the preset's 2)");
ABSL_FLAG(int64_t, max_position_embeddings, 0,
          "Override the preset's max_position_embeddings, the longest context (0 keeps it)");

namespace {

namespace fs = std::filesystem;
using tern::runtime::DType;

using tern::tools::NormalStream;

void StoreValue(DType dtype, float value, size_t i, uint8_t* out) {
  switch (dtype) {
    case DType::kF32: std::memcpy(out + 4 * i, &value, 4); break;
    case DType::kF16: {
      const uint16_t h = tern::runtime::FloatToHalf(value);
      std::memcpy(out + 2 * i, &h, 2);
      break;
    }
    case DType::kBF16: {
      const uint16_t b = tern::runtime::FloatToBFloat16(value);
      std::memcpy(out + 2 * i, &b, 2);
      break;
    }
    default: break;
  }
}

// Tensors above this many elements are filled in chunks, each from its own
// stream seeded by (seed, name, chunk), on all cores: a 7B model takes
// seconds instead of minutes. Smaller tensors keep one stream per tensor.
constexpr size_t kChunkElements = size_t(1) << 22;

void FillTensor(const tern::runtime::LayoutEntry& entry, uint64_t seed, uint8_t* out) {
  const auto& spec = entry.spec;
  const size_t count = spec.nbytes() / tern::runtime::DTypeSize(spec.dtype);
  float scale = 1.0f, offset = 0.0f;
  switch (entry.role) {
    case tern::runtime::TensorRole::kEmbedding: scale = 1.0f; break;
    case tern::runtime::TensorRole::kNorm: scale = 0.1f; offset = 1.0f; break;
    case tern::runtime::TensorRole::kBias: scale = 0.02f; break;
    case tern::runtime::TensorRole::kLinear:
    case tern::runtime::TensorRole::kRouter:
      scale = 1.0f / std::sqrt(float(spec.shape.back()));
      break;
  }
  if (count <= kChunkElements) {
    NormalStream normal(seed, spec.name);
    for (size_t i = 0; i < count; ++i) StoreValue(spec.dtype, offset + scale * normal.Next(), i, out);
    return;
  }
  const size_t chunks = (count + kChunkElements - 1) / kChunkElements;
  std::atomic<size_t> next{0};
  const auto work = [&] {
    for (size_t c = next++; c < chunks; c = next++) {
      NormalStream normal(seed, spec.name + "#" + std::to_string(c));
      const size_t end = std::min(count, (c + 1) * kChunkElements);
      for (size_t i = c * kChunkElements; i < end; ++i) StoreValue(spec.dtype, offset + scale * normal.Next(), i, out);
    }
  };
  std::vector<std::thread> threads;
  const size_t workers = std::min<size_t>(chunks, std::max(1u, std::thread::hardware_concurrency()));
  for (size_t t = 1; t < workers; ++t) threads.emplace_back(work);
  work();
  for (auto& thread : threads) thread.join();
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tern-mkmodel: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "writes a Hugging Face model directory with seeded random weights\n\n"
      "  tern-mkmodel --arch llama --preset tiny --tokenizer DIR --seed 0 --dtype float32 --out DIR\n");
  std::vector<std::string> args = tern::base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  absl::ParseCommandLine(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());

  const std::string out = absl::GetFlag(FLAGS_out);
  const std::string tokenizer_dir = absl::GetFlag(FLAGS_tokenizer);
  const std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (out.empty()) return Fail("--out is required");
  if (absl::GetFlag(FLAGS_arch) == "dit") {
    DType dit_dtype;
    if (!tern::runtime::ParseTorchDType(dtype_name, &dit_dtype)) return Fail("--dtype must be float32, float16 or bfloat16");
    auto spec = tern::tools::DitPreset(absl::GetFlag(FLAGS_preset));
    if (!spec.ok()) return Fail(std::string(spec.status().message()));
    if (absl::GetFlag(FLAGS_layers) > 0) spec->depth = int32_t(absl::GetFlag(FLAGS_layers));
    spec->diffusers = absl::GetFlag(FLAGS_layout) == "diffusers";
    if (!spec->diffusers && absl::GetFlag(FLAGS_layout) != "original") return Fail("--layout must be diffusers or original");
    spec->distinct_block_embedders = absl::GetFlag(FLAGS_distinct_block_embedders);
    auto written = tern::tools::WriteDitModel(*spec, out, seed, dit_dtype);
    if (!written.ok()) return Fail(std::string(written.status().message()));
    std::printf("wrote %s: %s\n", out.c_str(), written->c_str());
    return 0;
  }
  const int64_t vocab_size = absl::GetFlag(FLAGS_vocab_size);
  if (tokenizer_dir.empty() == (vocab_size <= 0)) return Fail("give exactly one of --tokenizer and --vocab-size");
  DType dtype;
  if (!tern::runtime::ParseTorchDType(dtype_name, &dtype)) {
    return Fail("--dtype must be float32, float16 or bfloat16");
  }
  absl::StatusOr<tern::tools::TokenizerFacts> facts = tern::tools::TokenizerFacts{vocab_size, -1, -1, {}};
  if (!tokenizer_dir.empty()) facts = tern::tools::ReadTokenizerFacts(tokenizer_dir);
  if (!facts.ok()) return Fail(std::string(facts.status().message()));
  auto shape = tern::tools::ShapeFor(absl::GetFlag(FLAGS_arch), absl::GetFlag(FLAGS_preset), facts->vocab_size);
  if (!shape.ok()) return Fail(std::string(shape.status().message()));
  if (absl::GetFlag(FLAGS_layers) > 0) shape->layers = absl::GetFlag(FLAGS_layers);
  if (absl::GetFlag(FLAGS_experts) != 0 || absl::GetFlag(FLAGS_experts_per_token) != 0) {
    if (shape->experts == 0) return Fail("--experts and --experts-per-token are for --arch mixtral");
    if (absl::GetFlag(FLAGS_experts) < 0 || absl::GetFlag(FLAGS_experts_per_token) < 0) {
      return Fail("--experts and --experts-per-token must not be negative");
    }
    if (absl::GetFlag(FLAGS_experts) > 0) shape->experts = absl::GetFlag(FLAGS_experts);
    if (absl::GetFlag(FLAGS_experts_per_token) > 0) shape->experts_per_token = absl::GetFlag(FLAGS_experts_per_token);
    // An unusable pair (more experts a token than a layer has) is the config parser's to name, below.
  }
  if (absl::GetFlag(FLAGS_max_position_embeddings) < 0) return Fail("--max-position-embeddings must not be negative");
  if (absl::GetFlag(FLAGS_max_position_embeddings) > 0) shape->max_positions = absl::GetFlag(FLAGS_max_position_embeddings);

  const nlohmann::json config_json =
      tern::tools::HfConfigJson(absl::GetFlag(FLAGS_arch), *shape, dtype_name, facts->bos_id, facts->eos_id);
  auto config = tern::runtime::ParseHfConfig(config_json.dump());
  if (!config.ok()) return Fail(std::string(config.status().message()));

  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return Fail(absl::StrCat("cannot create ", out, ": ", ec.message()));
  std::ofstream(fs::path(out) / "config.json") << config_json.dump(2) << "\n";
  nlohmann::json generation = {{"do_sample", false}};
  if (facts->bos_id >= 0) generation["bos_token_id"] = facts->bos_id;
  if (facts->eos_id >= 0) generation["eos_token_id"] = facts->eos_id;
  std::ofstream(fs::path(out) / "generation_config.json") << generation.dump(2) << "\n";
  for (const auto& file : facts->files) {
    fs::copy_file(fs::path(tokenizer_dir) / file, fs::path(out) / file, fs::copy_options::overwrite_existing, ec);
    if (ec) return Fail(absl::StrCat("cannot copy ", file, ": ", ec.message()));
    fs::permissions(fs::path(out) / file, fs::perms::owner_read | fs::perms::owner_write,
                    fs::perm_options::add, ec);
  }

  // Split the layout into shards of at most --max-shard-mib.
  const auto layout = tern::runtime::LlamaFamilyLayout(*config, dtype);
  const size_t shard_limit = size_t(std::max<int64_t>(1, absl::GetFlag(FLAGS_max_shard_mib))) << 20;
  std::vector<std::vector<const tern::runtime::LayoutEntry*>> shards(1);
  size_t shard_bytes = 0, total_bytes = 0;
  for (const auto& entry : layout) {
    if (shard_bytes > 0 && shard_bytes + entry.spec.nbytes() > shard_limit) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&entry);
    shard_bytes += entry.spec.nbytes();
    total_bytes += entry.spec.nbytes();
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name = shards.size() == 1
                                 ? "model.safetensors"
                                 : absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size());
    std::vector<tern::runtime::TensorSpec> specs;
    std::map<std::string, const tern::runtime::LayoutEntry*> by_name;
    for (const auto* entry : shards[s]) {
      specs.push_back(entry->spec);
      by_name[entry->spec.name] = entry;
      weight_map[entry->spec.name] = name;
    }
    const auto status = tern::runtime::WriteSafetensors(
        (fs::path(out) / name).string(), specs,
        [&](const tern::runtime::TensorSpec& spec, uint8_t* buffer) { FillTensor(*by_name[spec.name], seed, buffer); },
        {{"format", "pt"}});
    if (!status.ok()) return Fail(std::string(status.message()));
  }
  if (shards.size() > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    std::ofstream(fs::path(out) / "model.safetensors.index.json") << index.dump(2) << "\n";
  }
  std::printf("wrote %s: %s %s, %zu tensors, %.1f MiB in %zu shard(s), vocab %lld\n", out.c_str(),
              config->architecture.c_str(), dtype_name.c_str(), layout.size(), total_bytes / 1048576.0,
              shards.size(), static_cast<long long>(config->vocab_size));
  return 0;
}
