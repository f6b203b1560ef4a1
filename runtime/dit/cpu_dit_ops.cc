#include "runtime/dit/cpu_dit_ops.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/gemm/quant_gemm.h"
#include "runtime/base/check.h"

namespace tern::runtime {
namespace {

class CpuDitLinear final : public DitLinear {
 public:
  CpuDitLinear(int64_t out, int64_t in, std::vector<float> weight, std::vector<float> bias)
      : out_(out), in_(in), weight_(std::move(weight)), bias_(std::move(bias)) {}
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  const float* weight() const { return weight_.data(); }
  const std::vector<float>& bias() const { return bias_; }
  size_t bytes() const override { return (weight_.size() + bias_.size()) * sizeof(float); }

 private:
  int64_t out_, in_;
  std::vector<float> weight_;  // [out, in]
  std::vector<float> bias_;    // [out] or empty
};

// A W8A8 layer as quantized: codes [out, in], scales [out], bias [out] or
// empty.
class CpuDitW8A8Linear final : public DitLinear {
 public:
  explicit CpuDitW8A8Linear(QuantizedLinear linear) : linear_(std::move(linear)) {}
  int64_t out_features() const override { return linear_.out_features; }
  int64_t in_features() const override { return linear_.in_features; }
  LinearScheme scheme() const override { return linear_.scheme; }
  size_t bytes() const override {
    return linear_.weight.size() + (linear_.scales.size() + linear_.bias.size()) * sizeof(float);
  }
  const QuantizedLinear& linear() const { return linear_; }
  kernels::ActivationQuant type() const {
    return linear_.scheme.scheme == WeightScheme::kW8A8Fp8 ? kernels::ActivationQuant::kFp8E4M3
                                                           : kernels::ActivationQuant::kInt8;
  }

 private:
  QuantizedLinear linear_;
};

class CpuDitTable final : public DitTable {
 public:
  CpuDitTable(int64_t rows, int64_t cols, std::vector<float> values)
      : rows_(rows), cols_(cols), values_(std::move(values)) {}
  int64_t rows() const override { return rows_; }
  int64_t cols() const override { return cols_; }
  size_t bytes() const override { return values_.size() * sizeof(float); }
  const float* row(int64_t r) const { return values_.data() + r * cols_; }

 private:
  int64_t rows_, cols_;
  std::vector<float> values_;  // [rows, cols]
};

class CpuDitBuffer final : public DitBuffer {
 public:
  CpuDitBuffer(int64_t rows, int64_t cols) : rows_(rows), cols_(cols), values_(size_t(rows) * size_t(cols), 0.0f) {}
  Tensor tensor() const override {
    return Tensor{const_cast<float*>(values_.data()), DType::kF32, rows_, cols_, cols_};
  }
  size_t bytes() const override { return values_.size() * sizeof(float); }

 private:
  int64_t rows_, cols_;
  std::vector<float> values_;
};

class CpuDitConv final : public DitConv {
 public:
  CpuDitConv(int32_t out, int32_t in, int32_t kernel, std::vector<float> weight, std::vector<float> bias)
      : out_(out), in_(in), kernel_(kernel), weight_(std::move(weight)), bias_(std::move(bias)) {}
  int32_t out_channels() const override { return out_; }
  int32_t in_channels() const override { return in_; }
  int32_t kernel() const override { return kernel_; }
  size_t bytes() const override { return (weight_.size() + bias_.size()) * sizeof(float); }
  const float* weight() const { return weight_.data(); }
  const std::vector<float>& bias() const { return bias_; }

 private:
  int32_t out_, in_, kernel_;
  std::vector<float> weight_;  // [out, k, k, in]: im2col's column order (ky, kx, channel)
  std::vector<float> bias_;    // [out] or empty
};

float* F(Tensor t) {
  CHECK(t.dtype == DType::kF32) << "CpuDitOps computes in fp32";
  return static_cast<float*>(t.data);
}

std::vector<float> ToFloat(const TensorView& t) {
  std::vector<float> out(t.numel());
  ConvertToFloat(t.dtype, t.data, out.size(), out.data());
  return out;
}

// e^x within 1 ulp (measured over [-87, 88]; glibc's expf: 0.5), written so
// that GCC vectorizes the loops that call it (glibc's expf is a scalar call):
// the exponentials of attention's softmax and GELU are a third of a forward
// pass when left scalar. x is clamped to [-87.3, 88] first, so the result is
// never 0 or inf (1.2e-38 and 1.7e38 at the ends): harmless in a softmax,
// whose arguments are <= 0, and in GELU's 1 / (1 + e). Cephes' expf:
// n = floor(x log2(e) + 1/2), r = x - n ln 2 (ln 2 in two parts), e^r by its
// polynomial, times 2^n built in the exponent bits.
inline float FastExp(float x) {
  x = std::min(std::max(x, -87.3f), 88.0f);
  const float fx = x * 1.44269504088896341f + 0.5f;
  const int32_t n = static_cast<int32_t>(fx + 128.0f) - 128;  // floor: fx + 128 > 0
  const float nf = static_cast<float>(n);
  const float r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((n + 127) << 23);
}

// C[m, n] = alpha * sum_k A[m, k] B[n, k] + beta * C[m, n], row-major with
// leading dimensions in elements. Always the GEMM path (never GEMV for one
// row), so that equal calls give equal results.
void GemmNT(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
            float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta,
              c, int(ldc));
}

}  // namespace

