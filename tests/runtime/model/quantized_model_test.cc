// Quantized models end to end on the CPU backend: tern-mkmodel's tiny
// random models quantized by tern-quantize's writer (every scheme, GPTQ and
// compressed-tensors), loaded by LlamaModel, against the fp32 model whose
// weights are the dequantized checkpoint (weight-only layers must agree to
// fp32 rounding; W8A8 layers differ by their activation quantization) and
// against the original model; quantizing at load equals loading the written
// checkpoint; and the load errors a user can meet.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/llama_model.h"
#include "runtime/model/quantized_checkpoint.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/weight_layout.h"
#include "tools/quantize/checkpoint_writer.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  return (fs::temp_directory_path() / ("tern-qmodel-" + name + "-" + std::to_string(getpid()))).string();
}

// tern-mkmodel's tiny model of `arch` (fp16 weights, as published models are).
std::string TinyModel(const std::string& arch) {
  const std::string dir = TempDir("tiny-" + arch);
  if (!fs::exists(dir + "/config.json")) {
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch " + arch +
                            " --preset tiny --vocab-size 512 --seed 7 --dtype float16 --out " + dir + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  return dir;
}

WeightSchemeRequest Request(const std::string& text) {
  auto request = ParseWeightSchemeRequest(text);
  EXPECT_TRUE(request.ok()) << request.status();
  return request.ok() ? *request : WeightSchemeRequest{};
}

// tern-quantize's writer: `scheme` into `format` ("gptq", "ct").
std::string Quantize(const std::string& model, const std::string& scheme, const std::string& format) {
  const std::string out = TempDir(fs::path(model).filename().string() + "-" + scheme + "-" + format);
  if (fs::exists(out + "/config.json")) return out;
  tools::QuantizeOptions options;
  options.model_dir = model;
  options.out_dir = out;
  options.scheme = Request(scheme);
  options.format =
      format == "gptq" ? tools::CheckpointWriteFormat::kGptq : tools::CheckpointWriteFormat::kCompressedTensors;
  auto report = tools::QuantizeCheckpoint(options);
  EXPECT_TRUE(report.ok()) << report.status();
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The fp32 model whose linear weights are the dequantized layers of
// `quantized` (read by the loader), everything else converted to fp32.
std::string DequantizedCopy(const std::string& quantized) {
  const std::string out = quantized + "-dequantized";
  auto config = LoadHfConfig(quantized);
  auto store = WeightStore::Open(quantized);
  auto quantization = CheckpointQuantization::Load(quantized);
  EXPECT_TRUE(config.ok() && store.ok() && quantization.ok());
  std::vector<TensorSpec> specs;
  std::map<std::string, std::vector<float>> values;
  for (const auto& entry : LlamaFamilyLayout(*config, DType::kF32)) {
    const std::string& name = entry.spec.name;
    const bool linear = entry.role == TensorRole::kLinear || entry.role == TensorRole::kRouter;
    const std::string module = name.substr(0, name.size() - 7);
    const StoredLinear stored = linear ? quantization->ForModule(module) : StoredLinear{};
    if (stored.layout != StoredLinear::Layout::kFloat) {
      auto q = ReadQuantizedLinear(**store, module, stored, entry.spec.shape[0], entry.spec.shape[1], nullptr);
      EXPECT_TRUE(q.ok()) << q.status();
      values[name] = DequantizeLinear(*q);
    } else {
      values[name] = TensorToFloat(*(*store)->Get(name));
    }
    specs.push_back(entry.spec);
  }
  fs::create_directories(out);
  EXPECT_TRUE(WriteSafetensors(out + "/model.safetensors", specs, [&](const TensorSpec& spec, uint8_t* buffer) {
                const auto& v = values.at(spec.name);
                std::memcpy(buffer, v.data(), v.size() * sizeof(float));
              }).ok());
  nlohmann::json json = nlohmann::json::parse(ReadFile(quantized + "/config.json"));
  json.erase("quantization_config");
  std::ofstream(out + "/config.json") << json.dump(2);
  return out;
}

// Logits of every position of a 12-token prefill, [12, vocab].
absl::StatusOr<std::vector<float>> Logits(const std::string& dir, const std::string& scheme = "auto",
                                          std::string* description = nullptr) {
  CpuBackend backend;
  LlamaModelOptions options;
  options.weight_scheme = Request(scheme);
  auto model = LlamaModel::Load(dir, &backend, options);
  if (!model.ok()) return model.status();
  if (description != nullptr) *description = (*model)->weight_scheme();
  auto cache = backend.AllocateKvCache((*model)->CacheSpec(8, 4));
  if (!cache.ok()) return cache.status();
  ForwardBatch batch;
  const int32_t n = 12;
  for (int32_t p = 0; p < n; ++p) {
    batch.token_ids.push_back((p * 37 + 11) % 512);
    batch.positions.push_back(p);
    batch.slots.push_back(p);
    batch.logits_rows.push_back(p);
  }
  batch.query_start = {0, n};
  batch.context_lens = {n};
  batch.block_indptr = {0, 3};
  batch.block_ids = {0, 1, 2};
  std::vector<float> logits;
  if (auto status = (*model)->Forward(batch, **cache, &logits); !status.ok()) return status;
  return logits;
}

// Normwise relative difference: max |a - b| / max |b|.
double RelativeDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
    ref = std::max(ref, std::fabs(double(b[i])));
  }
  return diff / ref;
}

