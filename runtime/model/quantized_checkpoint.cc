#include "runtime/model/quantized_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/model/quantized_formats.h"

namespace tern::runtime {
namespace {

using nlohmann::json;
using Layout = StoredLinear::Layout;

absl::Status BadField(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: quantization_config.", field, ": ", why));
}

std::string ShapeText(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

// --- config fields ---

absl::StatusOr<int64_t> IntField(const json& obj, const std::string& path, const char* key,
                                 std::optional<int64_t> fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (fallback.has_value()) return *fallback;
    return BadField(absl::StrCat(path, key), "is missing");
  }
  if (!it->is_number_integer()) return BadField(absl::StrCat(path, key), "is not an integer");
  return it->get<int64_t>();
}

absl::StatusOr<bool> BoolField(const json& obj, const std::string& path, const char* key, bool fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return BadField(absl::StrCat(path, key), "is not true or false");
  return it->get<bool>();
}

absl::StatusOr<std::string> StringField(const json& obj, const std::string& path, const char* key,
                                        std::optional<std::string> fallback) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (fallback.has_value()) return *fallback;
    return BadField(absl::StrCat(path, key), "is missing");
  }
  if (!it->is_string()) return BadField(absl::StrCat(path, key), "is not a string");
  return it->get<std::string>();
}

absl::StatusOr<std::vector<std::string>> StringList(const json& obj, const std::string& path, const char* key) {
  std::vector<std::string> out;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) return BadField(absl::StrCat(path, key), "is not a list of names");
  for (const auto& item : *it) {
    if (!item.is_string()) return BadField(absl::StrCat(path, key), "is not a list of names");
    out.push_back(item.get<std::string>());
  }
  return out;
}

bool IsRouter(const std::string& module) { return absl::EndsWith(module, "block_sparse_moe.gate"); }