absl::StatusOr<std::unique_ptr<DitLinear>> CpuDitOps::PrepareLinear(const TensorView& weight,
                                                                   const TensorView* bias) {
  if (auto s = CheckFloatTensor(weight); !s.ok()) return s;
  const int64_t out = weight.shape[0];
  const int64_t in = weight.numel() / out;
  std::vector<float> b;
  if (bias != nullptr) {
    if (auto s = CheckFloatTensor(*bias); !s.ok()) return s;
    if (bias->shape != std::vector<int64_t>{out}) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", bias->name, "\" has shape ", bias->ShapeString(),
                                                     "; expected [", out, "] (the bias of \"", weight.name, "\")"));
    }
    b = ToFloat(*bias);
  }
  return std::unique_ptr<DitLinear>(new CpuDitLinear(out, in, ToFloat(weight), std::move(b)));
}

absl::Status CpuDitOps::CheckWeightScheme(const LinearScheme& scheme) const {
  if (scheme.scheme == WeightScheme::kDense || IsW8A8(scheme.scheme)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the cpu DiT ops run dense, w8a8-int8 and w8a8-fp8 linear layers, not ", scheme.ToString()));
}

absl::StatusOr<std::unique_ptr<DitLinear>> CpuDitOps::PrepareQuantizedLinear(const QuantizedLinear& linear) {
  const std::string what = absl::StrCat("a ", linear.scheme.ToString(), " linear [", linear.out_features, ", ",
                                        linear.in_features, "]");
  if (auto s = ValidateQuantizedLinear(linear, what); !s.ok()) return s;
  if (!IsW8A8(linear.scheme.scheme)) return absl::InvalidArgumentError(what + " is not w8a8");
  if (linear.input_scale != 0.0f || !linear.input_smoothing.empty()) {
    return absl::InvalidArgumentError(what + ": the DiT quantizes activations per token (no static scale or smoothing)");
  }
  return std::unique_ptr<DitLinear>(new CpuDitW8A8Linear(linear));
}

absl::StatusOr<std::unique_ptr<DitConv>> CpuDitOps::PrepareConv2d(const TensorView& weight, const TensorView* bias) {
  if (auto s = CheckFloatTensor(weight); !s.ok()) return s;
  if (weight.shape.size() != 4 || weight.shape[2] != weight.shape[3] || weight.shape[2] % 2 != 1) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", weight.name, "\" has shape ", weight.ShapeString(),
                                                   "; expected [out, in, k, k] with k odd"));
  }
  const int64_t out = weight.shape[0], in = weight.shape[1], k = weight.shape[2];
  std::vector<float> b;
  if (bias != nullptr) {
    if (auto s = CheckFloatTensor(*bias); !s.ok()) return s;
    if (bias->shape != std::vector<int64_t>{out}) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", bias->name, "\" has shape ", bias->ShapeString(),
                                                     "; expected [", out, "] (the bias of \"", weight.name, "\")"));
    }
    b = ToFloat(*bias);
  }
  // [out, in, ky, kx] -> [out, ky, kx, in].
  const std::vector<float> w = ToFloat(weight);
  std::vector<float> permuted(w.size());
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t c = 0; c < in; ++c) {
      for (int64_t t = 0; t < k * k; ++t) permuted[(o * k * k + t) * in + c] = w[(o * in + c) * k * k + t];
    }
  }
  return std::unique_ptr<DitConv>(
      new CpuDitConv(int32_t(out), int32_t(in), int32_t(k), std::move(permuted), std::move(b)));
}

absl::StatusOr<std::unique_ptr<DitTable>> CpuDitOps::UploadTable(const TensorView& table, int64_t rows) {
  if (auto s = CheckFloatTensor(table); !s.ok()) return s;
  if (rows == 0) rows = table.shape[0];
  if (rows <= 0 || table.numel() % rows != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", table.name, "\" ", table.ShapeString(), " is not ", rows, " rows"));
  }
  return std::unique_ptr<DitTable>(new CpuDitTable(rows, table.numel() / rows, ToFloat(table)));
}

