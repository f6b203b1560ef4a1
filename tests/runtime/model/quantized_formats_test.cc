// The published quantized formats against hand-computed tiny tensors: bit
// packing both ways (GPTQ, AWQ's interleaved order, compressed-tensors with
// padding), each format's reader (zero conventions, act order, scale dtypes,
// per-tensor and per-channel scales, static activation scales), and the
// precise errors for malformed configs and tensors.
#include "runtime/model/quantized_formats.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/common/float8.h"
#include "runtime/model/dtype.h"
#include "runtime/model/quantized_checkpoint.h"
#include "runtime/model/quantized_weight.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;

// --- bit packing ---

TEST(QuantizedFormatsTest, PacksFourBitsAlongColumnsLowNibbleFirst) {
  const std::vector<uint8_t> codes = {0, 1, 2, 3, 4, 5, 6, 7, 15, 14, 13, 12, 11, 10, 9, 8};
  const std::vector<int32_t> packed = PackInt32Dim1(codes, 2, 8, 4);
  ASSERT_EQ(packed.size(), 2u);
  EXPECT_EQ(uint32_t(packed[0]), 0x76543210u);
  EXPECT_EQ(uint32_t(packed[1]), 0x89abcdefu);  // a negative int32
  EXPECT_EQ(UnpackInt32Dim1(packed, 2, 8, 4), codes);
}

TEST(QuantizedFormatsTest, AwqOrderInterleavesEvenAndOddColumns) {
  // AutoAWQ's pack: value t of a word is column order_map[t], order_map =
  // {0, 2, 4, 6, 1, 3, 5, 7}.
  const std::vector<uint8_t> codes = {0, 3, 6, 9, 12, 15, 2, 5};
  const std::vector<int32_t> packed = PackInt32Dim1(codes, 1, 8, 4, /*awq_order=*/true);
  ASSERT_EQ(packed.size(), 1u);
  EXPECT_EQ(uint32_t(packed[0]), 0x5f932c60u);
  EXPECT_EQ(UnpackInt32Dim1(packed, 1, 8, 4, /*awq_order=*/true), codes);
}

TEST(QuantizedFormatsTest, PacksAlongRowsAsGptqQweight) {
  // qweight[r, c] holds rows r*pf .. r*pf+pf-1 of column c; 8 bits: 4 a word.
  const std::vector<uint8_t> codes = {1, 10, 2, 20, 3, 30, 4, 40, 255, 0, 128, 1, 0, 2, 7, 3};  // [8, 2]
  const std::vector<int32_t> packed = PackInt32Dim0(codes, 8, 2, 8);
  ASSERT_EQ(packed.size(), 4u);  // [2, 2]
  EXPECT_EQ(uint32_t(packed[0]), 0x04030201u);
  EXPECT_EQ(uint32_t(packed[1]), 0x281e140au);
  EXPECT_EQ(uint32_t(packed[2]), 0x070080ffu);
  EXPECT_EQ(uint32_t(packed[3]), 0x03020100u);
  EXPECT_EQ(UnpackInt32Dim0(packed, 8, 2, 8), codes);
}

TEST(QuantizedFormatsTest, PadsTheLastWordWithZeros) {
  // compressed-tensors pads rows to whole words: 5 columns of 4 bits.
  const std::vector<uint8_t> codes = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // [2, 5]
  const std::vector<int32_t> packed = PackInt32Dim1(codes, 2, 5, 4);
  ASSERT_EQ(packed.size(), 2u);
  EXPECT_EQ(uint32_t(packed[0]), 0x00054321u);
  EXPECT_EQ(uint32_t(packed[1]), 0x000a9876u);
  EXPECT_EQ(UnpackInt32Dim1(packed, 2, 5, 4), codes);
  // Along rows: 3 rows in one word per column.
  const std::vector<int32_t> by_rows = PackInt32Dim0(codes, 5, 2, 4);
  EXPECT_EQ(UnpackInt32Dim0(by_rows, 5, 2, 4), codes);
}