// The part of a decoder-layer module after "model.layers.<n>.".
std::string ModuleInLayer(const std::string& module) {
  const std::string layers = "model.layers.";
  if (!absl::StartsWith(module, layers)) return module;
  const size_t dot = module.find('.', layers.size());
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

absl::StatusOr<int32_t> WeightBits(const json& q, const std::string& path, const char* key) {
  ASSIGN_OR_RETURN(int64_t bits, IntField(q, path, key, std::nullopt));
  if (bits != 4 && bits != 8)
    return BadField(absl::StrCat(path, key), absl::StrCat(bits, " bits is not supported (4 or 8)"));
  return int32_t(bits);
}

absl::StatusOr<int64_t> GroupSize(const json& q, const std::string& path, const char* key) {
  ASSIGN_OR_RETURN(int64_t group, IntField(q, path, key, std::nullopt));
  if (group == -1 || group == 0) return 0;  // one group per output channel
  if (group < 0) return BadField(absl::StrCat(path, key), absl::StrCat(group, " is not -1 or positive"));
  return group;
}

// One compressed-tensors config group's quantization args.
struct CtArgs {
  int64_t num_bits = 8;
  std::string type = "int";
  std::string strategy;
  int64_t group_size = 0;
  bool symmetric = true;
  bool dynamic = false;
  std::string actorder;
};

absl::StatusOr<CtArgs> ParseCtArgs(const json& args, const std::string& path) {
  if (!args.is_object()) return BadField(path, "is not an object");
  CtArgs a;
  ASSIGN_OR_RETURN(a.num_bits, IntField(args, path + ".", "num_bits", 8));
  ASSIGN_OR_RETURN(a.type, StringField(args, path + ".", "type", std::string("int")));
  ASSIGN_OR_RETURN(a.strategy, StringField(args, path + ".", "strategy", std::string("tensor")));
  ASSIGN_OR_RETURN(a.group_size, IntField(args, path + ".", "group_size", 0));
  ASSIGN_OR_RETURN(a.symmetric, BoolField(args, path + ".", "symmetric", true));
  const auto dynamic = args.find("dynamic");
  if (dynamic != args.end() && dynamic->is_string()) {
    return BadField(path + ".dynamic", absl::StrCat("\"", dynamic->get<std::string>(), "\" is not supported"));
  }
  ASSIGN_OR_RETURN(a.dynamic, BoolField(args, path + ".", "dynamic", false));
  const auto actorder = args.find("actorder");
  if (actorder != args.end() && actorder->is_string()) a.actorder = actorder->get<std::string>();
  if (actorder != args.end() && actorder->is_boolean() && actorder->get<bool>()) a.actorder = "group";
  if (a.type != "int" && a.type != "float") {
    return BadField(path + ".type", absl::StrCat("\"", a.type, "\" is not \"int\" or \"float\""));
  }
  return a;
}

absl::StatusOr<StoredLinear> ParseCtGroup(const json& group, const std::string& path, const std::string& top_format) {
  StoredLinear s;
  s.format = CheckpointFormat::kCompressedTensors;
  ASSIGN_OR_RETURN(std::string format, StringField(group, path + ".", "format", top_format));
  const auto weights = group.find("weights");
  if (weights == group.end() || weights->is_null())
    return BadField(path + ".weights", "is missing (tern quantizes weights)");
  ASSIGN_OR_RETURN(CtArgs w, ParseCtArgs(*weights, path + ".weights"));
  if (const auto out = group.find("output_activations"); out != group.end() && !out->is_null()) {
    return BadField(path + ".output_activations", "output quantization is not supported");
  }
  std::optional<CtArgs> act;
  if (const auto in = group.find("input_activations"); in != group.end() && !in->is_null()) {
    ASSIGN_OR_RETURN(act, ParseCtArgs(*in, path + ".input_activations"));
  }
  if (w.dynamic) return BadField(path + ".weights.dynamic", "weights must have static scales");
  if (w.strategy == "block" || w.strategy == "tensor_group" || w.strategy == "attn_head" || w.strategy == "token") {
    return BadField(path + ".weights.strategy",
                    absl::StrCat("\"", w.strategy, "\" is not supported (tensor, channel, group)"));
  }
  if (w.strategy != "tensor" && w.strategy != "channel" && w.strategy != "group") {
    return BadField(path + ".weights.strategy", absl::StrCat("\"", w.strategy, "\" is not tensor, channel or group"));
  }
  if (w.strategy == "group" && w.group_size <= 0)
    return BadField(path + ".weights.group_size", "must be positive for strategy \"group\"");
  s.weight_scale_per_tensor = w.strategy == "tensor";
  s.act_order = w.actorder == "group";
  if (!act.has_value()) {
    // Weight-only.
    if (w.type != "int") {
      return BadField(
          path + ".weights.type",
          "float weights without quantized activations (W8A16 FP8) are not supported; tern runs FP8 weights as W8A8");
    }
    if (w.num_bits != 4 && w.num_bits != 8) {
      return BadField(path + ".weights.num_bits", absl::StrCat(w.num_bits, " bits is not supported (4 or 8)"));
    }
    s.scheme.scheme = w.num_bits == 4 ? WeightScheme::kW4A16 : WeightScheme::kW8A16;
    s.scheme.group_size = w.strategy == "group" ? w.group_size : 0;
    s.scheme.symmetric = w.symmetric;
    if (format == "pack-quantized") {
      s.layout = Layout::kCtPacked;
    } else if (format == "int-quantized" || format == "naive-quantized") {
      s.layout = Layout::kCtUnpacked;
    } else {
      return BadField(
          path + ".format",
          absl::StrCat(
              "\"", format,
              "\" is not supported for int weight-only layers (pack-quantized, int-quantized, naive-quantized)"));
    }
    return s;
  }
  // W8A8.
  if (w.num_bits != 8) return BadField(path + ".weights.num_bits", "W8A8 needs 8-bit weights");
  if (act->num_bits != 8) return BadField(path + ".input_activations.num_bits", "only 8-bit activations are supported");
  if (act->type != w.type) return BadField(path + ".input_activations.type", "must match the weights' type");
  if (!w.symmetric) return BadField(path + ".weights.symmetric", "W8A8 weights must be symmetric");
  if (!act->symmetric)
    return BadField(path + ".input_activations.symmetric", "asymmetric activations are not supported");
  if (w.strategy == "group")
    return BadField(path + ".weights.strategy", "W8A8 weights must be per channel or per tensor");
  if (act->dynamic) {
    if (act->strategy != "token") {
      return BadField(path + ".input_activations.strategy",
                      absl::StrCat("dynamic activations must be per token, not \"", act->strategy, "\""));
    }
  } else {
    if (act->strategy != "tensor") {
      return BadField(path + ".input_activations.strategy",
                      absl::StrCat("static activations must be per tensor, not \"", act->strategy, "\""));
    }
    s.static_input_scale = true;
  }
  s.scheme.scheme = w.type == "int" ? WeightScheme::kW8A8Int8 : WeightScheme::kW8A8Fp8;
  const bool ok_format = w.type == "int" ? (format == "int-quantized" || format == "naive-quantized")
                                         : (format == "float-quantized" || format == "naive-quantized");
  if (!ok_format) {
    return BadField(path + ".format",
                    absl::StrCat("\"", format, "\" does not hold ", WeightSchemeName(s.scheme.scheme), " layers (",
                                 w.type == "int" ? "int-quantized" : "float-quantized", ")"));
  }
  s.layout = Layout::kCtUnpacked;
  return s;
}

// --- tensors ---

std::string DTypeList(std::initializer_list<DType> dtypes) {
  std::vector<std::string> names;
  for (DType d : dtypes) names.push_back(DTypeSafetensorsName(d));
  return absl::StrJoin(names, "/");
}

// The tensor `name` with one of `dtypes` and exactly `shape` (`meaning` says
// what the dims are, for the message).
absl::StatusOr<TensorView> Expect(const WeightStore& store, const std::string& name,
                                  std::initializer_list<DType> dtypes, const std::vector<int64_t>& shape,
                                  const std::string& meaning) {
  if (!store.Contains(name)) return absl::NotFoundError(absl::StrCat("missing tensor \"", name, "\""));
  ASSIGN_OR_RETURN(TensorView view, store.Get(name));
  if (std::find(dtypes.begin(), dtypes.end(), view.dtype) == dtypes.end()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has dtype ", DTypeSafetensorsName(view.dtype),
                                                   "; expected ", DTypeList(dtypes)));
  }
  if (view.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ", view.ShapeString(),
                                                   "; expected ", ShapeText(shape), " (", meaning, ")"));
  }
  return view;
}