absl::StatusOr<std::unique_ptr<DitTable>> CpuDitOps::UploadTable(absl::Span<const float> values, int64_t rows,
                                                                 int64_t cols) {
  if (rows <= 0 || cols <= 0 || int64_t(values.size()) != rows * cols) {
    return absl::InvalidArgumentError(absl::StrCat("table of ", values.size(), " values is not ", rows, " x ", cols));
  }
  return std::unique_ptr<DitTable>(new CpuDitTable(rows, cols, std::vector<float>(values.begin(), values.end())));
}

size_t CpuDitOps::workspace_bytes() const {
  const auto bytes = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
  size_t total = bytes(timesteps_) + bytes(labels_) + bytes(scores_) + bytes(inv_sums_) + bytes(full_windows_) +
                 bytes(columns_) + bytes(group_stats_) + bytes(quantized_rows_) + bytes(row_scales_);
  for (const auto& [slot, values] : scratch_) total += bytes(values);
  for (const auto& [slot, quantized] : quantized_scratch_) total += bytes(quantized.codes) + bytes(quantized.scales);
  return total;
}

absl::Status CpuDitOps::BeginStep(const DitStep& step) {
  if (step.labels.size() != step.timesteps.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dit step: ", step.timesteps.size(), " timesteps but ", step.labels.size(), " labels"));
  }
  batch_ = step.batch();
  timesteps_.assign(step.timesteps.begin(), step.timesteps.end());
  labels_.assign(step.labels.begin(), step.labels.end());
  return absl::OkStatus();
}

int64_t CpuDitOps::RowsPerSample(int64_t rows) const {
  CHECK(batch_ > 0 && rows % batch_ == 0) << rows << " rows in a step of " << batch_ << " samples";
  return rows / batch_;
}

Tensor CpuDitOps::Scratch(int slot, int64_t rows, int64_t cols) {
  auto& buffer = scratch_[slot];
  const size_t need = size_t(std::max<int64_t>(rows, 1)) * size_t(std::max<int64_t>(cols, 1));
  if (buffer.size() < need) buffer.resize(need);
  return Tensor{buffer.data(), DType::kF32, rows, cols, cols};
}

Tensor CpuDitOps::QuantizedScratch(int slot, int64_t rows, int64_t cols, DType codes) {
  CHECK(codes == DType::kI8 || codes == DType::kF8E4M3) << DTypeSafetensorsName(codes) << " is not a code type";
  QuantizedSlot& buffer = quantized_scratch_[slot];
  const int64_t stride = (std::max<int64_t>(cols, 1) + 15) / 16 * 16;
  const size_t need = size_t(std::max<int64_t>(rows, 1)) * size_t(stride);
  if (buffer.codes.size() < need) buffer.codes.resize(need);
  if (buffer.scales.size() < size_t(std::max<int64_t>(rows, 1))) buffer.scales.resize(size_t(std::max<int64_t>(rows, 1)));
  Tensor t{buffer.codes.data(), codes, rows, cols, stride};
  t.row_scales = buffer.scales.data();
  return t;
}

void CpuDitOps::CopyFromHost(const float* src, Tensor dst) {
  for (int64_t r = 0; r < dst.rows; ++r) std::memcpy(F(dst) + r * dst.stride, src + r * dst.cols, dst.cols * 4);
}

void CpuDitOps::ReadToHost(Tensor src, float* dst) {
  for (int64_t r = 0; r < src.rows; ++r) std::memcpy(dst + r * src.cols, F(src) + r * src.stride, src.cols * 4);
}