TEST(QuantizedFormatsTest, TernCodesAreTwoNibblesPerByteEvenColumnLow) {
  const std::vector<uint8_t> codes = {1, 2, 15, 0, 7, 8};
  const std::vector<uint8_t> packed = PackTernCodes(codes, 1, 6, 4);
  EXPECT_EQ(packed, (std::vector<uint8_t>{0x21, 0x0f, 0x87}));
  EXPECT_EQ(UnpackTernCodes(packed, 1, 6, 4), codes);
}

TEST(Float8Test, EveryCodeRoundTripsAndRoundingIsNearestEven) {
  for (int b = 0; b < 256; ++b) {
    const float v = kernels::Fp8E4M3ToFloat(uint8_t(b));
    if (std::isnan(v)) {
      EXPECT_TRUE((b & 0x7f) == 0x7f) << b;
      continue;
    }
    if (b == 0x80) continue;  // -0 encodes as 0x80 again, checked below
    EXPECT_EQ(kernels::FloatToFp8E4M3(v), uint8_t(b)) << b << " " << v;
  }
  EXPECT_EQ(kernels::FloatToFp8E4M3(-0.0f), 0x80);
  EXPECT_EQ(kernels::Fp8E4M3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(kernels::Fp8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(kernels::FloatToFp8E4M3(1e6f), 0x7e);  // saturates
  EXPECT_EQ(kernels::FloatToFp8E4M3(-INFINITY), 0xfe);
  EXPECT_EQ(kernels::FloatToFp8E4M3(464.0f), 0x7e);
  // 1.0625 is halfway between 1.0 (0x38) and 1.125 (0x39): ties to even.
  EXPECT_EQ(kernels::FloatToFp8E4M3(1.0625f), 0x38);
  EXPECT_EQ(kernels::FloatToFp8E4M3(1.1875f), 0x3a);                // between 1.125 and 1.25: to 1.25 (even)
  EXPECT_EQ(kernels::FloatToFp8E4M3(std::ldexp(1.5f, -10)), 0x01);  // 0.75 subnormal steps: nearest is 1
  EXPECT_EQ(kernels::FloatToFp8E4M3(std::ldexp(1.0f, -11)), 0x00);  // a quarter step rounds to 0
  EXPECT_EQ(kernels::FloatToFp8E4M3(std::ldexp(1.0f, -10)), 0x00);  // half a step: ties to even (0)
  EXPECT_EQ(kernels::FloatToFp8E4M3(std::ldexp(3.0f, -10)), 0x02);  // 1.5 steps: ties to even (2)
}

// --- checkpoint readers ---

// A model directory holding hand-made tensors and a config.json.
class TinyCheckpoint {
 public:
  explicit TinyCheckpoint(const std::string& name)
      : dir_((fs::temp_directory_path() / ("tern-qformat-" + name + "-" + std::to_string(getpid()))).string()) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TinyCheckpoint() { fs::remove_all(dir_); }

  template <typename T>
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(T));
    if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
    tensors_[name] = {TensorSpec{name, dtype, std::move(shape)}, std::move(bytes)};
  }
  void Remove(const std::string& name) { tensors_.erase(name); }

  // Writes the files; returns the store and the parsed quantization.
  std::unique_ptr<WeightStore> Write(const std::string& quantization_config) {
    std::vector<TensorSpec> specs;
    for (const auto& [name, t] : tensors_) specs.push_back(t.first);
    const auto fill = [&](const TensorSpec& spec, uint8_t* out) {
      const auto& bytes = tensors_.at(spec.name).second;
      std::memcpy(out, bytes.data(), bytes.size());
    };
    EXPECT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", specs, fill).ok());
    config_ = "{\"quantization_config\": " + quantization_config + "}";
    auto store = WeightStore::Open(dir_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  absl::StatusOr<CheckpointQuantization> Quantization() const { return CheckpointQuantization::Parse(config_); }

 private:
  std::string dir_;
  std::string config_;
  std::map<std::string, std::pair<TensorSpec, std::vector<uint8_t>>> tensors_;
};

std::vector<uint16_t> Half(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(FloatToHalf(f));
  return out;
}
std::vector<uint16_t> BFloat(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(FloatToBFloat16(f));
  return out;
}

constexpr char kModule[] = "model.layers.0.mlp.down_proj";
std::string M(const std::string& suffix) { return std::string(kModule) + "." + suffix; }

// A 4-bit GPTQ layer of [out 8, in 16], group 8, written as AutoGPTQ's pack()
// writes it: qweight word (r, o) |= code[o][8r + t] << 4t, qzeros word
// (g, 0) |= (zero[g][o] - 1) << 4o.
struct GptqCase {
  static constexpr int64_t kOut = 8, kIn = 16, kGroup = 8;
  std::vector<int32_t> g_idx = std::vector<int32_t>(kIn);
  int Code(int o, int i) const { return (3 * o + 5 * i) % 16; }
  int Zero(int g, int o) const { return 1 + (o + g) % 15; }
  float Scale(int g, int o) const { return 0.5f + 0.25f * o + g; }
  float Expected(int o, int i) const { return float(Code(o, i) - Zero(g_idx[i], o)) * Scale(g_idx[i], o); }

  void WriteTo(TinyCheckpoint& ckpt) const {
    std::vector<uint32_t> qweight(2 * kOut, 0), qzeros(2, 0);
    for (int r = 0; r < 2; ++r) {
      for (int o = 0; o < kOut; ++o) {
        for (int t = 0; t < 8; ++t) qweight[r * kOut + o] |= uint32_t(Code(o, 8 * r + t)) << (4 * t);
      }
    }
    std::vector<float> scales;
    for (int g = 0; g < 2; ++g) {
      for (int o = 0; o < kOut; ++o) {
        qzeros[g] |= uint32_t(Zero(g, o) - 1) << (4 * o);
        scales.push_back(Scale(g, o));
      }
    }
    ckpt.Add(M("qweight"), DType::kI32, {2, kOut}, qweight);
    ckpt.Add(M("qzeros"), DType::kI32, {2, 1}, qzeros);
    ckpt.Add(M("scales"), DType::kF16, {2, kOut}, Half(scales));
    ckpt.Add(M("g_idx"), DType::kI32, {kIn}, g_idx);
  }
};

constexpr char kGptqConfig[] =
    R"({"quant_method": "gptq", "bits": 4, "group_size": 8, "desc_act": false, "sym": false})";

TEST(QuantizedCheckpointTest, ReadsGptqWithTheOffByOneZeros) {
  GptqCase c;
  for (int i = 0; i < c.kIn; ++i) c.g_idx[i] = i / c.kGroup;
  TinyCheckpoint ckpt("gptq");
  c.WriteTo(ckpt);
  auto store = ckpt.Write(kGptqConfig);
  auto quantization = ckpt.Quantization();
  ASSERT_TRUE(quantization.ok()) << quantization.status();
  EXPECT_EQ(quantization->Describe(), "gptq w4a16-g8-asym");
  const StoredLinear stored = quantization->ForModule(kModule);
  ASSERT_TRUE(CheckStoredLinear(*store, kModule, stored, c.kOut, c.kIn).ok());
  auto q = ReadQuantizedLinear(*store, kModule, stored, c.kOut, c.kIn, nullptr);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->scheme.scheme, WeightScheme::kW4A16);
  EXPECT_EQ(q->group_size, 8);
  EXPECT_TRUE(q->input_order.empty());
  EXPECT_EQ(q->zeros[0], 1);  // stored 0, read as 0 + 1
  const std::vector<float> w = DequantizeLinear(*q);
  for (int o = 0; o < c.kOut; ++o) {
    for (int i = 0; i < c.kIn; ++i) ASSERT_EQ(w[o * c.kIn + i], c.Expected(o, i)) << o << "," << i;
  }
  // gptq_v2 stores the zero itself.
  auto v2 = CheckpointQuantization::Parse(
      R"({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 8, "checkpoint_format": "gptq_v2"}})");
  ASSERT_TRUE(v2.ok());
  auto q2 = ReadQuantizedLinear(*store, kModule, v2->ForModule(kModule), c.kOut, c.kIn, nullptr);
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(q2->zeros[0], 0);
}

TEST(QuantizedCheckpointTest, ReadsGptqActOrderIntoContiguousGroups) {
  GptqCase c;
  for (int i = 0; i < c.kIn; ++i) c.g_idx[i] = i % 2;  // even channels group 0, odd group 1
  TinyCheckpoint ckpt("gptq-act");
  c.WriteTo(ckpt);
  auto store = ckpt.Write(R"({"quant_method": "gptq", "bits": 4, "group_size": 8, "desc_act": true})");
  auto quantization = ckpt.Quantization();
  ASSERT_TRUE(quantization.ok());
  auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), c.kOut, c.kIn, nullptr);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->input_order.size(), size_t(c.kIn));
  for (int j = 0; j < c.kIn; ++j) EXPECT_EQ(q->input_order[j], j < 8 ? 2 * j : 2 * (j - 8) + 1);
  const std::vector<float> w = DequantizeLinear(*q);
  for (int o = 0; o < c.kOut; ++o) {
    for (int i = 0; i < c.kIn; ++i) ASSERT_EQ(w[o * c.kIn + i], c.Expected(o, i)) << o << "," << i;
  }
}

