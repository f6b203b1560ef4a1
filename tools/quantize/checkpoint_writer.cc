#include "tools/quantize/checkpoint_writer.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/linear_plan.h"
#include "runtime/model/llama_model.h"
#include "runtime/model/quantized_checkpoint.h"
#include "runtime/model/quantized_formats.h"
#include "runtime/model/rtn_quantizer.h"
#include "runtime/model/safetensors.h"

namespace tern::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runtime::DType;
using runtime::LinearScheme;
using runtime::QuantizedLinear;
using runtime::WeightScheme;

template <typename T>
PublishedTensor Tensor(std::string name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  PublishedTensor t{std::move(name), dtype, std::move(shape), {}};
  t.bytes.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

std::vector<uint16_t> ToHalf(const std::vector<float>& values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = runtime::FloatToHalf(values[i]);
  return out;
}

// Codes [out, in] in input-channel order (act order undone) and the group of
// each input channel.
void CodesInInputOrder(const QuantizedLinear& q, std::vector<uint8_t>* codes, std::vector<int32_t>* g_idx) {
  const int64_t out = q.out_features, in = q.in_features;
  const std::vector<uint8_t> stored =
      runtime::UnpackTernCodes(q.weight, out, in, runtime::WeightSchemeBits(q.scheme.scheme));
  codes->resize(stored.size());
  g_idx->resize(size_t(in));
  for (int64_t j = 0; j < in; ++j) {
    const int64_t i = q.input_order.empty() ? j : q.input_order[j];
    (*g_idx)[i] = int32_t(j / q.group_size);
    for (int64_t r = 0; r < out; ++r) (*codes)[r * in + i] = stored[r * in + j];
  }
}

bool IsIdentityGroups(const std::vector<int32_t>& g_idx, int64_t group) {
  for (size_t i = 0; i < g_idx.size(); ++i) {
    if (g_idx[i] != int32_t(int64_t(i) / group)) return false;
  }
  return true;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json GptqConfig(const LinearScheme& s) {
  return json{{"quant_method", "gptq"},
              {"bits", runtime::WeightSchemeBits(s.scheme)},
              {"group_size", s.group_size > 0 ? s.group_size : -1},
              {"desc_act", false},
              {"sym", s.symmetric},
              {"static_groups", false},
              {"true_sequential", true},
              {"damp_percent", 0.0},
              {"lm_head", false},
              {"checkpoint_format", "gptq"},
              {"meta", {{"quantizer", "tern-quantize"}, {"method", "round-to-nearest"}}}};
}

std::string CtFormat(const LinearScheme& s) {
  switch (s.scheme) {
    case WeightScheme::kW8A8Int8:
      return "int-quantized";
    case WeightScheme::kW8A8Fp8:
      return "float-quantized";
    default:
      return "pack-quantized";
  }
}

json CtGroup(const LinearScheme& s, const std::vector<std::string>& targets) {
  json weights{{"num_bits", runtime::WeightSchemeBits(s.scheme)},
               {"type", s.scheme == WeightScheme::kW8A8Fp8 ? "float" : "int"},
               {"symmetric", runtime::IsWeightOnly(s.scheme) ? s.symmetric : true},
               {"strategy", s.group_size > 0 && runtime::IsWeightOnly(s.scheme) ? "group" : "channel"},
               {"group_size", s.group_size > 0 && runtime::IsWeightOnly(s.scheme) ? json(s.group_size) : json(nullptr)},
               {"dynamic", false},
               {"actorder", nullptr},
               {"observer", "minmax"}};
  json activations = nullptr;
  if (runtime::IsW8A8(s.scheme)) {
    activations = {{"num_bits", 8},
                   {"type", s.scheme == WeightScheme::kW8A8Fp8 ? "float" : "int"},
                   {"symmetric", true},
                   {"strategy", "token"},
                   {"dynamic", true}};
  }
  return json{{"targets", targets},
              {"weights", weights},
              {"input_activations", activations},
              {"output_activations", nullptr},
              {"format", CtFormat(s)}};
}

}  // namespace

absl::StatusOr<std::vector<PublishedTensor>> ExportGptq(const QuantizedLinear& q, const std::string& module) {
  if (!runtime::IsWeightOnly(q.scheme.scheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat(module, ": gptq holds weight-only schemes, not ", q.scheme.ToString()));
  }
  const int64_t out = q.out_features, in = q.in_features, groups = q.num_groups();
  const int bits = runtime::WeightSchemeBits(q.scheme.scheme);
  const int pf = 32 / bits;
  if (in % pf != 0 || out % pf != 0) {
    return absl::InvalidArgumentError(absl::StrCat(module, ": gptq needs in_features and out_features divisible by ",
                                                   pf, " (the layer is [", out, ", ", in, "])"));
  }
  std::vector<uint8_t> codes;
  std::vector<int32_t> g_idx;
  CodesInInputOrder(q, &codes, &g_idx);
  std::vector<uint8_t> stored_zeros(q.zeros.size());
  for (size_t i = 0; i < q.zeros.size(); ++i) {
    const int z = int(q.zeros[i]) - 1;  // the original format's zero - 1
    if (z < 0 || z >= (1 << bits)) {
      return absl::InvalidArgumentError(absl::StrCat(module, ": zero code ", int(q.zeros[i]),
                                                     " cannot be written in gptq's format (it stores zero - 1 in ",
                                                     bits, " bits)"));
    }
    stored_zeros[i] = uint8_t(z);
  }
  std::vector<PublishedTensor> tensors;
  tensors.push_back(Tensor(module + ".qweight", DType::kI32, {in / pf, out},
                           runtime::PackInt32Dim0(runtime::Transpose<uint8_t>(codes, out, in), in, out, bits)));
  tensors.push_back(
      Tensor(module + ".qzeros", DType::kI32, {groups, out / pf},
             runtime::PackInt32Dim1(runtime::Transpose<uint8_t>(stored_zeros, out, groups), groups, out, bits)));
  tensors.push_back(
      Tensor(module + ".scales", DType::kF16, {groups, out}, ToHalf(runtime::Transpose<float>(q.scales, out, groups))));
  tensors.push_back(Tensor(module + ".g_idx", DType::kI32, {in}, g_idx));
  return tensors;
}

absl::StatusOr<std::vector<PublishedTensor>> ExportCompressedTensors(const QuantizedLinear& q,
                                                                     const std::string& module) {
  const int64_t out = q.out_features, in = q.in_features;
  std::vector<PublishedTensor> tensors;
  if (runtime::IsW8A8(q.scheme.scheme)) {
    if (q.input_scale != 0.0f || !q.input_smoothing.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(module, ": tern-quantize writes dynamic, unsmoothed W8A8 only"));
    }
    tensors.push_back(Tensor(module + ".weight",
                             q.scheme.scheme == WeightScheme::kW8A8Fp8 ? DType::kF8E4M3 : DType::kI8, {out, in},
                             q.weight));
    tensors.push_back(Tensor(module + ".weight_scale", DType::kF32, {out, 1}, q.scales));
    return tensors;
  }
  const int bits = runtime::WeightSchemeBits(q.scheme.scheme);
  const int pf = 32 / bits;
  const int64_t groups = q.num_groups();
  const bool grouped = q.scheme.group_size > 0;
  std::vector<uint8_t> codes;
  std::vector<int32_t> g_idx;
  CodesInInputOrder(q, &codes, &g_idx);
  tensors.push_back(Tensor(module + ".weight_packed", DType::kI32, {out, (in + pf - 1) / pf},
                           runtime::PackInt32Dim1(codes, out, in, bits)));
  tensors.push_back(Tensor(module + ".weight_shape", DType::kI64, {2}, std::vector<int64_t>{out, in}));
  tensors.push_back(Tensor(module + ".weight_scale", DType::kF16,
                           grouped ? std::vector<int64_t>{out, groups} : std::vector<int64_t>{out, 1},
                           ToHalf(q.scales)));
  if (!q.scheme.symmetric) {
    for (uint8_t z : q.zeros) {
      if (z >= (1 << bits)) {
        return absl::InvalidArgumentError(absl::StrCat(module, ": zero code ", int(z), " is outside the ", bits,
                                                       "-bit range compressed-tensors stores"));
      }
    }
    tensors.push_back(Tensor(module + ".weight_zero_point", DType::kI32, {(out + pf - 1) / pf, groups},
                             runtime::PackInt32Dim0(q.zeros, out, groups, bits)));
  }
  if (!IsIdentityGroups(g_idx, q.group_size)) {
    tensors.push_back(Tensor(module + ".weight_g_idx", DType::kI32, {in}, g_idx));
  }
  return tensors;
}