namespace {

kernels::ActivationQuant CodeType(DType codes) {
  return codes == DType::kF8E4M3 ? kernels::ActivationQuant::kFp8E4M3 : kernels::ActivationQuant::kInt8;
}

// out = x W^T + b by quant_gemm.h's references: each row's activations
// quantized (dynamic per-token scale), or x's codes and scales when a
// producer quantized it, then the quantized GEMM and its epilogue. Every row
// on its own, so batch invariance holds.
void LinearW8A8(Tensor x, const CpuDitW8A8Linear& w, Tensor out, std::vector<uint8_t>* codes,
                std::vector<float>* scales) {
  const QuantizedLinear& q = w.linear();
  CHECK_EQ(x.cols, q.in_features);
  CHECK_EQ(out.cols, q.out_features);
  CHECK_EQ(x.rows, out.rows);
  codes->resize(size_t(x.rows) * size_t(q.in_features));
  const float* row_scales = nullptr;
  if (x.dtype == DType::kI8 || x.dtype == DType::kF8E4M3) {
    CHECK(CodeType(x.dtype) == w.type()) << "a " << q.scheme.ToString() << " layer was given "
                                         << DTypeSafetensorsName(x.dtype) << " codes";
    for (int64_t r = 0; r < x.rows; ++r) {
      std::memcpy(codes->data() + r * q.in_features, static_cast<const uint8_t*>(x.data) + r * x.stride,
                  size_t(q.in_features));
    }
    row_scales = x.row_scales;
  } else {
    scales->resize(size_t(x.rows));
    kernels::ActivationQuantParams a;
    a.type = w.type();
    a.rows = x.rows;
    a.k = q.in_features;
    a.x_stride = x.stride;
    kernels::QuantizeActivationsReference(a, F(x), codes->data(), scales->data());
    row_scales = scales->data();
  }
  kernels::W8A8GemmParams g;
  g.type = w.type();
  g.rows = x.rows;
  g.n = q.out_features;
  g.k = q.in_features;
  g.y_stride = out.stride;
  kernels::W8A8GemmReference(g, codes->data(), row_scales, q.weight.data(), q.scales.data(),
                             q.bias.empty() ? nullptr : q.bias.data(), F(out));
}

}  // namespace

void CpuDitOps::Linear(Tensor x, const DitLinear& weight, Tensor out) {
  if (IsW8A8(weight.scheme().scheme)) {
    LinearW8A8(x, static_cast<const CpuDitW8A8Linear&>(weight), out, &quantized_rows_, &row_scales_);
    return;
  }
  const auto& w = static_cast<const CpuDitLinear&>(weight);
  CHECK_EQ(x.cols, w.in_features());
  CHECK_EQ(out.cols, w.out_features());
  CHECK_EQ(x.rows, out.rows);
  // The bias goes in first and the GEMM accumulates onto it (beta 1), as
  // PyTorch's addmm does; that also spares OpenBLAS a pass zeroing C.
  const bool has_bias = !w.bias().empty();
  if (has_bias) {
    for (int64_t r = 0; r < out.rows; ++r) std::memcpy(F(out) + r * out.stride, w.bias().data(), out.cols * 4);
  }
  const int64_t per_sample = RowsPerSample(x.rows);
  for (int64_t r = 0; r < x.rows; r += per_sample) {
    GemmNT(per_sample, w.out_features(), w.in_features(), 1.0f, F(x) + r * x.stride, x.stride, w.weight(),
           w.in_features(), has_bias ? 1.0f : 0.0f, F(out) + r * out.stride, out.stride);
  }
}

void CpuDitOps::LinearSamples(Tensor x, int64_t samples, const DitLinear& weight, Tensor out) {
  CHECK(samples > 0 && x.rows % samples == 0) << x.rows << " rows for " << samples << " samples";
  if (IsW8A8(weight.scheme().scheme)) {  // row by row: the sample count does not matter
    LinearW8A8(x, static_cast<const CpuDitW8A8Linear&>(weight), out, &quantized_rows_, &row_scales_);
    return;
  }
  const auto& w = static_cast<const CpuDitLinear&>(weight);
  CHECK_EQ(x.cols, w.in_features());
  CHECK_EQ(out.cols, w.out_features());
  CHECK_EQ(x.rows, out.rows);
  const bool has_bias = !w.bias().empty();
  if (has_bias) {
    for (int64_t r = 0; r < out.rows; ++r) std::memcpy(F(out) + r * out.stride, w.bias().data(), out.cols * 4);
  }
  const int64_t per_sample = x.rows / samples;
  for (int64_t r = 0; r < x.rows; r += per_sample) {
    GemmNT(per_sample, w.out_features(), w.in_features(), 1.0f, F(x) + r * x.stride, x.stride, w.weight(),
           w.in_features(), has_bias ? 1.0f : 0.0f, F(out) + r * out.stride, out.stride);
  }
}

absl::StatusOr<std::unique_ptr<DitBuffer>> CpuDitOps::AllocateBuffer(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    return absl::InvalidArgumentError(absl::StrCat("buffer of ", rows, " x ", cols));
  }
  return std::unique_ptr<DitBuffer>(new CpuDitBuffer(rows, cols));
}