TEST(QuantizedCheckpointTest, GptqTensorErrorsNameTheTensorAndWhatWasExpected) {
  GptqCase c;
  for (int i = 0; i < c.kIn; ++i) c.g_idx[i] = i / c.kGroup;
  const auto check = [&](const std::string& name, const std::function<void(TinyCheckpoint&)>& edit,
                         absl::StatusCode code, const std::string& expected) {
    TinyCheckpoint ckpt("gptq-bad-" + name);
    c.WriteTo(ckpt);
    edit(ckpt);
    auto store = ckpt.Write(kGptqConfig);
    auto quantization = ckpt.Quantization();
    ASSERT_TRUE(quantization.ok());
    auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), c.kOut, c.kIn, nullptr);
    ASSERT_FALSE(q.ok()) << name;
    EXPECT_EQ(q.status().code(), code) << name;
    EXPECT_EQ(std::string(q.status().message()), expected) << name;
  };
  check(
      "missing", [](TinyCheckpoint& t) { t.Remove(M("scales")); }, absl::StatusCode::kNotFound,
      "missing tensor \"model.layers.0.mlp.down_proj.scales\"");
  check(
      "dtype",
      [](TinyCheckpoint& t) {
        t.Add(M("qzeros"), DType::kF32, {2, 1}, std::vector<float>{0, 0});
      },
      absl::StatusCode::kInvalidArgument, "tensor \"model.layers.0.mlp.down_proj.qzeros\" has dtype F32; expected I32");
  check(
      "shape",
      [](TinyCheckpoint& t) {
        t.Add(M("qweight"), DType::kI32, {1, 16}, std::vector<int32_t>(16));
      },
      absl::StatusCode::kInvalidArgument,
      "tensor \"model.layers.0.mlp.down_proj.qweight\" has shape [1, 16]; expected [2, 8] "
      "(in_features / 8, out_features)");
  check(
      "g_idx range",
      [](TinyCheckpoint& t) {
        std::vector<int32_t> g(16, 0);
        g[3] = 2;
        t.Add(M("g_idx"), DType::kI32, {16}, g);
      },
      absl::StatusCode::kInvalidArgument, "tensor \"model.layers.0.mlp.down_proj.g_idx\"[3] = 2 is outside [0, 2)");
  check(
      "g_idx counts",
      [](TinyCheckpoint& t) {
        std::vector<int32_t> g(16, 1);
        g[0] = 0;
        t.Add(M("g_idx"), DType::kI32, {16}, g);
      },
      absl::StatusCode::kInvalidArgument,
      "tensor \"model.layers.0.mlp.down_proj.g_idx\": group 0 has 1 input channels; expected the group size 8");
}