// As Expect, with any of several shapes (scales given per tensor or channel).
absl::StatusOr<TensorView> ExpectOneOf(const WeightStore& store, const std::string& name,
                                       std::initializer_list<DType> dtypes,
                                       const std::vector<std::vector<int64_t>>& shapes, const std::string& meaning) {
  if (!store.Contains(name)) return absl::NotFoundError(absl::StrCat("missing tensor \"", name, "\""));
  ASSIGN_OR_RETURN(TensorView view, store.Get(name));
  if (std::find(dtypes.begin(), dtypes.end(), view.dtype) == dtypes.end()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has dtype ", DTypeSafetensorsName(view.dtype),
                                                   "; expected ", DTypeList(dtypes)));
  }
  for (const auto& shape : shapes) {
    if (view.shape == shape) return view;
  }
  std::vector<std::string> texts;
  for (const auto& shape : shapes) texts.push_back(ShapeText(shape));
  return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ", view.ShapeString(), "; expected ",
                                                 absl::StrJoin(texts, " or "), " (", meaning, ")"));
}

constexpr std::initializer_list<DType> kFloatScales = {DType::kF32, DType::kF16, DType::kBF16};

std::vector<int32_t> ReadInt32(const TensorView& view) {
  std::vector<int32_t> out(size_t(view.numel()));
  if (!out.empty()) std::memcpy(out.data(), view.data, out.size() * sizeof(int32_t));
  return out;
}

std::vector<int64_t> ReadInts(const TensorView& view) {
  std::vector<int64_t> out(size_t(view.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (view.dtype == DType::kI64) {
      std::memcpy(&out[i], view.data + 8 * i, 8);
    } else {
      int32_t v;
      std::memcpy(&v, view.data + 4 * i, 4);
      out[i] = v;
    }
  }
  return out;
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Dims {
  int64_t out, in, bits, pf, group, groups;
};

absl::StatusOr<Dims> WeightOnlyDims(const std::string& module, const StoredLinear& stored, int64_t out, int64_t in) {
  Dims d;
  d.out = out;
  d.in = in;
  d.bits = WeightSchemeBits(stored.scheme.scheme);
  d.pf = 32 / d.bits;
  d.group = stored.scheme.group_size > 0 ? stored.scheme.group_size : in;
  if (in % d.group != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(module, ": in_features ", in, " is not a multiple of the group size ", d.group));
  }
  d.groups = in / d.group;
  return d;
}

// Turns the stored input-channel groups (g_idx [in]) into tern's form:
// input_order empty when g_idx is i / group_size, else the stable sort of
// the channels by group, which must give each group exactly group_size.
absl::StatusOr<std::vector<int32_t>> InputOrderFromGroupIndex(const std::string& name,
                                                              const std::vector<int32_t>& g_idx, const Dims& d) {
  bool identity = true;
  std::vector<int64_t> counts(size_t(d.groups), 0);
  for (int64_t i = 0; i < d.in; ++i) {
    const int32_t g = g_idx[i];
    if (g < 0 || g >= d.groups) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\"[", i, "] = ", g, " is outside [0, ", d.groups, ")"));
    }
    ++counts[g];
    identity = identity && g == i / d.group;
  }
  if (identity) return std::vector<int32_t>{};
  for (int64_t g = 0; g < d.groups; ++g) {
    if (counts[g] != d.group) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\": group ", g, " has ", counts[g],
                                                     " input channels; expected the group size ", d.group));
    }
  }
  std::vector<int32_t> order(size_t(d.in));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return g_idx[a] < g_idx[b]; });
  return order;
}

// Stored column order from input order: codes [out, in] -> columns permuted.
std::vector<uint8_t> PermuteColumns(const std::vector<uint8_t>& codes, const std::vector<int32_t>& order, int64_t rows,
                                    int64_t cols) {
  if (order.empty()) return codes;
  std::vector<uint8_t> out(codes.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) out[r * cols + j] = codes[r * cols + order[j]];
  }
  return out;
}

std::string Name(const std::string& module, const char* suffix) { return absl::StrCat(module, ".", suffix); }

absl::Status CheckOrRead(const WeightStore& store, const std::string& module, const StoredLinear& stored, int64_t out,
                         int64_t in, const TensorView* bias, QuantizedLinear* result);

bool AllMidpoint(const std::vector<uint8_t>& zeros, int bits) {
  return std::all_of(zeros.begin(), zeros.end(), [&](uint8_t z) { return z == (1 << (bits - 1)); });
}