void CpuDitOps::CopySamples(Tensor src, absl::Span<const int32_t> from, Tensor dst, absl::Span<const int32_t> to,
                            int64_t rows_per_sample) {
  CHECK_EQ(from.size(), to.size());
  CHECK_EQ(src.cols, dst.cols);
  for (size_t i = 0; i < from.size(); ++i) {
    CHECK(from[i] >= 0 && (from[i] + 1) * rows_per_sample <= src.rows) << "sample " << from[i] << " of src";
    CHECK(to[i] >= 0 && (to[i] + 1) * rows_per_sample <= dst.rows) << "sample " << to[i] << " of dst";
    for (int64_t r = 0; r < rows_per_sample; ++r) {
      std::memmove(F(dst) + (to[i] * rows_per_sample + r) * dst.stride,
                   F(src) + (from[i] * rows_per_sample + r) * src.stride, size_t(src.cols) * 4);
    }
  }
}

void CpuDitOps::Subtract(Tensor x, Tensor y, Tensor out) {
  CHECK(x.rows == y.rows && x.rows == out.rows && x.cols == y.cols && x.cols == out.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* a = F(x) + r * x.stride;
    const float* b = F(y) + r * y.stride;
    float* o = F(out) + r * out.stride;
    for (int64_t c = 0; c < x.cols; ++c) o[c] = a[c] - b[c];
  }
}

void CpuDitOps::Patchify(Tensor images, const DitPatchGeometry& g, Tensor patches) {
  const int64_t tokens = g.tokens();
  const int32_t p = g.patch_size, size = g.image_size;
  CHECK_EQ(images.cols, g.pixels());
  CHECK_EQ(patches.rows, images.rows * tokens);
  CHECK_EQ(patches.cols, int64_t(g.channels) * p * p);
  for (int64_t b = 0; b < images.rows; ++b) {
    const float* image = F(images) + b * images.stride;
    for (int32_t r = 0; r < g.grid(); ++r) {
      for (int32_t c = 0; c < g.grid(); ++c) {
        float* dst = F(patches) + (b * tokens + int64_t(r) * g.grid() + c) * patches.stride;
        for (int32_t ch = 0; ch < g.channels; ++ch) {
          for (int32_t i = 0; i < p; ++i) {
            const float* src = image + (int64_t(ch) * size + r * p + i) * size + c * p;
            std::memcpy(dst + (int64_t(ch) * p + i) * p, src, p * sizeof(float));
          }
        }
      }
    }
  }
}

void CpuDitOps::AddPositions(Tensor x, const DitTable& table) {
  const auto& t = static_cast<const CpuDitTable&>(table);
  CHECK_EQ(x.cols, t.cols());
  CHECK_EQ(x.rows % t.rows(), 0);
  for (int64_t r = 0; r < x.rows; ++r) {
    float* row = F(x) + r * x.stride;
    const float* pos = t.row(r % t.rows());
#pragma omp simd
    for (int64_t c = 0; c < x.cols; ++c) row[c] += pos[c];
  }
}

void CpuDitOps::TimestepEmbedding(double max_period, double freq_shift, Tensor out) {
  CHECK_EQ(out.rows, int64_t(timesteps_.size()));
  CHECK_EQ(out.cols % 2, 0);
  const int64_t half = out.cols / 2;
  const double log_period = std::log(max_period);
  for (int64_t b = 0; b < out.rows; ++b) {
    float* row = F(out) + b * out.stride;
    for (int64_t i = 0; i < half; ++i) {
      // The reference's order: (-ln(P) * i) / (h - shift), then exp.
      const double freq = std::exp(-log_period * double(i) / (double(half) - freq_shift));
      const double arg = double(timesteps_[b]) * freq;
      row[i] = static_cast<float>(std::cos(arg));
      row[half + i] = static_cast<float>(std::sin(arg));
    }
  }
}

void CpuDitOps::EmbedClasses(const DitTable& table, Tensor out) {
  const auto& t = static_cast<const CpuDitTable&>(table);
  CHECK_EQ(out.rows, int64_t(labels_.size()));
  CHECK_EQ(out.cols, t.cols());
  for (int64_t b = 0; b < out.rows; ++b) {
    CHECK(labels_[b] >= 0 && labels_[b] < t.rows()) << "class " << labels_[b] << " outside the table";
    std::memcpy(F(out) + b * out.stride, t.row(labels_[b]), t.cols() * sizeof(float));
  }
}

void CpuDitOps::Add(Tensor x, Tensor y) {
  CHECK_EQ(x.rows, y.rows);
  CHECK_EQ(x.cols, y.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    float* a = F(x) + r * x.stride;
    const float* b = F(y) + r * y.stride;
    for (int64_t c = 0; c < x.cols; ++c) a[c] += b[c];
  }
}