TEST(QuantizedCheckpointTest, EightBitGptqRejectsAZeroItsFormatCannotHold) {
  // qzeros stores zero - 1; a stored 0xff at 8 bits would be zero 256.
  TinyCheckpoint ckpt("gptq8");
  std::vector<int32_t> qweight(4 * 4, 0x01010101);
  ckpt.Add(M("qweight"), DType::kI32, {4, 4}, qweight);  // [in 16 / 4, out 4]
  ckpt.Add(M("qzeros"), DType::kI32, {1, 1}, std::vector<uint32_t>{0x7f7f7fffu});
  ckpt.Add(M("scales"), DType::kF16, {1, 4}, Half({1, 1, 1, 1}));
  auto store = ckpt.Write(R"({"quant_method": "gptq", "bits": 8, "group_size": -1})");
  auto quantization = ckpt.Quantization();
  ASSERT_TRUE(quantization.ok());
  EXPECT_EQ(quantization->Describe(), "gptq w8a16");
  auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), 4, 16, nullptr);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("zero - 1 = -1 at group 0, column 0"), std::string::npos) << q.status();
}

TEST(QuantizedCheckpointTest, ReadsAwqGemmPacking) {
  constexpr int64_t kOut = 8, kIn = 16, kGroup = 8;
  const auto code = [](int i, int o) { return (3 * o + 5 * i) % 16; };
  const auto zero = [](int g, int o) { return (2 * o + g) % 16; };
  const auto scale = [](int g, int o) { return 0.125f * (1 + o) + 0.5f * g; };
  constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // AutoAWQ's order_map
  std::vector<uint32_t> qweight(kIn, 0), qzeros(2, 0);
  std::vector<float> scales;
  for (int i = 0; i < kIn; ++i) {
    for (int t = 0; t < 8; ++t) qweight[i] |= uint32_t(code(i, kOrder[t])) << (4 * t);
  }
  for (int g = 0; g < 2; ++g) {
    for (int t = 0; t < 8; ++t) qzeros[g] |= uint32_t(zero(g, kOrder[t])) << (4 * t);
    for (int o = 0; o < kOut; ++o) scales.push_back(scale(g, o));
  }
  EXPECT_EQ(qweight[0], 0x5f932c60u);  // row 0: codes 0, 3, 6, 9, 12, 15, 2, 5
  TinyCheckpoint ckpt("awq");
  ckpt.Add(M("qweight"), DType::kI32, {kIn, 1}, qweight);
  ckpt.Add(M("qzeros"), DType::kI32, {2, 1}, qzeros);
  ckpt.Add(M("scales"), DType::kF16, {2, kOut}, Half(scales));
  auto store =
      ckpt.Write(R"({"quant_method": "awq", "bits": 4, "group_size": 8, "zero_point": true, "version": "GEMM"})");
  auto quantization = ckpt.Quantization();
  ASSERT_TRUE(quantization.ok()) << quantization.status();
  auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), kOut, kIn, nullptr);
  ASSERT_TRUE(q.ok()) << q.status();
  const std::vector<float> w = DequantizeLinear(*q);
  for (int o = 0; o < kOut; ++o) {
    for (int i = 0; i < kIn; ++i) {
      const int g = i / kGroup;
      ASSERT_EQ(w[o * kIn + i], float(code(i, o) - zero(g, o)) * scale(g, o)) << o << "," << i;
    }
  }
  EXPECT_EQ(quantization->ForModule("lm_head").layout, StoredLinear::Layout::kFloat);
}