absl::Status ReadGptqOrAwq(const WeightStore& store, const std::string& module, const StoredLinear& stored, int64_t out,
                           int64_t in, QuantizedLinear* result) {
  const bool awq = stored.layout == Layout::kAwq;
  ASSIGN_OR_RETURN(Dims d, WeightOnlyDims(module, stored, out, in));
  if (awq && d.bits != 4) return absl::InvalidArgumentError(absl::StrCat(module, ": AWQ weights are 4-bit"));
  if (out % d.pf != 0 || (!awq && in % d.pf != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(module, ": ", CheckpointFormatName(stored.format), " packs ", d.pf,
                                                   " values per int32 and needs ",
                                                   awq ? "out_features" : "in_features and out_features",
                                                   " divisible by ", d.pf, " (the layer is [", out, ", ", in, "])"));
  }
  const std::string qweight_name = Name(module, "qweight"), qzeros_name = Name(module, "qzeros"),
                    scales_name = Name(module, "scales"), g_idx_name = Name(module, "g_idx");
  std::vector<int64_t> qweight_shape =
      awq ? std::vector<int64_t>{in, out / d.pf} : std::vector<int64_t>{in / d.pf, out};
  ASSIGN_OR_RETURN(TensorView qweight, Expect(store, qweight_name, {DType::kI32}, qweight_shape,
                                              awq ? "in_features, out_features / 8"
                                                  : absl::StrCat("in_features / ", d.pf, ", out_features")));
  ASSIGN_OR_RETURN(TensorView qzeros, Expect(store, qzeros_name, {DType::kI32}, {d.groups, out / d.pf},
                                             absl::StrCat("groups, out_features / ", d.pf)));
  ASSIGN_OR_RETURN(TensorView scales,
                   Expect(store, scales_name, kFloatScales, {d.groups, out}, "groups, out_features"));
  std::optional<TensorView> g_idx;
  if (!awq && (stored.act_order || store.Contains(g_idx_name))) {
    ASSIGN_OR_RETURN(g_idx, Expect(store, g_idx_name, {DType::kI32}, {in}, "in_features"));
  }
  if (result == nullptr) return absl::OkStatus();

  std::vector<uint8_t> codes =
      awq ? Transpose<uint8_t>(UnpackInt32Dim1(ReadInt32(qweight), in, out, 4, /*awq_order=*/true), in, out)
          : Transpose<uint8_t>(UnpackInt32Dim0(ReadInt32(qweight), in, out, int(d.bits)), in, out);
  std::vector<uint8_t> raw_zeros = UnpackInt32Dim1(ReadInt32(qzeros), d.groups, out, int(d.bits), awq);
  std::vector<uint8_t> zeros(raw_zeros.size());
  for (size_t i = 0; i < raw_zeros.size(); ++i) {
    const int32_t z = int32_t(raw_zeros[i]) + (stored.gptq_zero_minus_one ? 1 : 0);
    if (z > 255) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", qzeros_name, "\" stores zero - 1 = -1 at group ", i / out, ", column ", i % out,
                       " (a zero of 0, which GPTQ's original format cannot hold at 8 bits)"));
    }
    zeros[i] = uint8_t(z);
  }
  result->scheme = stored.scheme;
  result->out_features = out;
  result->in_features = in;
  result->group_size = d.group;
  result->zeros = Transpose<uint8_t>(zeros, d.groups, out);
  result->scales = Transpose<float>(TensorToFloat(scales), d.groups, out);
  if (g_idx.has_value()) {
    ASSIGN_OR_RETURN(result->input_order, InputOrderFromGroupIndex(g_idx_name, ReadInt32(*g_idx), d));
  }
  result->weight = PackTernCodes(PermuteColumns(codes, result->input_order, out, in), out, in, int(d.bits));
  result->scheme.symmetric = AllMidpoint(result->zeros, int(d.bits));
  return absl::OkStatus();
}

// Per-tensor or per-channel W8A8 scale, broadcast to [out].
std::vector<float> ScalesPerRow(const TensorView& view, int64_t out) {
  std::vector<float> values = TensorToFloat(view);
  if (int64_t(values.size()) == out) return values;
  return std::vector<float>(size_t(out), values.empty() ? 0.0f : values[0]);
}

absl::Status ReadInputScale(const WeightStore& store, const std::string& module, const StoredLinear& stored,
                            QuantizedLinear* result) {
  if (!stored.static_input_scale) return absl::OkStatus();
  const std::string name = Name(module, "input_scale");
  ASSIGN_OR_RETURN(TensorView view, ExpectOneOf(store, name, kFloatScales, {{}, {1}}, "one static activation scale"));
  if (result == nullptr) return absl::OkStatus();
  const float scale = TensorToFloat(view)[0];
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" = ", scale, "; expected a positive finite scale"));
  }
  result->input_scale = scale;
  return absl::OkStatus();
}