void CpuDitOps::Silu(Tensor x, Tensor out) {
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* in = F(x) + r * x.stride;
    float* o = F(out) + r * out.stride;
    for (int64_t c = 0; c < x.cols; ++c) o[c] = in[c] / (1.0f + std::exp(-in[c]));
  }
}

void CpuDitOps::GeluTanh(Tensor x) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  for (int64_t r = 0; r < x.rows; ++r) {
    float* row = F(x) + r * x.stride;
#pragma omp simd
    for (int64_t c = 0; c < x.cols; ++c) {
      // 0.5 v (1 + tanh(u)) = v / (1 + exp(-2u)): the same function with one
      // exponential (tanhf is a slow scalar call) and no cancellation in
      // 1 + tanh(u) for negative u.
      const float v = row[c];
      const float u = k * (v + 0.044715f * v * v * v);
      row[c] = v / (1.0f + FastExp(-2.0f * u));
    }
  }
}

void CpuDitOps::LayerNormModulate(Tensor x, Tensor shift, Tensor scale, float eps, Tensor out) {
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  CHECK_EQ(shift.cols, x.cols);
  CHECK_EQ(scale.cols, x.cols);
  CHECK_EQ(shift.rows, scale.rows);
  CHECK(shift.rows > 0 && x.rows % shift.rows == 0) << x.rows << " rows for " << shift.rows << " samples";
  CHECK(x.data != out.data);
  const int64_t tokens = x.rows / shift.rows;
  const int64_t n = x.cols;
  const bool quantized = out.dtype == DType::kI8 || out.dtype == DType::kF8E4M3;
  std::vector<float> row(quantized ? size_t(n) : 0);
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* in = F(x) + r * x.stride;
    const float* sh = F(shift) + (r / tokens) * shift.stride;
    const float* sc = F(scale) + (r / tokens) * scale.stride;
    // A quantized out: the row in fp32 first, then its codes and scale.
    float* o = quantized ? row.data() : F(out) + r * out.stride;
    // Two passes with float64 sums: the mean, then the biased variance about it.
    double mean = 0.0;
#pragma omp simd reduction(+ : mean)
    for (int64_t c = 0; c < n; ++c) mean += in[c];
    mean /= double(n);
    double var = 0.0;
#pragma omp simd reduction(+ : var)
    for (int64_t c = 0; c < n; ++c) var += (in[c] - mean) * (in[c] - mean);
    var /= double(n);
    const float mean_f = static_cast<float>(mean);
    const float rstd = static_cast<float>(1.0 / std::sqrt(var + double(eps)));
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) o[c] = (in[c] - mean_f) * rstd * (1.0f + sc[c]) + sh[c];
    if (quantized) {
      kernels::ActivationQuantParams a;
      a.type = CodeType(out.dtype);
      a.rows = 1;
      a.k = n;
      a.x_stride = n;
      kernels::QuantizeActivationsReference(a, o, static_cast<uint8_t*>(out.data) + r * out.stride,
                                            out.row_scales + r);
    }
  }
}

void CpuDitOps::Attention(Tensor qkv, const DitAttentionParams& p, Tensor out) {
  const int64_t tokens = RowsPerSample(qkv.rows);
  full_windows_.assign(size_t(qkv.rows / tokens), -1);
  WindowAttention(qkv, p, full_windows_, out);
}