TEST(QuantizedCheckpointTest, ReadsCompressedTensorsPackQuantizedWithZeroPointsAndActOrder) {
  // [out 8, in 12] 4-bit, group 4 (3 groups), asymmetric, act order; rows
  // padded to 2 words; bf16 scales.
  constexpr int64_t kOut = 8, kIn = 12, kGroups = 3;
  const auto code = [](int o, int i) { return (7 * o + 3 * i) % 16; };  // stored: signed + 8
  const auto zp = [](int o, int g) { return (o + 2 * g) % 16 - 8; };    // signed zero point
  const auto scale = [](int o, int g) { return 0.25f * float(1 + o + g); };
  std::vector<int32_t> g_idx(kIn);
  for (int i = 0; i < kIn; ++i) g_idx[i] = (i * 5) % 3;  // 4 channels per group, scattered
  std::vector<uint32_t> packed(kOut * 2, 0);
  for (int o = 0; o < kOut; ++o) {
    for (int i = 0; i < kIn; ++i) packed[o * 2 + i / 8] |= uint32_t(code(o, i)) << (4 * (i % 8));
  }
  std::vector<uint32_t> zero_points(kGroups, 0);  // [ceil(8 / 8), 3]: along rows
  for (int g = 0; g < kGroups; ++g) {
    for (int o = 0; o < kOut; ++o) zero_points[g] |= uint32_t(zp(o, g) + 8) << (4 * o);
  }
  std::vector<float> scales;
  for (int o = 0; o < kOut; ++o) {
    for (int g = 0; g < kGroups; ++g) scales.push_back(scale(o, g));
  }
  TinyCheckpoint ckpt("ct-pack");
  ckpt.Add(M("weight_packed"), DType::kI32, {kOut, 2}, packed);
  ckpt.Add(M("weight_shape"), DType::kI64, {2}, std::vector<int64_t>{kOut, kIn});
  ckpt.Add(M("weight_scale"), DType::kBF16, {kOut, kGroups}, BFloat(scales));
  ckpt.Add(M("weight_zero_point"), DType::kI32, {1, kGroups}, zero_points);
  ckpt.Add(M("weight_g_idx"), DType::kI32, {kIn}, g_idx);
  auto store = ckpt.Write(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "quantization_status": "compressed", "ignore": ["lm_head"],
      "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": null,
        "weights": {"num_bits": 4, "type": "int", "symmetric": false, "strategy": "group", "group_size": 4,
                    "actorder": "group"}}}})");
  auto quantization = ckpt.Quantization();
  ASSERT_TRUE(quantization.ok()) << quantization.status();
  EXPECT_EQ(quantization->Describe(), "compressed-tensors w4a16-g4-asym");
  EXPECT_EQ(quantization->ForModule("lm_head").layout, StoredLinear::Layout::kFloat);
  auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), kOut, kIn, nullptr);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_FALSE(q->input_order.empty());
  const std::vector<float> w = DequantizeLinear(*q);
  for (int o = 0; o < kOut; ++o) {
    for (int i = 0; i < kIn; ++i) {
      const int g = g_idx[i];
      ASSERT_EQ(w[o * kIn + i], float((code(o, i) - 8) - zp(o, g)) * scale(o, g)) << o << "," << i;
    }
  }
}