// Removes this process's model directories when the tests end.
class TempDirs : public ::testing::Environment {
 public:
  void TearDown() override {
    const std::string mine = "-" + std::to_string(getpid());
    for (const auto& entry : fs::directory_iterator(fs::temp_directory_path())) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("tern-qmodel-", 0) == 0 && name.find(mine) != std::string::npos) fs::remove_all(entry.path());
    }
  }
};
const auto* const kTempDirs = ::testing::AddGlobalTestEnvironment(new TempDirs);

struct Case {
  std::string arch, scheme, format;
  double vs_dequantized;  // bound on the normwise difference from the dequantized fp32 model
  double vs_original;     // and from the original model (quantization error)
};

class QuantizedModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(QuantizedModelTest, AgreesWithTheDequantizedFp32Model) {
  const Case& c = GetParam();
  const std::string original = TinyModel(c.arch);
  const std::string quantized = Quantize(original, c.scheme, c.format);
  std::string description;
  auto got = Logits(quantized, "auto", &description);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(description.substr(0, description.find(' ')), Request(c.scheme).ToString());
  auto dequantized = Logits(DequantizedCopy(quantized));
  ASSERT_TRUE(dequantized.ok()) << dequantized.status();
  auto dense = Logits(original);
  ASSERT_TRUE(dense.ok()) << dense.status();
  const double vs_dequantized = RelativeDiff(*got, *dequantized), vs_original = RelativeDiff(*got, *dense);
  EXPECT_LE(vs_dequantized, c.vs_dequantized);
  EXPECT_LE(vs_original, c.vs_original);
  EXPECT_GT(vs_original, 0.0);  // the weights really were quantized
  std::printf("%s %s (%s): vs dequantized %.2e, vs original %.2e\n", c.arch.c_str(), c.scheme.c_str(), c.format.c_str(),
              vs_dequantized, vs_original);
}

INSTANTIATE_TEST_SUITE_P(
    Schemes, QuantizedModelTest,
    // Bounds: about twice what these seeded models measure. vs_original is the
    // quantization error of a random model without outliers (4-bit weights
    // move its logits by ~0.2 normwise, 8-bit by ~0.015); W8A8 also differs
    // from the dequantized model by its activation quantization (INT8 ~0.02,
    // FP8 ~0.05, and Mixtral's top-2 routing flips with it).
    ::testing::Values(Case{"llama", "w4a16-g32", "gptq", 1e-6, 0.35}, Case{"llama", "w8a16", "gptq", 1e-6, 0.03},
                      Case{"llama", "w4a16-g32-asym", "ct", 1e-6, 0.35}, Case{"llama", "w8a16-g32", "ct", 1e-6, 0.03},
                      Case{"llama", "int8", "ct", 0.04, 0.06}, Case{"llama", "fp8", "ct", 0.1, 0.15},
                      Case{"qwen2", "w4a16-g32", "gptq", 1e-6, 0.35}, Case{"qwen2", "int8", "ct", 0.04, 0.06},
                      Case{"mixtral", "w4a16-g32-asym", "gptq", 1e-6, 0.35}, Case{"mixtral", "fp8", "ct", 0.25, 0.35}),
    [](const auto& info) {
      std::string name = info.param.arch + "_" + info.param.scheme + "_" + info.param.format;
      for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
      return name;
    });