absl::Status ReadFp8(const WeightStore& store, const std::string& module, const StoredLinear& stored, int64_t out,
                     int64_t in, QuantizedLinear* result) {
  if (store.Contains(Name(module, "weight_scale_inv"))) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", Name(module, "weight_scale_inv"), "\": block-wise FP8 scales are not supported"));
  }
  const std::string weight_name = Name(module, "weight");
  if (store.Contains(weight_name)) {
    ASSIGN_OR_RETURN(TensorView w, store.Get(weight_name));
    if (w.dtype == DType::kF8E5M2) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", weight_name, "\" is F8_E5M2; tern runs FP8 weights as F8_E4M3"));
    }
  }
  ASSIGN_OR_RETURN(TensorView weight,
                   Expect(store, weight_name, {DType::kF8E4M3}, {out, in}, "out_features, in_features"));
  ASSIGN_OR_RETURN(TensorView scale,
                   ExpectOneOf(store, Name(module, "weight_scale"), kFloatScales, {{}, {1}, {out}, {out, 1}},
                               "one scale per tensor or per output channel"));
  RETURN_IF_ERROR(ReadInputScale(store, module, stored, result));
  if (result == nullptr) return absl::OkStatus();
  result->scheme = stored.scheme;
  result->out_features = out;
  result->in_features = in;
  result->group_size = in;
  result->weight.assign(weight.data, weight.data + weight.nbytes);
  result->scales = ScalesPerRow(scale, out);
  return absl::OkStatus();
}

absl::Status ReadCompressed(const WeightStore& store, const std::string& module, const StoredLinear& stored,
                            int64_t out, int64_t in, QuantizedLinear* result) {
  const WeightScheme scheme = stored.scheme.scheme;
  const bool weight_only = IsWeightOnly(scheme);
  ASSIGN_OR_RETURN(Dims d, WeightOnlyDims(module, stored, out, in));
  const std::string scale_name = Name(module, "weight_scale");
  const std::string zero_name = Name(module, "weight_zero_point");
  std::vector<std::vector<int64_t>> scale_shapes;
  if (stored.weight_scale_per_tensor) {
    scale_shapes = {{1}, {}};
  } else if (stored.scheme.group_size > 0) {
    scale_shapes = {{out, d.groups}};
  } else {
    scale_shapes = {{out, 1}, {out}};
  }
  ASSIGN_OR_RETURN(TensorView scale, ExpectOneOf(store, scale_name, kFloatScales, scale_shapes,
                                                 stored.weight_scale_per_tensor ? "one scale per tensor"
                                                 : stored.scheme.group_size > 0 ? "out_features, groups"
                                                                                : "one scale per output channel"));
  RETURN_IF_ERROR(ReadInputScale(store, module, stored, result));
  std::vector<uint8_t> codes;  // [out, in] unsigned codes (weight-only)
  if (stored.layout == Layout::kCtPacked) {
    ASSIGN_OR_RETURN(TensorView packed,
                     Expect(store, Name(module, "weight_packed"), {DType::kI32}, {out, CeilDiv(in, d.pf)},
                            absl::StrCat("out_features, ceil(in_features / ", d.pf, ")")));
    ASSIGN_OR_RETURN(TensorView shape, Expect(store, Name(module, "weight_shape"), {DType::kI64, DType::kI32}, {2},
                                              "out_features, in_features"));
    if (result != nullptr) {
      const std::vector<int64_t> dims = ReadInts(shape);
      if (dims != std::vector<int64_t>{out, in}) {
        return absl::InvalidArgumentError(absl::StrCat("tensor \"", Name(module, "weight_shape"), "\" holds ",
                                                       ShapeText(dims), "; expected ", ShapeText({out, in})));
      }
      codes = UnpackInt32Dim1(ReadInt32(packed), out, in, int(d.bits));
    }
  } else {
    const DType want = scheme == WeightScheme::kW8A8Fp8 ? DType::kF8E4M3 : DType::kI8;
    ASSIGN_OR_RETURN(TensorView weight,
                     Expect(store, Name(module, "weight"), {want}, {out, in}, "out_features, in_features"));
    if (result != nullptr) {
      if (!weight_only) {
        result->weight.assign(weight.data, weight.data + weight.nbytes);
      } else {
        const int32_t lo = -(1 << (d.bits - 1)), hi = (1 << (d.bits - 1)) - 1;
        codes.resize(size_t(out * in));
        for (int64_t i = 0; i < out * in; ++i) {
          const int32_t v = int8_t(weight.data[i]);
          if (v < lo || v > hi) {
            return absl::InvalidArgumentError(absl::StrCat("tensor \"", Name(module, "weight"), "\"[", i / in, ", ",
                                                           i % in, "] = ", v, " is outside the ", d.bits,
                                                           "-bit range [", lo, ", ", hi, "]"));
          }
          codes[i] = uint8_t(v - lo);
        }
      }
    }
  }
  std::optional<TensorView> zero_point;
  if (weight_only && !stored.scheme.symmetric) {
    if (stored.layout == Layout::kCtPacked) {
      ASSIGN_OR_RETURN(zero_point, Expect(store, zero_name, {DType::kI32}, {CeilDiv(out, d.pf), d.groups},
                                          absl::StrCat("ceil(out_features / ", d.pf, "), groups")));
    } else {
      ASSIGN_OR_RETURN(zero_point, ExpectOneOf(store, zero_name, {DType::kI8}, scale_shapes, "as weight_scale"));
    }
  }
  std::optional<TensorView> g_idx;
  const std::string g_idx_name = Name(module, "weight_g_idx");
  if (weight_only && stored.act_order && store.Contains(g_idx_name)) {
    ASSIGN_OR_RETURN(g_idx, Expect(store, g_idx_name, {DType::kI32}, {in}, "in_features"));
  }
  if (result == nullptr) return absl::OkStatus();

  result->scheme = stored.scheme;
  result->out_features = out;
  result->in_features = in;
  if (!weight_only) {
    result->group_size = in;
    result->scales = ScalesPerRow(scale, out);
    return absl::OkStatus();
  }
  result->group_size = d.group;
  // Scales and zeros [out, groups]; per tensor or per channel broadcast.
  std::vector<float> scale_values = TensorToFloat(scale);
  result->scales.resize(size_t(out * d.groups));
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t g = 0; g < d.groups; ++g) {
      result->scales[r * d.groups + g] = stored.weight_scale_per_tensor ? scale_values[0]
                                         : stored.scheme.group_size > 0 ? scale_values[r * d.groups + g]
                                                                        : scale_values[r];
    }
  }
  const int32_t midpoint = 1 << (d.bits - 1);
  result->zeros.assign(size_t(out * d.groups), uint8_t(midpoint));
  if (zero_point.has_value()) {
    if (stored.layout == Layout::kCtPacked) {
      result->zeros = UnpackInt32Dim0(ReadInt32(*zero_point), out, d.groups, int(d.bits));
    } else {
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t g = 0; g < d.groups; ++g) {
          const int64_t at = stored.weight_scale_per_tensor ? 0 : stored.scheme.group_size > 0 ? r * d.groups + g : r;
          const int32_t zp = int8_t(zero_point->data[at]);
          if (zp + midpoint < 0 || zp + midpoint >= 2 * midpoint) {
            return absl::InvalidArgumentError(
                absl::StrCat("tensor \"", zero_name, "\" holds ", zp, ", outside the ", d.bits, "-bit range"));
          }
          result->zeros[r * d.groups + g] = uint8_t(zp + midpoint);
        }
      }
    }
  }
  if (g_idx.has_value()) {
    ASSIGN_OR_RETURN(result->input_order, InputOrderFromGroupIndex(g_idx_name, ReadInt32(*g_idx), d));
  }
  result->weight = PackTernCodes(PermuteColumns(codes, result->input_order, out, in), out, in, int(d.bits));
  result->scheme.symmetric = AllMidpoint(result->zeros, int(d.bits));
  return absl::OkStatus();
}