constexpr char kCtInt8Config[] = R"({"quant_method": "compressed-tensors", "format": "int-quantized",
    "config_groups": {"group_0": {"targets": ["re:.*mlp\\..*_proj$"],
      "weights": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel"},
      "input_activations": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token", "dynamic": true}}}})";

TEST(QuantizedCheckpointTest, ReadsCompressedTensorsW8A8Int8AndFp8) {
  std::vector<int8_t> weight(4 * 8);
  for (int i = 0; i < 32; ++i) weight[i] = int8_t(i * 7 - 100);
  {
    TinyCheckpoint ckpt("ct-int8");
    ckpt.Add(M("weight"), DType::kI8, {4, 8}, weight);
    ckpt.Add(M("weight_scale"), DType::kF32, {4, 1}, std::vector<float>{0.5f, 0.25f, 2.0f, 1.0f});
    auto store = ckpt.Write(kCtInt8Config);
    auto quantization = ckpt.Quantization();
    ASSERT_TRUE(quantization.ok()) << quantization.status();
    EXPECT_EQ(quantization->ForModule("model.layers.0.self_attn.q_proj").layout, StoredLinear::Layout::kFloat);
    auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), 4, 8, nullptr);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->scheme.scheme, WeightScheme::kW8A8Int8);
    EXPECT_EQ(q->input_scale, 0.0f);
    const std::vector<float> w = DequantizeLinear(*q);
    const float row_scale[4] = {0.5f, 0.25f, 2.0f, 1.0f};
    for (int i = 0; i < 32; ++i) ASSERT_EQ(w[i], float(weight[i]) * row_scale[i / 8]);
  }
  {
    // FP8, per-tensor weight scale, static activations.
    std::vector<uint8_t> fp8(4 * 8);
    for (int i = 0; i < 32; ++i) fp8[i] = uint8_t(i * 9 + 3) & 0x7e;  // no NaN codes
    TinyCheckpoint ckpt("ct-fp8");
    ckpt.Add(M("weight"), DType::kF8E4M3, {4, 8}, fp8);
    ckpt.Add(M("weight_scale"), DType::kF32, {1}, std::vector<float>{0.125f});
    ckpt.Add(M("input_scale"), DType::kF32, {1}, std::vector<float>{0.03f});
    auto store = ckpt.Write(R"({"quant_method": "compressed-tensors", "format": "float-quantized",
        "config_groups": {"g": {"targets": ["Linear"],
          "weights": {"num_bits": 8, "type": "float", "strategy": "tensor"},
          "input_activations": {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": false}}}})");
    auto quantization = ckpt.Quantization();
    ASSERT_TRUE(quantization.ok()) << quantization.status();
    auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), 4, 8, nullptr);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->scheme.scheme, WeightScheme::kW8A8Fp8);
    EXPECT_EQ(q->input_scale, 0.03f);
    const std::vector<float> w = DequantizeLinear(*q);
    for (int i = 0; i < 32; ++i) ASSERT_EQ(w[i], kernels::Fp8E4M3ToFloat(fp8[i]) * 0.125f);
  }
}