TEST(QuantizedModelLoadTest, QuantizingAtLoadEqualsLoadingTheWrittenCheckpoint) {
  const std::string original = TinyModel("llama");
  for (const auto& [scheme, format] : std::vector<std::pair<std::string, std::string>>{
           {"w4a16-g32", "gptq"}, {"w8a16", "ct"}, {"fp8", "ct"}, {"int8", "ct"}}) {
    auto at_load = Logits(original, scheme);
    auto written = Logits(Quantize(original, scheme, format));
    ASSERT_TRUE(at_load.ok() && written.ok()) << scheme;
    EXPECT_EQ(*at_load, *written) << scheme;
  }
}

TEST(QuantizedModelLoadTest, RunsAMixedPrecisionPlanAtLoadOrWritten) {
  const std::string original = TinyModel("llama");
  const std::string plan = TempDir("plan.json");
  std::ofstream(plan) << R"({"default": "w8a16", "layers": {
      "model.layers.0.mlp.down_proj": "w4a16-g32",
      "model.layers.1.mlp.gate_proj": "fp8", "model.layers.1.mlp.up_proj": "fp8",
      "model.layers.1.self_attn.o_proj": "dense"}})";
  std::string at_load_description, written_description;
  auto at_load = Logits(original, "mixed:" + plan, &at_load_description);
  ASSERT_TRUE(at_load.ok()) << at_load.status();
  EXPECT_EQ(at_load_description, "mixed (dense x 2, w4a16-g32 x 1, w8a16 x 10, w8a8-fp8 x 2; quantized at load)");
  tools::QuantizeOptions options;
  options.model_dir = original;
  options.out_dir = TempDir("mixed");
  options.scheme = Request("mixed:" + plan);
  options.format = tools::CheckpointWriteFormat::kCompressedTensors;
  auto report = tools::QuantizeCheckpoint(options);
  ASSERT_TRUE(report.ok()) << report.status();
  auto written = Logits(options.out_dir, "auto", &written_description);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written_description, "mixed (dense x 2, w4a16-g32 x 1, w8a16 x 10, w8a8-fp8 x 2; compressed-tensors)");
  EXPECT_EQ(*at_load, *written);
  fs::remove(plan);
}

// A backend that runs dense layers only (the Backend defaults, as the CUDA
// backend is today), over the CPU backend's ops.
class DenseOnlyBackend final : public Backend {
 public:
  std::string name() const override { return "dense-only"; }
  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const TensorView& t) override {
    return cpu_.UploadWeight(t);
  }
  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadFp32Table(const std::vector<float>& v) override {
    return cpu_.UploadFp32Table(v);
  }
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareLinear(const TensorView& w, const TensorView* b) override {
    return cpu_.PrepareLinear(w, b);
  }
  absl::StatusOr<std::unique_ptr<LinearWeight>> PrepareFusedLinear(const std::vector<TensorView>& w,
                                                                   const std::vector<TensorView>& b) override {
    return cpu_.PrepareFusedLinear(w, b);
  }
  absl::StatusOr<std::unique_ptr<KvCache>> AllocateKvCache(const KvCacheSpec& s) override {
    return cpu_.AllocateKvCache(s);
  }
  size_t KvBlockBytes(const KvCacheSpec& s) const override { return cpu_.KvBlockBytes(s); }
  std::optional<size_t> FreeDeviceMemory() const override { return std::nullopt; }
  DType compute_dtype() const override { return DType::kF32; }
  absl::Status BeginStep(const ForwardBatch& b) override { return cpu_.BeginStep(b); }
  Tensor Scratch(int slot, int64_t rows, int64_t cols) override { return cpu_.Scratch(slot, rows, cols); }
  void Embed(const DeviceWeight& t, Tensor o) override { cpu_.Embed(t, o); }
  void RmsNorm(Tensor x, const DeviceWeight& w, float e, Tensor o) override { cpu_.RmsNorm(x, w, e, o); }
  void Linear(Tensor x, const LinearWeight& w, Tensor o) override { cpu_.Linear(x, w, o); }
  void Rope(Tensor q, Tensor k, int32_t d, const DeviceWeight& f) override { cpu_.Rope(q, k, d, f); }
  void WriteKv(Tensor k, Tensor v, KvCache& c, int32_t l) override { cpu_.WriteKv(k, v, c, l); }
  void Attention(Tensor q, const KvCache& c, int32_t l, const AttentionOptions& o, Tensor out) override {
    cpu_.Attention(q, c, l, o, out);
  }
  void SiluMul(Tensor g, Tensor o) override { cpu_.SiluMul(g, o); }
  void Add(Tensor x, Tensor y) override { cpu_.Add(x, y); }
  void GatherLogitRows(Tensor x, Tensor o) override { cpu_.GatherLogitRows(x, o); }
  void MoeFfn(Tensor x, Tensor r, const MoeWeights& e, Tensor o) override { cpu_.MoeFfn(x, r, e, o); }
  absl::Status FinishStep() override { return cpu_.FinishStep(); }
  void ReadToHost(Tensor t, float* o) override { cpu_.ReadToHost(t, o); }

 private:
  CpuBackend cpu_;
};