absl::Status CheckOrRead(const WeightStore& store, const std::string& module, const StoredLinear& stored, int64_t out,
                         int64_t in, const TensorView* bias, QuantizedLinear* result) {
  switch (stored.layout) {
    case Layout::kFloat: {
      ASSIGN_OR_RETURN(TensorView weight,
                       Expect(store, Name(module, "weight"), kFloatScales, {out, in}, "out_features, in_features"));
      (void)weight;
      if (result != nullptr) return absl::InvalidArgumentError(absl::StrCat(module, " is not quantized"));
      return absl::OkStatus();
    }
    case Layout::kGptq:
    case Layout::kAwq:
      RETURN_IF_ERROR(ReadGptqOrAwq(store, module, stored, out, in, result));
      break;
    case Layout::kFp8:
      RETURN_IF_ERROR(ReadFp8(store, module, stored, out, in, result));
      break;
    case Layout::kCtPacked:
    case Layout::kCtUnpacked:
      RETURN_IF_ERROR(ReadCompressed(store, module, stored, out, in, result));
      break;
  }
  if (result == nullptr) return absl::OkStatus();
  if (bias != nullptr) result->bias = TensorToFloat(*bias);
  return ValidateQuantizedLinear(*result, module);
}

}  // namespace

struct CheckpointQuantization::CompiledRegex {
  std::regex pattern;
};

const char* CheckpointFormatName(CheckpointFormat format) {
  switch (format) {
    case CheckpointFormat::kDense:
      return "dense";
    case CheckpointFormat::kGptq:
      return "gptq";
    case CheckpointFormat::kAwq:
      return "awq";
    case CheckpointFormat::kFp8:
      return "fp8";
    case CheckpointFormat::kCompressedTensors:
      return "compressed-tensors";
  }
  return "?";
}

std::vector<float> TensorToFloat(const TensorView& tensor) {
  std::vector<float> out(size_t(tensor.numel()));
  ConvertToFloat(tensor.dtype, tensor.data, out.size(), out.data());
  return out;
}

CheckpointQuantization::CheckpointQuantization() = default;

absl::StatusOr<CheckpointQuantization> CheckpointQuantization::Load(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, " cannot be read"));
  std::ostringstream text;
  text << in.rdbuf();
  return Parse(text.str());
}