TEST(QuantizedCheckpointTest, ReadsFp8CheckpointsWithScalarScales) {
  std::vector<uint8_t> fp8(4 * 8);
  for (int i = 0; i < 32; ++i) fp8[i] = uint8_t(i * 5 + 1) & 0xfe;
  TinyCheckpoint ckpt("fp8");
  ckpt.Add(M("weight"), DType::kF8E4M3, {4, 8}, fp8);
  ckpt.Add(M("weight_scale"), DType::kF32, {}, std::vector<float>{0.5f});
  ckpt.Add(M("input_scale"), DType::kF32, {}, std::vector<float>{0.25f});
  auto store = ckpt.Write(
      R"({"quant_method": "fp8", "activation_scheme": "static", "ignored_layers": ["model.layers.1.mlp.down_proj"]})");
  auto quantization = ckpt.Quantization();
  ASSERT_TRUE(quantization.ok()) << quantization.status();
  EXPECT_EQ(quantization->ForModule("model.layers.1.mlp.down_proj").layout, StoredLinear::Layout::kFloat);
  auto q = ReadQuantizedLinear(*store, kModule, quantization->ForModule(kModule), 4, 8, nullptr);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->input_scale, 0.25f);
  EXPECT_EQ(q->scales, std::vector<float>(4, 0.5f));
  const std::vector<float> w = DequantizeLinear(*q);
  for (int i = 0; i < 32; ++i) ASSERT_EQ(w[i], kernels::Fp8E4M3ToFloat(fp8[i]) * 0.5f);
  // An e5m2 weight is named as such.
  TinyCheckpoint e5m2("fp8-e5m2");
  e5m2.Add(M("weight"), DType::kF8E5M2, {4, 8}, fp8);
  e5m2.Add(M("weight_scale"), DType::kF32, {}, std::vector<float>{0.5f});
  auto store2 = e5m2.Write(R"({"quant_method": "fp8"})");
  auto bad = CheckStoredLinear(*store2, kModule, e5m2.Quantization()->ForModule(kModule), 4, 8);
  EXPECT_EQ(std::string(bad.message()),
            "tensor \"model.layers.0.mlp.down_proj.weight\" is F8_E5M2; tern runs FP8 weights as F8_E4M3");
}