TEST(QuantizedModelLoadTest, LoadErrorsSayWhatIsWrong) {
  const std::string original = TinyModel("llama");
  const std::string gptq = Quantize(original, "w4a16-g32", "gptq");

  DenseOnlyBackend dense_only;
  auto rejected = LlamaModel::Load(gptq, &dense_only, {});
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(rejected.status().message().find("the dense-only backend cannot run w4a16-g32 weights yet"),
            std::string::npos)
      << rejected.status();
  EXPECT_TRUE(LlamaModel::Load(original, &dense_only, {}).ok());

  const auto expect_error = [](const absl::StatusOr<std::vector<float>>& result, const std::string& part) {
    ASSERT_FALSE(result.ok()) << part;
    EXPECT_NE(result.status().message().find(part), std::string::npos) << result.status();
  };
  expect_error(Logits(gptq, "w8a16"),
               "model.layers.0.self_attn.q_proj is stored as w4a16-g32 (gptq) but weight_scheme asks for w8a16; tern "
               "does not requantize quantized weights");
  expect_error(Logits(gptq, "w4a16-g64"), "is stored as w4a16-g32 (gptq) but weight_scheme asks for w4a16-g64");
  EXPECT_TRUE(Logits(gptq, "w4a16-g32").ok());

  const std::string plan = TempDir("bad-plan.json");
  std::ofstream(plan) << R"({"layers": {"model.layers.0.self_attn.q_proj": "w4a16-g32"}})";
  expect_error(Logits(original, "mixed:" + plan),
               "model.layers.0.self_attn.k_proj runs as dense (dense) but model.layers.0.self_attn.q_proj as w4a16-g32 "
               "(quantized at load); tern fuses them into one linear layer, so they must share a scheme");
  std::ofstream(plan) << R"({"layers": {"model.layers.7.mlp.up_proj": "w8a16"}})";
  expect_error(Logits(original, "mixed:" + plan), "names \"model.layers.7.mlp.up_proj\", which is not a linear layer");
  expect_error(Logits(gptq, "mixed:" + plan),
               "mixed-precision plans apply to dense checkpoints; this one is gptq w4a16-g32");
  fs::remove(plan);

  // A missing tensor fails the load before anything is uploaded, naming it.
  auto store = WeightStore::Open(gptq);
  ASSERT_TRUE(store.ok());
  const std::string broken = TempDir("broken");
  fs::create_directories(broken);
  fs::copy_file(gptq + "/config.json", broken + "/config.json", fs::copy_options::overwrite_existing);
  std::vector<TensorSpec> specs;
  for (const auto& name : (*store)->Names()) {
    if (name == "model.layers.1.self_attn.v_proj.qzeros") continue;
    const TensorView view = *(*store)->Get(name);
    specs.push_back({name, view.dtype, view.shape});
  }
  ASSERT_TRUE(WriteSafetensors(broken + "/model.safetensors", specs, [&](const TensorSpec& spec, uint8_t* out) {
                const TensorView view = *(*store)->Get(spec.name);
                std::memcpy(out, view.data, view.nbytes);
              }).ok());
  auto missing = Logits(broken);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("missing tensor \"model.layers.1.self_attn.v_proj.qzeros\""),
            std::string::npos)
      << missing.status();
  fs::remove_all(broken);

  // The checkpoint as the server reports it.
  auto config = LoadHfConfig(gptq);
  ASSERT_TRUE(config.ok());
  auto summary = LlamaModel::Inspect(gptq, *config, {});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->quantized);
  EXPECT_EQ(summary->weight_scheme, "w4a16-g32 (gptq)");
  auto dense_summary = LlamaModel::Inspect(original, *config, {});
  ASSERT_TRUE(dense_summary.ok());
  EXPECT_EQ(summary->parameters, dense_summary->parameters);
  EXPECT_EQ(dense_summary->weight_scheme, "dense");
}