void CpuDitOps::WindowAttention(Tensor qkv, const DitAttentionParams& p, absl::Span<const int32_t> windows,
                                Tensor out) {
  const int64_t width = int64_t(p.num_heads) * p.head_dim;
  const int64_t batch = int64_t(windows.size());
  CHECK(batch > 0 && qkv.rows % batch == 0) << qkv.rows << " rows for " << batch << " samples";
  const int64_t tokens = qkv.rows / batch;
  CHECK_EQ(qkv.cols, 3 * width);
  CHECK_EQ(out.rows, qkv.rows);
  CHECK_EQ(out.cols, width);
  scores_.resize(size_t(tokens) * tokens);
  inv_sums_.resize(size_t(tokens));
  float* s = scores_.data();
  for (int64_t b = 0; b < batch; ++b) {
    const float* base = F(qkv) + b * tokens * qkv.stride;
    float* o = F(out) + b * tokens * out.stride;
    for (int32_t h = 0; h < p.num_heads; ++h) {
      const float* q = base + int64_t(h) * p.head_dim;
      const float* k = q + width;
      const float* v = q + 2 * width;
      // scores = scale * q k^T  [tokens, tokens]
      GemmNT(tokens, tokens, p.head_dim, p.scale, q, qkv.stride, k, qkv.stride, 0.0f, s, tokens);
      // Softmax without the division: out_h = (e^(s - max) v) / sum, the
      // row scale applied to the [tokens, head_dim] product instead.
      const int64_t window = windows[size_t(b)];
      for (int64_t i = 0; i < tokens; ++i) {
        float* row = s + i * tokens;
        // Keys [lo, hi): every key, or the band |i - j| <= window (the
        // others weigh exactly 0).
        const int64_t lo = window < 0 ? 0 : std::max<int64_t>(0, i - window);
        const int64_t hi = window < 0 ? tokens : std::min<int64_t>(tokens, i + window + 1);
        float max_score = -INFINITY;
#pragma omp simd reduction(max : max_score)
        for (int64_t j = lo; j < hi; ++j) max_score = row[j] > max_score ? row[j] : max_score;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = lo; j < hi; ++j) {
          row[j] = FastExp(row[j] - max_score);
          sum += row[j];
        }
        for (int64_t j = 0; j < lo; ++j) row[j] = 0.0f;
        for (int64_t j = hi; j < tokens; ++j) row[j] = 0.0f;
        inv_sums_[i] = 1.0f / sum;
      }
      float* oh = o + int64_t(h) * p.head_dim;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(tokens), p.head_dim, int(tokens), 1.0f, s,
                  int(tokens), v, int(qkv.stride), 0.0f, oh, int(out.stride));
      for (int64_t i = 0; i < tokens; ++i) {
        float* row = oh + i * out.stride;
        const float inv = inv_sums_[i];
#pragma omp simd
        for (int32_t d = 0; d < p.head_dim; ++d) row[d] *= inv;
      }
    }
  }
}

void CpuDitOps::GatedAdd(Tensor x, Tensor y, Tensor gate) {
  CHECK_EQ(x.rows, y.rows);
  CHECK_EQ(x.cols, y.cols);
  CHECK_EQ(gate.cols, x.cols);
  CHECK(gate.rows > 0 && x.rows % gate.rows == 0);
  const int64_t tokens = x.rows / gate.rows;
  for (int64_t r = 0; r < x.rows; ++r) {
    float* a = F(x) + r * x.stride;
    const float* b = F(y) + r * y.stride;
    const float* g = F(gate) + (r / tokens) * gate.stride;
#pragma omp simd
    for (int64_t c = 0; c < x.cols; ++c) a[c] += g[c] * b[c];
  }
}

void CpuDitOps::Unpatchify(Tensor patches, const DitPatchGeometry& g, int32_t keep_channels, Tensor images) {
  const int64_t tokens = g.tokens();
  const int32_t p = g.patch_size, size = g.image_size, channels = g.channels;
  CHECK(keep_channels > 0 && keep_channels <= channels);
  CHECK_EQ(patches.cols, int64_t(p) * p * channels);
  CHECK_EQ(patches.rows, images.rows * tokens);
  CHECK_EQ(images.cols, int64_t(keep_channels) * size * size);
  for (int64_t b = 0; b < images.rows; ++b) {
    float* image = F(images) + b * images.stride;
    for (int32_t r = 0; r < g.grid(); ++r) {
      for (int32_t c = 0; c < g.grid(); ++c) {
        const float* src = F(patches) + (b * tokens + int64_t(r) * g.grid() + c) * patches.stride;
        for (int32_t i = 0; i < p; ++i) {
          for (int32_t j = 0; j < p; ++j) {
            for (int32_t ch = 0; ch < keep_channels; ++ch) {
              image[(int64_t(ch) * size + r * p + i) * size + c * p + j] = src[(int64_t(i) * p + j) * channels + ch];
            }
          }
        }
      }
    }
  }
}