absl::StatusOr<QuantizeReport> QuantizeCheckpoint(const QuantizeOptions& options) {
  using runtime::WeightSchemeRequest;
  if (options.scheme.kind == WeightSchemeRequest::Kind::kAuto) {
    return absl::InvalidArgumentError("name a scheme to quantize to (auto keeps the checkpoint as it is)");
  }
  const bool gptq = options.format == CheckpointWriteFormat::kGptq;
  if (gptq && (options.scheme.kind != WeightSchemeRequest::Kind::kUniform ||
               !runtime::IsWeightOnly(options.scheme.uniform.scheme))) {
    return absl::InvalidArgumentError(absl::StrCat("gptq holds one weight-only scheme (w4a16, w8a16); write ",
                                                   options.scheme.ToString(), " as compressed-tensors"));
  }
  ASSIGN_OR_RETURN(runtime::HfConfig config, runtime::LoadHfConfig(options.model_dir));
  json config_json = json::parse(ReadFile(fs::path(options.model_dir) / "config.json"), nullptr, false);
  if (config_json.contains("quantization_config")) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.model_dir, " is already quantized; start from a dense checkpoint"));
  }
  ASSIGN_OR_RETURN(auto store, runtime::WeightStore::Open(options.model_dir));
  ASSIGN_OR_RETURN(auto plan, runtime::LinearPlan::Create(options.model_dir, config, store.get(), options.scheme));
  RETURN_IF_ERROR(plan->CheckTensors());

  QuantizeReport report;
  std::map<std::string, std::vector<std::string>> modules_by_scheme;  // scheme -> modules
  std::map<std::string, LinearScheme> schemes;
  std::vector<std::string> dense_modules;
  std::vector<PublishedTensor> tensors;
  std::map<std::string, bool> replaced;  // weight tensors written in quantized form
  for (const std::string& module : plan->Modules()) {
    ASSIGN_OR_RETURN(LinearScheme target, plan->Target(module));
    if (target.scheme == WeightScheme::kDense) {
      dense_modules.push_back(module);
      ++report.dense_layers;
      continue;
    }
    if (module == "lm_head" && config.tie_word_embeddings) {
      return absl::InvalidArgumentError("lm_head is tied to the embeddings; a written checkpoint cannot quantize it");
    }
    ASSIGN_OR_RETURN(runtime::TensorView weight, store->Get(module + ".weight"));
    runtime::RtnOptions rtn;
    rtn.scheme = target;
    rtn.min_zero = gptq ? 1 : 0;
    auto q = runtime::QuantizeRtn(runtime::TensorToFloat(weight), weight.shape[0], weight.shape[1], rtn);
    if (!q.ok()) return absl::Status(q.status().code(), absl::StrCat(module, ": ", q.status().message()));
    ASSIGN_OR_RETURN(std::vector<PublishedTensor> parts,
                     gptq ? ExportGptq(*q, module) : ExportCompressedTensors(*q, module));
    for (auto& part : parts) tensors.push_back(std::move(part));
    replaced[module + ".weight"] = true;
    modules_by_scheme[target.ToString()].push_back(module);
    schemes[target.ToString()] = target;
    ++report.quantized_layers;
  }
  for (const std::string& name : store->Names()) {
    if (replaced.count(name)) continue;
    ASSIGN_OR_RETURN(runtime::TensorView view, store->Get(name));
    tensors.push_back(
        PublishedTensor{name, view.dtype, view.shape, std::vector<uint8_t>(view.data, view.data + view.nbytes)});
  }
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });

  // quantization_config.
  json qc;
  if (gptq) {
    qc = GptqConfig(options.scheme.uniform);
  } else {
    json groups = json::object();
    std::string top_format;
    int index = 0;
    const bool uniform = options.scheme.kind == WeightSchemeRequest::Kind::kUniform;
    for (const auto& [name, modules] : modules_by_scheme) {
      const LinearScheme& s = schemes[name];
      groups[absl::StrCat("group_", index++)] = CtGroup(s, uniform ? std::vector<std::string>{"Linear"} : modules);
      top_format = top_format.empty() || top_format == CtFormat(s) ? CtFormat(s) : "mixed-precision";
    }
    qc = json{{"quant_method", "compressed-tensors"},
              {"format", top_format},
              {"quantization_status", "compressed"},
              {"config_groups", groups},
              {"ignore", uniform ? dense_modules : std::vector<std::string>{}},
              {"kv_cache_scheme", nullptr},
              {"sparsity_config", json::object()},
              {"global_compression_ratio", nullptr}};
  }
  config_json["quantization_config"] = qc;

  // Files: shards of at most max_shard_mib, an index when there are several.
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("cannot create ", options.out_dir, ": ", ec.message()));
  const size_t limit = size_t(std::max<int64_t>(1, options.max_shard_mib)) << 20;
  std::vector<std::vector<const PublishedTensor*>> shards(1);
  size_t shard_bytes = 0;
  for (const auto& t : tensors) {
    if (shard_bytes > 0 && shard_bytes + t.bytes.size() > limit) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&t);
    shard_bytes += t.bytes.size();
    report.bytes_out += t.bytes.size();
  }
  report.bytes_in = store->TotalBytes();
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = shards.size() == 1
                                 ? "model.safetensors"
                                 : absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size());
    std::vector<runtime::TensorSpec> specs;
    std::map<std::string, const PublishedTensor*> by_name;
    for (const PublishedTensor* t : shards[s]) {
      specs.push_back(runtime::TensorSpec{t->name, t->dtype, t->shape});
      by_name[t->name] = t;
      weight_map[t->name] = file;
    }
    RETURN_IF_ERROR(runtime::WriteSafetensors((fs::path(options.out_dir) / file).string(), specs,
                                              [&](const runtime::TensorSpec& spec, uint8_t* buffer) {
                                                const auto& bytes = by_name.at(spec.name)->bytes;
                                                std::memcpy(buffer, bytes.data(), bytes.size());
                                              },
                                              {{"format", "pt"}}));
  }
  if (shards.size() > 1) {
    json index{{"metadata", {{"total_size", report.bytes_out}}}, {"weight_map", weight_map}};
    std::ofstream(fs::path(options.out_dir) / "model.safetensors.index.json") << index.dump(2) << "\n";
  }
  std::ofstream(fs::path(options.out_dir) / "config.json") << config_json.dump(2) << "\n";
  for (const auto& entry : fs::directory_iterator(options.model_dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name == "config.json" || name == "model.safetensors.index.json" ||
        absl::EndsWith(name, ".safetensors")) {
      continue;
    }
    fs::copy_file(entry.path(), fs::path(options.out_dir) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("cannot copy ", name, ": ", ec.message()));
  }
  // The written directory must load back as what was asked.
  ASSIGN_OR_RETURN(runtime::CheckpointSummary summary,
                   runtime::LlamaModel::Inspect(options.out_dir, config, runtime::WeightSchemeRequest{}));
  report.description = summary.weight_scheme;
  return report;
}

}  // namespace tern::tools