TEST(QuantizedModelLoadTest, TheWriterRefusesWhatItCannotWrite) {
  const std::string original = TinyModel("llama");
  tools::QuantizeOptions options;
  options.model_dir = original;
  options.out_dir = TempDir("refused");
  options.scheme = Request("fp8");
  options.format = tools::CheckpointWriteFormat::kGptq;
  EXPECT_EQ(tools::QuantizeCheckpoint(options).status().message(),
            "gptq holds one weight-only scheme (w4a16, w8a16); write w8a8-fp8 as compressed-tensors");
  options.model_dir = Quantize(original, "w8a16", "gptq");
  options.format = tools::CheckpointWriteFormat::kCompressedTensors;
  EXPECT_NE(tools::QuantizeCheckpoint(options).status().message().find("is already quantized"), std::string::npos);
}

// W r_in and r_out W of a weight [out, in] (tools/quantize/check_dequant.py).
std::pair<std::vector<double>, std::vector<double>> Projections(const std::vector<float>& w, int64_t out, int64_t in) {
  std::vector<double> wr(size_t(out), 0.0), rw(size_t(in), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    const double r_out = std::cos(0.11 * double(o) + 0.5);
    for (int64_t i = 0; i < in; ++i) {
      wr[o] += double(w[o * in + i]) * std::sin(0.37 * double(i) + 1.0);
      rw[i] += r_out * double(w[o * in + i]);
    }
  }
  return {wr, rw};
}

void ExpectSameVector(const std::vector<double>& got, const nlohmann::json& want, const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  double diff = 0, ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::fabs(got[i] - want[i].get<double>()));
    ref = std::max(ref, std::fabs(want[i].get<double>()));
  }
  EXPECT_LT(diff, 1e-6 * ref) << where << ": max abs diff " << diff << " of max " << ref;
}

// Every layer of `dir` that `golden_modules` names, read by tern, against
// PyTorch's dequantization of the same file.
void ExpectLoadsAsPyTorch(const std::string& dir, const nlohmann::json& golden_modules, const std::string& what) {
  auto store = WeightStore::Open(dir);
  auto quantization = CheckpointQuantization::Load(dir);
  ASSERT_TRUE(store.ok() && quantization.ok()) << what;
  for (const auto& [module, golden] : golden_modules.items()) {
    const int64_t out = golden["out"], in = golden["in"];
    auto q = ReadQuantizedLinear(**store, module, quantization->ForModule(module), out, in, nullptr);
    ASSERT_TRUE(q.ok()) << what << " " << module << ": " << q.status();
    const auto [wr, rw] = Projections(DequantizeLinear(*q), out, in);
    ExpectSameVector(wr, golden["wr"], what + " " + module + " W r");
    ExpectSameVector(rw, golden["rw"], what + " " + module + " r W");
  }
}

std::string Sha256(const std::string& path) {
  std::string output;
  FILE* pipe = popen(("sha256sum " + path).c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[256];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  pclose(pipe);
  return output.substr(0, 64);
}

// tests/data/quantized holds small checkpoints that check_dequant.py packed
// as each format's own tools pack them (AutoGPTQ, AutoAWQ, compressed-tensors,
// vLLM's fp8), and golden.json: PyTorch's dequantization of those and of
// tern-quantize's checkpoints of the tiny Llama, made on the GPU machine
// (tests/data/quantized/README.md).
TEST(QuantizedModelLoadTest, LoadersAgreeWithPyTorch) {
  const std::string data = std::string(TERN_TEST_DATA_DIR) + "/quantized";
  std::ifstream in(data + "/golden.json");
  if (!in) GTEST_SKIP() << data << "/golden.json is missing: run tools/quantize/check_dequant.py on the GPU machine";
  const nlohmann::json golden = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& [variant, modules] : golden["fixtures"].items()) {
    ExpectLoadsAsPyTorch(data + "/" + variant, modules, variant);
    ++checked;
  }
  for (const auto& [name, entry] : golden["written"].items()) {
    // "<arch>:<scheme>:<format>", regenerated here bit for bit.
    const size_t a = name.find(':'), b = name.rfind(':');
    const std::string dir = Quantize(TinyModel(name.substr(0, a)), name.substr(a + 1, b - a - 1), name.substr(b + 1));
    ASSERT_EQ(Sha256(dir + "/model.safetensors"), entry["sha256"].get<std::string>())
        << name << ": tern-quantize no longer writes the bytes golden.json was made from";
    ExpectLoadsAsPyTorch(dir, entry["modules"], name);
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

}  // namespace
}  // namespace tern::runtime