void CpuDitOps::Conv2d(Tensor x, const DitImageShape& shape, const DitConv& conv, Tensor out) {
  const auto& c = static_cast<const CpuDitConv&>(conv);
  const int64_t pixels = shape.pixels();
  CHECK_EQ(x.cols, c.in_channels());
  CHECK_EQ(out.cols, c.out_channels());
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(RowsPerSample(x.rows), pixels);
  CHECK(x.data != out.data);
  const int32_t k = c.kernel(), radius = k / 2;
  const int64_t in = c.in_channels(), cols = int64_t(k) * k * in;
  const bool has_bias = !c.bias().empty();
  if (k > 1) columns_.resize(size_t(std::min(pixels, kConvChunkPixels)) * size_t(cols));
  for (int64_t b = 0; b < batch_; ++b) {
    const float* image = F(x) + b * pixels * x.stride;
    float* result = F(out) + b * pixels * out.stride;
    for (int64_t p0 = 0; p0 < pixels; p0 += kConvChunkPixels) {
      const int64_t count = std::min(kConvChunkPixels, pixels - p0);
      const float* a = image + p0 * x.stride;
      int64_t lda = x.stride;
      if (k > 1) {
        // im2col: row p holds the k x k neighbourhood of pixel p0 + p,
        // (ky, kx, channel) in order, zeros outside the image.
        for (int64_t p = 0; p < count; ++p) {
          const int64_t y = (p0 + p) / shape.width, xx = (p0 + p) % shape.width;
          float* row = columns_.data() + p * cols;
          for (int32_t ky = 0; ky < k; ++ky) {
            for (int32_t kx = 0; kx < k; ++kx) {
              float* dst = row + (int64_t(ky) * k + kx) * in;
              const int64_t sy = y + ky - radius, sx = xx + kx - radius;
              if (sy < 0 || sy >= shape.height || sx < 0 || sx >= shape.width) {
                std::memset(dst, 0, size_t(in) * sizeof(float));
              } else {
                std::memcpy(dst, image + (sy * shape.width + sx) * x.stride, size_t(in) * sizeof(float));
              }
            }
          }
        }
        a = columns_.data();
        lda = cols;
      }
      float* o = result + p0 * out.stride;
      if (has_bias) {
        for (int64_t r = 0; r < count; ++r) std::memcpy(o + r * out.stride, c.bias().data(), out.cols * 4);
      }
      GemmNT(count, c.out_channels(), cols, 1.0f, a, lda, c.weight(), cols, has_bias ? 1.0f : 0.0f, o, out.stride);
    }
  }
}

void CpuDitOps::GroupNorm(Tensor x, int32_t groups, float eps, const DitTable& affine, bool silu, Tensor out) {
  const auto& t = static_cast<const CpuDitTable&>(affine);
  const int64_t channels = x.cols;
  CHECK(groups > 0 && channels % groups == 0) << groups << " groups of " << channels << " channels";
  CHECK_EQ(t.rows(), 2);
  CHECK_EQ(t.cols(), channels);
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  const int64_t pixels = RowsPerSample(x.rows);
  const int64_t per_group = channels / groups;
  const double count = double(pixels) * double(per_group);
  const float* gamma = t.row(0);
  const float* beta = t.row(1);
  group_stats_.resize(size_t(2 * groups));
  for (int64_t b = 0; b < batch_; ++b) {
    const float* in = F(x) + b * pixels * x.stride;
    float* o = F(out) + b * pixels * out.stride;
    // Two passes in float64 per group: the mean, then the biased variance.
    for (int32_t g = 0; g < groups; ++g) {
      double sum = 0.0;
      for (int64_t p = 0; p < pixels; ++p) {
        const float* v = in + p * x.stride + g * per_group;
        for (int64_t c = 0; c < per_group; ++c) sum += v[c];
      }
      const double mean = sum / count;
      double var = 0.0;
      for (int64_t p = 0; p < pixels; ++p) {
        const float* v = in + p * x.stride + g * per_group;
        for (int64_t c = 0; c < per_group; ++c) var += (v[c] - mean) * (v[c] - mean);
      }
      group_stats_[2 * g] = static_cast<float>(mean);
      group_stats_[2 * g + 1] = static_cast<float>(1.0 / std::sqrt(var / count + double(eps)));
    }
    for (int64_t p = 0; p < pixels; ++p) {
      const float* v = in + p * x.stride;
      float* w = o + p * out.stride;
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t g = c / per_group;
        float y = (v[c] - group_stats_[2 * g]) * group_stats_[2 * g + 1] * gamma[c] + beta[c];
        if (silu) y = y / (1.0f + std::exp(-y));
        w[c] = y;
      }
    }
  }
}

void CpuDitOps::Upsample2x(Tensor x, const DitImageShape& shape, Tensor out) {
  const int64_t pixels = shape.pixels();
  CHECK_EQ(RowsPerSample(x.rows), pixels);
  CHECK_EQ(out.rows, 4 * x.rows);
  CHECK_EQ(out.cols, x.cols);
  const int64_t width = shape.width, out_width = 2 * width;
  for (int64_t b = 0; b < batch_; ++b) {
    const float* in = F(x) + b * pixels * x.stride;
    float* o = F(out) + b * 4 * pixels * out.stride;
    for (int64_t y = 0; y < 2 * shape.height; ++y) {
      for (int64_t xx = 0; xx < out_width; ++xx) {
        std::memcpy(o + (y * out_width + xx) * out.stride, in + ((y / 2) * width + xx / 2) * x.stride,
                    size_t(x.cols) * sizeof(float));
      }
    }
  }
}

}  // namespace tern::runtime