TEST(QuantizedCheckpointTest, MalformedOrUnsupportedConfigsAreNamedErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"bits": 4})", "config.json: quantization_config.quant_method: is missing"},
      {R"({"quant_method": "bitsandbytes"})",
       "config.json: quantization_config.quant_method: \"bitsandbytes\" is not supported (gptq, awq, fp8, "
       "compressed-tensors)"},
      {R"({"quant_method": "gptq", "bits": 3, "group_size": 128})",
       "config.json: quantization_config.bits: 3 bits is not supported (4 or 8)"},
      {R"({"quant_method": "gptq", "bits": "4", "group_size": 128})",
       "config.json: quantization_config.bits: is not an integer"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": -7})",
       "config.json: quantization_config.group_size: -7 is not -1 or positive"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"})",
       "config.json: quantization_config.checkpoint_format: \"marlin\" is not supported (gptq, gptq_v2)"},
      {R"({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"})",
       "config.json: quantization_config.version: \"gemv\" is not supported (GEMM packing only)"},
      {R"({"quant_method": "fp8", "weight_block_size": [128, 128]})",
       "config.json: quantization_config.weight_block_size: block-wise FP8 is not supported"},
      {R"({"quant_method": "fp8", "activation_scheme": "sometimes"})",
       "config.json: quantization_config.activation_scheme: \"sometimes\" is not static or dynamic"},
      {R"({"quant_method": "compressed-tensors", "format": "int-quantized", "kv_cache_scheme": {"num_bits": 8},
          "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8}}}})",
       "config.json: quantization_config.kv_cache_scheme: KV-cache quantization is not supported yet"},
      {R"({"quant_method": "compressed-tensors", "format": "int-quantized",
          "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "int", "strategy": "channel"},
            "input_activations": {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": true, "symmetric": false}}}})",
       "config.json: quantization_config.config_groups.g.input_activations.symmetric: asymmetric activations are not "
       "supported"},
      {R"({"quant_method": "compressed-tensors", "format": "float-quantized",
          "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}})",
       "config.json: quantization_config.config_groups.g.weights.type: float weights without quantized activations "
       "(W8A16 FP8) are not supported; tern runs FP8 weights as W8A8"},
      {R"({"quant_method": "compressed-tensors", "format": "float-quantized",
          "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "block"},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": true}}}})",
       "config.json: quantization_config.config_groups.g.weights.strategy: \"block\" is not supported (tensor, "
       "channel, group)"},
      {R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
          "config_groups": {"g": {"targets": ["re:(unclosed"], "weights": {"num_bits": 4, "strategy": "group", "group_size": 128}}}})",
       "config.json: quantization_config.config_groups.g.targets: \"re:(unclosed\" is not a valid regular expression"},
      {R"({"quant_method": "compressed-tensors", "quantization_status": "frozen",
          "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4}}}})",
       "config.json: quantization_config.quantization_status: \"frozen\": tern loads compressed checkpoints only"},
  };
  for (const auto& [config, expected] : cases) {
    auto parsed = CheckpointQuantization::Parse(R"({"quantization_config": )" + config + "}");
    ASSERT_FALSE(parsed.ok()) << config;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(parsed.status().message()), expected);
  }
  auto dense = CheckpointQuantization::Parse(R"({"architectures": ["LlamaForCausalLM"]})");
  ASSERT_TRUE(dense.ok());
  EXPECT_FALSE(dense->quantized());
}

TEST(QuantizedCheckpointTest, CompressedTensorsWeightShapeMustMatchTheLayer) {
  TinyCheckpoint ckpt("ct-shape");
  ckpt.Add(M("weight_packed"), DType::kI32, {8, 2}, std::vector<int32_t>(16));
  ckpt.Add(M("weight_shape"), DType::kI64, {2}, std::vector<int64_t>{8, 13});
  ckpt.Add(M("weight_scale"), DType::kF16, {8, 1}, Half(std::vector<float>(8, 1.0f)));
  auto store = ckpt.Write(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4, "strategy": "channel"}}}})");
  auto q = ReadQuantizedLinear(*store, kModule, ckpt.Quantization()->ForModule(kModule), 8, 12, nullptr);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(std::string(q.status().message()),
            "tensor \"model.layers.0.mlp.down_proj.weight_shape\" holds [8, 13]; expected [8, 12]");
}

}  // namespace
}  // namespace tern::runtime