absl::StatusOr<CheckpointQuantization> CheckpointQuantization::Parse(const std::string& config_json_text) {
  const json doc = json::parse(config_json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  CheckpointQuantization c;
  const auto it = doc.find("quantization_config");
  if (it == doc.end() || it->is_null()) return c;
  const json& q = *it;
  if (!q.is_object()) return absl::InvalidArgumentError("config.json: quantization_config is not an object");
  ASSIGN_OR_RETURN(std::string method, StringField(q, "", "quant_method", std::nullopt));
  method = absl::AsciiStrToLower(method);
  StoredLinear& s = c.quantized_;
  if (method == "gptq") {
    c.format_ = s.format = CheckpointFormat::kGptq;
    s.layout = Layout::kGptq;
    ASSIGN_OR_RETURN(int32_t bits, WeightBits(q, "", "bits"));
    s.scheme.scheme = bits == 4 ? WeightScheme::kW4A16 : WeightScheme::kW8A16;
    ASSIGN_OR_RETURN(s.scheme.group_size, GroupSize(q, "", "group_size"));
    ASSIGN_OR_RETURN(s.scheme.symmetric, BoolField(q, "", "sym", true));
    ASSIGN_OR_RETURN(s.act_order, BoolField(q, "", "desc_act", false));
    ASSIGN_OR_RETURN(std::string checkpoint_format, StringField(q, "", "checkpoint_format", std::string("gptq")));
    if (checkpoint_format == "gptq") {
      s.gptq_zero_minus_one = true;
    } else if (checkpoint_format != "gptq_v2") {
      return BadField("checkpoint_format",
                      absl::StrCat("\"", checkpoint_format, "\" is not supported (gptq, gptq_v2)"));
    }
    ASSIGN_OR_RETURN(bool marlin, BoolField(q, "", "is_marlin_format", false));
    if (marlin) return BadField("is_marlin_format", "Marlin-serialized GPTQ checkpoints are not supported");
    if (const auto dyn = q.find("dynamic"); dyn != q.end() && !dyn->is_null() && !dyn->empty()) {
      return BadField("dynamic", "per-module overrides are not supported");
    }
    ASSIGN_OR_RETURN(c.quantize_lm_head_, BoolField(q, "", "lm_head", false));
    if (const auto blocks = q.find("modules_in_block_to_quantize"); blocks != q.end() && !blocks->is_null()) {
      if (!blocks->is_array()) return BadField("modules_in_block_to_quantize", "is not a list of lists of names");
      for (const auto& list : *blocks) {
        if (!list.is_array()) return BadField("modules_in_block_to_quantize", "is not a list of lists of names");
        for (const auto& name : list) {
          if (!name.is_string()) return BadField("modules_in_block_to_quantize", "is not a list of lists of names");
          c.block_modules_.push_back(name.get<std::string>());
        }
      }
    }
  } else if (method == "awq") {
    c.format_ = s.format = CheckpointFormat::kAwq;
    s.layout = Layout::kAwq;
    const char* bits_key = q.contains("w_bit") ? "w_bit" : "bits";
    ASSIGN_OR_RETURN(int32_t bits, WeightBits(q, "", bits_key));
    if (bits != 4) return BadField(bits_key, "AWQ checkpoints are 4-bit");
    s.scheme.scheme = WeightScheme::kW4A16;
    ASSIGN_OR_RETURN(s.scheme.group_size, GroupSize(q, "", q.contains("q_group_size") ? "q_group_size" : "group_size"));
    ASSIGN_OR_RETURN(bool zero_point, BoolField(q, "", "zero_point", true));
    if (!zero_point) return BadField("zero_point", "AWQ without zero points is not supported");
    s.scheme.symmetric = false;
    ASSIGN_OR_RETURN(std::string version, StringField(q, "", "version", std::string("gemm")));
    if (absl::AsciiStrToLower(version) != "gemm") {
      return BadField("version", absl::StrCat("\"", version, "\" is not supported (GEMM packing only)"));
    }
    ASSIGN_OR_RETURN(c.skip_substrings_, StringList(q, "", "modules_to_not_convert"));
  } else if (method == "fp8") {
    c.format_ = s.format = CheckpointFormat::kFp8;
    s.layout = Layout::kFp8;
    s.scheme.scheme = WeightScheme::kW8A8Fp8;
    ASSIGN_OR_RETURN(std::string activation, StringField(q, "", "activation_scheme", std::string("dynamic")));
    if (activation == "static") {
      s.static_input_scale = true;
    } else if (activation != "dynamic") {
      return BadField("activation_scheme", absl::StrCat("\"", activation, "\" is not static or dynamic"));
    }
    if (const auto block = q.find("weight_block_size"); block != q.end() && !block->is_null()) {
      return BadField("weight_block_size", "block-wise FP8 is not supported");
    }
    ASSIGN_OR_RETURN(std::string fmt, StringField(q, "", "fmt", std::string("e4m3")));
    if (fmt != "e4m3") return BadField("fmt", absl::StrCat("\"", fmt, "\" is not supported (e4m3)"));
    ASSIGN_OR_RETURN(c.skip_exact_,
                     StringList(q, "", q.contains("ignored_layers") ? "ignored_layers" : "modules_to_not_convert"));
  } else if (method == "compressed-tensors") {
    c.format_ = CheckpointFormat::kCompressedTensors;
    ASSIGN_OR_RETURN(std::string format, StringField(q, "", "format", std::string("dense")));
    ASSIGN_OR_RETURN(std::string status, StringField(q, "", "quantization_status", std::string("compressed")));
    if (status != "compressed") {
      return BadField("quantization_status", absl::StrCat("\"", status, "\": tern loads compressed checkpoints only"));
    }
    if (const auto sparsity = q.find("sparsity_config");
        sparsity != q.end() && !sparsity->is_null() && !sparsity->empty()) {
      return BadField("sparsity_config", "sparse checkpoints are not supported");
    }
    if (const auto kv = q.find("kv_cache_scheme"); kv != q.end() && !kv->is_null()) {
      return BadField("kv_cache_scheme", "KV-cache quantization is not supported yet");
    }
    const auto groups = q.find("config_groups");
    if (groups == q.end() || !groups->is_object() || groups->empty())
      return BadField("config_groups", "is missing or empty");
    const auto parse_targets = [&](const json& list, const std::string& path) -> absl::StatusOr<std::vector<Target>> {
      std::vector<Target> out;
      if (list.is_null()) return out;
      if (!list.is_array()) return BadField(path, "is not a list");
      for (const auto& item : list) {
        if (!item.is_string()) return BadField(path, "is not a list of names");
        Target t;
        t.text = item.get<std::string>();
        if (absl::StartsWith(t.text, "re:")) {
          try {
            t.regex = std::make_shared<const CompiledRegex>(CompiledRegex{std::regex(t.text.substr(3))});
          } catch (const std::regex_error&) {
            return BadField(path, absl::StrCat("\"", t.text, "\" is not a valid regular expression"));
          }
        }
        out.push_back(std::move(t));
      }
      return out;
    };
    for (const auto& [name, group] : groups->items()) {
      const std::string path = absl::StrCat("config_groups.", name);
      if (!group.is_object()) return BadField(path, "is not an object");
      Group g;
      ASSIGN_OR_RETURN(g.stored, ParseCtGroup(group, path, format));
      const auto targets = group.find("targets");
      if (targets == group.end()) return BadField(path + ".targets", "is missing");
      ASSIGN_OR_RETURN(g.targets, parse_targets(*targets, path + ".targets"));
      c.groups_.push_back(std::move(g));
    }
    if (const auto ignore = q.find("ignore"); ignore != q.end()) {
      ASSIGN_OR_RETURN(c.ignore_, parse_targets(*ignore, "ignore"));
    }
  } else {
    return BadField("quant_method",
                    absl::StrCat("\"", method, "\" is not supported (gptq, awq, fp8, compressed-tensors)"));
  }
  return c;
}

bool CheckpointQuantization::Matches(const Target& target, const std::string& module) {
  if (target.text == "Linear") return true;
  if (target.regex != nullptr) {
    return std::regex_search(module, target.regex->pattern, std::regex_constants::match_continuous);
  }
  return module == target.text || absl::EndsWith(module, "." + target.text);
}

StoredLinear CheckpointQuantization::ForModule(const std::string& module) const {
  StoredLinear dense;
  dense.format = format_;
  switch (format_) {
    case CheckpointFormat::kDense:
      return dense;
    case CheckpointFormat::kGptq: {
      if (IsRouter(module)) return dense;
      if (module == "lm_head") return quantize_lm_head_ ? quantized_ : dense;
      if (!block_modules_.empty() &&
          std::find(block_modules_.begin(), block_modules_.end(), ModuleInLayer(module)) == block_modules_.end()) {
        return dense;
      }
      return quantized_;
    }
    case CheckpointFormat::kAwq: {
      if (IsRouter(module) || module == "lm_head") return dense;
      for (const auto& skip : skip_substrings_) {
        if (absl::StrContains(module, skip)) return dense;
      }
      return quantized_;
    }
    case CheckpointFormat::kFp8: {
      if (IsRouter(module) || module == "lm_head") return dense;
      for (const auto& skip : skip_exact_) {
        if (module == skip || absl::StartsWith(module, skip + ".")) return dense;
      }
      return quantized_;
    }
    case CheckpointFormat::kCompressedTensors: {
      for (const auto& target : ignore_) {
        if (Matches(target, module)) return dense;
      }
      for (const auto& group : groups_) {
        for (const auto& target : group.targets) {
          if (Matches(target, module)) return group.stored;
        }
      }
      return dense;
    }
  }
  return dense;
}

std::string CheckpointQuantization::Describe() const {
  if (format_ == CheckpointFormat::kDense) return "dense";
  std::set<std::string> schemes;
  if (format_ == CheckpointFormat::kCompressedTensors) {
    for (const auto& group : groups_) schemes.insert(group.stored.scheme.ToString());
  } else {
    schemes.insert(quantized_.scheme.ToString());
  }
  return absl::StrCat(CheckpointFormatName(format_), " ", absl::StrJoin(schemes, "+"));
}

absl::Status CheckStoredLinear(const WeightStore& store, const std::string& module, const StoredLinear& stored,
                               int64_t out, int64_t in) {
  return CheckOrRead(store, module, stored, out, in, nullptr, nullptr);
}

absl::StatusOr<QuantizedLinear> ReadQuantizedLinear(const WeightStore& store, const std::string& module,
                                                    const StoredLinear& stored, int64_t out, int64_t in,
                                                    const TensorView* bias) {
  QuantizedLinear result;
  RETURN_IF_ERROR(CheckOrRead(store, module, stored, out, in, bias, &result));
  return result;
}

}  // namespace tern::runtime
