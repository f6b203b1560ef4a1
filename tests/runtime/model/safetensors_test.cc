#include "runtime/model/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tern-st-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes header JSON + `data_bytes` bytes of payload, with an explicit
  // header length (to forge bad ones).
  std::string WriteRaw(const std::string& name, const std::string& header, size_t data_bytes,
                       std::optional<uint64_t> header_len = std::nullopt) {
    const std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    const uint64_t len = header_len.value_or(header.size());
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
    out << header << std::string(data_bytes, '\x01');
    return path;
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripsThroughTheWriter) {
  const std::vector<TensorSpec> specs = {{"a", DType::kF32, {2, 3}}, {"b", DType::kBF16, {4}}, {"empty", DType::kF16, {0, 5}}};
  const std::string path = (dir_ / "model.safetensors").string();
  ASSERT_TRUE(WriteSafetensors(path, specs,
                               [](const TensorSpec& spec, uint8_t* out) {
                                 for (size_t i = 0; i < spec.nbytes(); ++i) out[i] = uint8_t(i + spec.name[0]);
                               },
                               {{"format", "pt"}})
                  .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 3u);
  const TensorView& a = (*file)->tensors().at("a");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(a.data[5], uint8_t(5 + 'a'));
  EXPECT_EQ((*file)->tensors().at("b").dtype, DType::kBF16);
  EXPECT_EQ((*file)->tensors().at("empty").nbytes, 0u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");

  auto store = WeightStore::Open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->TotalParameters(), 10);
  EXPECT_EQ((*store)->Get("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->GetWithShape("a", {3, 2}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsTest, MalformedFilesAreInvalidArgumentNotCrashes) {
  struct Case {
    const char* what;
    std::string header;
    size_t data;
    std::optional<uint64_t> header_len;
  };
  const std::vector<Case> cases = {
      {"header length past the end", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4, 1ull << 40},
      {"header length overflow", "{}", 0, ~0ull},
      {"not json", "{nope", 0, std::nullopt},
      {"not an object", "[1,2]", 0, std::nullopt},
      {"unknown dtype", R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}})", 4, std::nullopt},
      {"negative dim", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, std::nullopt},
      {"offsets past data", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, std::nullopt},
      {"size mismatch", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8, std::nullopt},
      {"begin after end", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", 8, std::nullopt},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, std::nullopt},
      {"shape overflow", R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4, std::nullopt},
      {"missing offsets", R"({"a":{"dtype":"F32","shape":[1]}})", 4, std::nullopt},
  };
  for (const Case& c : cases) {
    const std::string path = WriteRaw("bad.safetensors", c.header, c.data, c.header_len);
    auto file = SafetensorsFile::Open(path);
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << file.status();
    EXPECT_NE(file.status().message().find("bad.safetensors"), std::string::npos) << c.what;
  }
  // Shorter than the length prefix.
  std::ofstream(dir_ / "tiny.safetensors") << "abc";
  EXPECT_EQ(SafetensorsFile::Open((dir_ / "tiny.safetensors").string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetensorsFile::Open((dir_ / "absent.safetensors").string()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, ShardedIndexMustAgreeWithShards) {
  const auto fill = [](const TensorSpec&, uint8_t*) {};
  ASSERT_TRUE(WriteSafetensors((dir_ / "s1.safetensors").string(), {{"a", DType::kF32, {1}}}, fill).ok());
  ASSERT_TRUE(WriteSafetensors((dir_ / "s2.safetensors").string(), {{"b", DType::kF32, {1}}}, fill).ok());
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})";
  auto store = WeightStore::Open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Names(), (std::vector<std::string>{"a", "b"}));

  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})";
  EXPECT_EQ(WeightStore::Open(dir_.string()).status().code(), absl::StatusCode::kInvalidArgument);
  std::ofstream(dir_ / "model.safetensors.index.json") << R"({"weight_map": {"a": "../etc/passwd"}})";
  EXPECT_EQ(WeightStore::Open(dir_.string()).status().code(), absl::StatusCode::kInvalidArgument);
  std::ofstream(dir_ / "model.safetensors.index.json") << R"({"weight_map": {"a": "gone.safetensors"}})";
  EXPECT_EQ(WeightStore::Open(dir_.string()).status().code(), absl::StatusCode::kNotFound);
  fs::remove(dir_ / "model.safetensors.index.json");
  EXPECT_EQ(WeightStore::Open(dir_.string()).status().code(), absl::StatusCode::kNotFound);
}

TEST(DTypeTest, HalfAndBFloat16ConversionsRoundToNearestEven) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}) {
    EXPECT_EQ(HalfToFloat(FloatToHalf(v)), v) << v;
  }
  EXPECT_TRUE(std::isinf(HalfToFloat(FloatToHalf(1e6f))));
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f)), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.00390625f)), 1.0f);  // halfway rounds to even
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.01171875f)), 1.015625f);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::nanf("")))));
}

}  // namespace
}  // namespace tern::runtime
