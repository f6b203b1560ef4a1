#include "runtime/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/activation/silu_mul.h"
#include "kernels/attention/kv_quant.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/common/float8.h"
#include "kernels/gemm/quant_gemm.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "runtime/backend/attention_span_tables.h"
#include "runtime/backend/backend_common.h"
#include "runtime/base/check.h"

namespace tern::runtime {
namespace {

class CpuWeight final : public DeviceWeight {
 public:
  CpuWeight(std::vector<int64_t> shape, std::vector<float> values)
      : shape_(std::move(shape)), values_(std::move(values)) {}
  const std::vector<int64_t>& shape() const override { return shape_; }
  size_t bytes() const override { return values_.size() * sizeof(float); }
  const float* data() const { return values_.data(); }

 private:
  std::vector<int64_t> shape_;
  std::vector<float> values_;
};

// Per pool (one per layer of a KV-cache group: KvCacheSpec::group_layers) K
// and V of the spec's element type (fp32, or bytes for fp8 and int8) and,
// for int8, the token scales beside them; fp8 head scales per layer. Layer l
// lives in pool LayerSlot(l).
class CpuKvCache final : public KvCache {
 public:
  explicit CpuKvCache(const KvCacheSpec& spec) : spec_(spec) {
    // calloc: the kernel hands out zero pages lazily, so a large cache costs
    // resident memory only as blocks are used.
    const size_t slots = size_t(spec.num_blocks) * spec.block_size;
    const size_t per_layer = slots * spec.num_kv_heads * spec.head_dim * element_bytes();
    const size_t scales_per_layer = spec.dtype == KvCacheDtype::kInt8 ? slots * spec.num_kv_heads : 0;
    for (int32_t pool = 0; pool < spec.group_layers(); ++pool) {
      for (int side = 0; side < 2; ++side) {
        data_[side].emplace_back(static_cast<uint8_t*>(std::calloc(per_layer, 1)));
        CHECK(data_[side].back() != nullptr) << "out of memory for the KV cache";
        if (scales_per_layer > 0) {
          scales_[side].emplace_back(static_cast<uint8_t*>(std::calloc(scales_per_layer, sizeof(float))));
          CHECK(scales_[side].back() != nullptr) << "out of memory for the KV cache scales";
        }
      }
    }
    for (int32_t l = 0; l < spec.num_layers; ++l) {
      for (int side = 0; side < 2; ++side) {
        if (spec.dtype == KvCacheDtype::kFp8E4M3) {
          for (int32_t h = 0; h < spec.num_kv_heads; ++h) head_scales_[side].push_back(spec.HeadScale(side == 1, l, h));
        }
      }
    }
  }
  const KvCacheSpec& spec() const override { return spec_; }
  void CopyBlocks(const std::vector<int32_t>& src, const std::vector<int32_t>& dst) override {
    CHECK_EQ(src.size(), dst.size());
    const size_t block = size_t(spec_.block_size) * spec_.num_kv_heads * spec_.head_dim * element_bytes();
    const size_t scale_block = size_t(spec_.block_size) * spec_.num_kv_heads * sizeof(float);
    for (int32_t pool = 0; pool < spec_.group_layers(); ++pool) {
      for (int side = 0; side < 2; ++side) {
        for (size_t i = 0; i < src.size(); ++i) {
          uint8_t* d = data_[side][pool].get();
          std::memcpy(d + dst[i] * block, d + src[i] * block, block);
          if (!scales_[side].empty()) {
            uint8_t* sc = scales_[side][pool].get();
            std::memcpy(sc + dst[i] * scale_block, sc + src[i] * scale_block, scale_block);
          }
        }
      }
    }
  }
  size_t element_bytes() const { return spec_.quantized() ? 1 : sizeof(float); }
  // side 0: K, 1: V; the pool of `layer`.
  uint8_t* data(int side, int32_t layer) const { return data_[side][spec_.LayerSlot(layer)].get(); }
  float* k(int32_t layer) const { return reinterpret_cast<float*>(data(0, layer)); }
  float* v(int32_t layer) const { return reinterpret_cast<float*>(data(1, layer)); }
  // int8: [slots, num_kv_heads] token scales; fp8: [num_kv_heads] head scales.
  float* scales(int side, int32_t layer) const {
    if (spec_.dtype == KvCacheDtype::kInt8) return reinterpret_cast<float*>(scales_[side][spec_.LayerSlot(layer)].get());
    return const_cast<float*>(head_scales_[side].data()) + size_t(layer) * spec_.num_kv_heads;
  }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  KvCacheSpec spec_;
  std::vector<std::unique_ptr<uint8_t[], Free>> data_[2], scales_[2];
  std::vector<float> head_scales_[2];  // fp8: [num_layers * num_kv_heads]
};

kernels::KvElement ElementOf(KvCacheDtype dtype) {
  switch (dtype) {
    case KvCacheDtype::kFp8E4M3:
      return kernels::KvElement::kFp8E4M3;
    case KvCacheDtype::kInt8:
      return kernels::KvElement::kInt8;
    case KvCacheDtype::kAuto:
      break;
  }
  return kernels::KvElement::kNative;
}

std::vector<float> ToFloat(const TensorView& t) {
  std::vector<float> out(t.numel());
  ConvertToFloat(t.dtype, t.data, out.size(), out.data());
  return out;
}

float* F(Tensor t) {
  CHECK(t.dtype == DType::kF32) << "cpu backend computes in fp32";
  return static_cast<float*>(t.data);
}

// y[rows, out] = x[rows, in] W^T + b
void Gemm(Tensor x, const float* w, int64_t out_features, int64_t in_features, const std::vector<float>& bias,
          Tensor y) {
  CHECK_EQ(x.cols, in_features);
  CHECK_EQ(y.cols, out_features);
  CHECK_EQ(x.rows, y.rows);
  if (x.rows == 0) return;
  if (x.rows == 1) {
    // Decode: a matrix-vector product. OpenBLAS's GEMV splits the rows of W
    // across threads and streams them; its GEMM path for M == 1 does not.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, int(out_features), int(in_features), 1.0f, w, int(in_features),
                F(x), 1, 0.0f, F(y), 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(x.rows), int(out_features), int(in_features),
                1.0f, F(x), int(x.stride), w, int(in_features), 0.0f, F(y), int(y.stride));
  }
  if (!bias.empty()) {
    for (int64_t r = 0; r < y.rows; ++r) {
      float* row = F(y) + r * y.stride;
      for (int64_t c = 0; c < out_features; ++c) row[c] += bias[c];
    }
  }
}

// A linear layer on the CPU. Apply borrows the backend's working memory.
class CpuLinear : public LinearWeight {
 public:
  CpuLinear(int64_t out, int64_t in, LinearScheme scheme, std::vector<float> bias)
      : out_(out), in_(in), scheme_(scheme), bias_(std::move(bias)) {}
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  LinearScheme scheme() const override { return scheme_; }
  // y = x W^T + b.
  virtual void Apply(Tensor x, Tensor y, CpuLinearScratch& scratch) const = 0;

 protected:
  int64_t out_, in_;
  LinearScheme scheme_;
  std::vector<float> bias_;  // [out] or empty
};

// fp32 weights: dense layers, and weight-only layers dequantized once (the
// reference of W8A16/W4A16 is a GEMM over the dequantized weight).
class CpuFloatLinear final : public CpuLinear {
 public:
  CpuFloatLinear(int64_t out, int64_t in, LinearScheme scheme, std::vector<float> weight, std::vector<float> bias)
      : CpuLinear(out, in, scheme, std::move(bias)), weight_(std::move(weight)) {}
  size_t bytes() const override { return (weight_.size() + bias_.size()) * sizeof(float); }
  void Apply(Tensor x, Tensor y, CpuLinearScratch&) const override {
    CHECK(x.dtype == DType::kF32) << "a " << scheme_.ToString() << " linear takes fp32 activations";
    Gemm(x, weight_.data(), out_, in_, bias_, y);
  }

 private:
  std::vector<float> weight_;  // [out, in]
};

// W8A8: activations quantized per row (or given quantized), products of the
// quantized values, scales in the epilogue (kernels/gemm/quant_gemm.h).
class CpuW8A8Linear final : public CpuLinear {
 public:
  explicit CpuW8A8Linear(const QuantizedLinear& q)
      : CpuLinear(q.out_features, q.in_features, q.scheme, q.bias),
        type_(q.scheme.scheme == WeightScheme::kW8A8Fp8 ? kernels::ActivationQuant::kFp8E4M3
                                                        : kernels::ActivationQuant::kInt8),
        weight_(q.weight.size()),
        w_scales_(q.scales),
        input_scale_(q.input_scale),
        smoothing_(q.input_smoothing) {
    for (size_t i = 0; i < weight_.size(); ++i) weight_[i] = Decode(q.weight[i]);
  }
  // The codes are held decoded to fp32 (the GEMM's operand), so a W8A8
  // layer costs 4 bytes a weight here, as a dense one does.
  size_t bytes() const override {
    return (weight_.size() + w_scales_.size() + smoothing_.size() + bias_.size()) * sizeof(float);
  }

  void Apply(Tensor x, Tensor y, CpuLinearScratch& s) const override {
    CHECK_EQ(x.cols, in_);
    CHECK_EQ(y.cols, out_);
    CHECK_EQ(x.rows, y.rows);
    const int64_t rows = x.rows;
    if (rows == 0) return;
    // The quantized activations as fp32 values (exact) and their row scales.
    s.xf.resize(size_t(rows * in_));
    s.row_scales.resize(size_t(rows));
    if (x.dtype == DType::kF32) {
      s.q.resize(size_t(rows * in_));
      kernels::ActivationQuantParams p{type_, rows, in_, x.stride, input_scale_,
                                       smoothing_.empty() ? nullptr : smoothing_.data()};
      kernels::QuantizeActivationsReference(p, F(x), s.q.data(), s.row_scales.data());
      for (size_t i = 0; i < s.q.size(); ++i) s.xf[i] = Decode(s.q[i]);
    } else {
      CHECK(x.dtype == (type_ == kernels::ActivationQuant::kInt8 ? DType::kI8 : DType::kF8E4M3))
          << "a " << scheme_.ToString() << " linear was given " << DTypeSafetensorsName(x.dtype) << " activations";
      CHECK(x.row_scales != nullptr) << "quantized activations without row scales";
      const auto* q = static_cast<const uint8_t*>(x.data);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < in_; ++i) s.xf[r * in_ + i] = Decode(q[r * x.stride + i]);
        s.row_scales[r] = x.row_scales[r];
      }
    }
    // acc[r, n] = sum_i xq[r, i] * wq[n, i]. fp32 products of these values
    // are exact; INT8 partial sums over at most kExactBlock inputs are
    // integers below 2^24, exact in fp32 in any order, and are added in
    // double, so the INT8 sums are the integers a kernel's int32 sums are.
    s.acc.assign(size_t(rows * out_), 0.0);
    s.partial.resize(size_t(rows * out_));
    const int64_t block = type_ == kernels::ActivationQuant::kInt8 ? kExactBlock : in_;
    for (int64_t k0 = 0; k0 < in_; k0 += block) {
      const int64_t k = std::min(block, in_ - k0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out_), int(k), 1.0f, s.xf.data() + k0,
                  int(in_), weight_.data() + k0, int(in_), 0.0f, s.partial.data(), int(out_));
      for (size_t i = 0; i < s.acc.size(); ++i) s.acc[i] += s.partial[i];
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* out = F(y) + r * y.stride;
      for (int64_t n = 0; n < out_; ++n) {
        out[n] = kernels::W8A8Epilogue(float(s.acc[r * out_ + n]), s.row_scales[r], w_scales_[n],
                                       bias_.empty() ? 0.0f : bias_[n]);
      }
    }
  }

 private:
  static constexpr int64_t kExactBlock = 1024;  // 1024 * 128 * 128 = 2^24
  float Decode(uint8_t b) const {
    return type_ == kernels::ActivationQuant::kInt8 ? float(int8_t(b)) : kernels::Fp8E4M3ToFloat(b);
  }

  kernels::ActivationQuant type_;
  std::vector<float> weight_;    // [out, in] the int8 / e4m3 values as fp32
  std::vector<float> w_scales_;  // [out]
  float input_scale_;            // 0: dynamic
  std::vector<float> smoothing_;  // [in] or empty
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceWeight>> CpuBackend::UploadWeight(const TensorView& tensor) {
  if (!IsFloatDType(tensor.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", tensor.name, "\" has dtype ",
                                                   DTypeSafetensorsName(tensor.dtype), "; expected F32/F16/BF16"));
  }
  return std::unique_ptr<DeviceWeight>(new CpuWeight(tensor.shape, ToFloat(tensor)));
}

absl::StatusOr<std::unique_ptr<DeviceWeight>> CpuBackend::UploadFp32Table(const std::vector<float>& values) {
  return std::unique_ptr<DeviceWeight>(new CpuWeight({int64_t(values.size())}, values));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CpuBackend::PrepareLinear(const TensorView& weight,
                                                                        const TensorView* bias) {
  std::vector<TensorView> biases;
  if (bias != nullptr) biases.push_back(*bias);
  return PrepareFusedLinear({weight}, biases);
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CpuBackend::PrepareFusedLinear(const std::vector<TensorView>& weights,
                                                                            const std::vector<TensorView>& biases) {
  auto shape = CheckFusedLinear(weights, biases);
  if (!shape.ok()) return shape.status();
  std::vector<float> w, b;
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::vector<float> values = ToFloat(weights[i]);
    w.insert(w.end(), values.begin(), values.end());
    if (!biases.empty()) {
      const std::vector<float> bias = ToFloat(biases[i]);
      b.insert(b.end(), bias.begin(), bias.end());
    }
  }
  return std::unique_ptr<LinearWeight>(
      new CpuFloatLinear(shape->out_features, shape->in_features, LinearScheme{}, std::move(w), std::move(b)));
}

absl::Status CpuBackend::SupportsWeightScheme(const LinearScheme&) const { return absl::OkStatus(); }

absl::StatusOr<std::unique_ptr<LinearWeight>> CpuBackend::PrepareQuantizedLinear(const QuantizedLinear& weight) {
  if (auto status = ValidateQuantizedLinear(weight, "quantized linear"); !status.ok()) return status;
  if (IsWeightOnly(weight.scheme.scheme)) {
    return std::unique_ptr<LinearWeight>(new CpuFloatLinear(weight.out_features, weight.in_features, weight.scheme,
                                                            DequantizeLinear(weight), weight.bias));
  }
  return std::unique_ptr<LinearWeight>(new CpuW8A8Linear(weight));
}

absl::StatusOr<std::unique_ptr<KvCache>> CpuBackend::AllocateKvCache(const KvCacheSpec& spec) {
  if (absl::Status status = ValidateKvCacheSpec(spec); !status.ok()) return status;
  return std::unique_ptr<KvCache>(new CpuKvCache(spec));
}

size_t CpuBackend::KvBlockBytes(const KvCacheSpec& spec) const { return KvCacheBlockBytes(spec, sizeof(float)); }

absl::Status CpuBackend::BeginStep(const ForwardBatch& batch) {
  batch_ = &batch;
  return absl::OkStatus();
}

Tensor CpuBackend::Scratch(int slot, int64_t rows, int64_t cols) {
  auto& buffer = scratch_[slot];
  const size_t need = size_t(std::max<int64_t>(rows, 1)) * size_t(std::max<int64_t>(cols, 1));
  if (buffer.size() < need) buffer.resize(need);
  return Tensor{buffer.data(), DType::kF32, rows, cols, cols};
}

void CpuBackend::Embed(const DeviceWeight& table, Tensor out) {
  const auto& w = static_cast<const CpuWeight&>(table);
  const int64_t hidden = w.shape()[1];
  CHECK_EQ(out.cols, hidden);
  CHECK_EQ(out.rows, batch_->num_tokens());
  for (int64_t t = 0; t < out.rows; ++t) {
    std::memcpy(F(out) + t * out.stride, w.data() + int64_t(batch_->token_ids[t]) * hidden, hidden * sizeof(float));
  }
}

void CpuBackend::RmsNorm(Tensor x, const DeviceWeight& weight, float eps, Tensor out) {
  CHECK_EQ(x.cols, out.cols);
  CHECK_EQ(x.rows, out.rows);
  kernels::RmsNormParams p{x.rows, x.cols, x.stride, out.stride, eps};
  kernels::RmsNormReference(p, F(x), static_cast<const CpuWeight&>(weight).data(), F(out));
}

void CpuBackend::Linear(Tensor x, const LinearWeight& weight, Tensor out) {
  static_cast<const CpuLinear&>(weight).Apply(x, out, linear_scratch_);
}

void CpuBackend::Rope(Tensor q, Tensor k, int32_t head_dim, const DeviceWeight& inv_freq) {
  const float* f = static_cast<const CpuWeight&>(inv_freq).data();
  const int32_t* positions = batch_->positions.data();
  kernels::RopeReference({q.rows, q.cols / head_dim, head_dim, q.stride}, positions, f, F(q));
  kernels::RopeReference({k.rows, k.cols / head_dim, head_dim, k.stride}, positions, f, F(k));
}

void CpuBackend::WriteKv(Tensor k, Tensor v, KvCache& cache, int32_t layer) {
  auto& c = static_cast<CpuKvCache&>(cache);
  const auto& spec = c.spec();
  CHECK_EQ(k.cols, int64_t(spec.num_kv_heads) * spec.head_dim);
  const int32_t* slots = batch_->group_slots(spec.LayerGroup(layer));
  if (spec.quantized()) {
    kernels::KvWriteQuantParams p;
    p.element = ElementOf(spec.dtype);
    p.num_tokens = k.rows;
    p.num_kv_heads = spec.num_kv_heads;
    p.head_dim = spec.head_dim;
    p.k_row_stride = k.stride;
    p.v_row_stride = v.stride;
    kernels::WriteKvQuantizedReference(p, F(k), F(v), slots, c.data(0, layer), c.data(1, layer), c.scales(0, layer),
                                       c.scales(1, layer));
    return;
  }
  kernels::WriteKvReference(k.rows, spec.num_kv_heads, spec.head_dim, F(k), k.stride, F(v), v.stride, slots,
                            c.k(layer), c.v(layer));
}

void CpuBackend::Attention(Tensor q, const KvCache& cache, int32_t layer, const AttentionOptions& o, Tensor out) {
  const auto& c = static_cast<const CpuKvCache&>(cache);
  kernels::PagedAttentionParams p;
  p.num_seqs = batch_->num_seqs();
  p.num_heads = o.num_heads;
  p.num_kv_heads = o.num_kv_heads;
  p.head_dim = o.head_dim;
  p.block_size = c.spec().block_size;
  p.scale = o.scale;
  p.sliding_window = o.sliding_window;
  if (o.spans != nullptr) p.spans = static_cast<const HostAttentionSpans*>(o.spans)->Layer(layer);
  p.query_start = batch_->query_start.data();
  p.context_lens = batch_->context_lens.data();
  p.block_indptr = batch_->group_block_indptr(c.spec().LayerGroup(layer));
  p.block_ids = batch_->block_ids.data();
  p.q_row_stride = q.stride;
  p.out_row_stride = out.stride;
  const float* qd = F(q);
  float* od = F(out);
  if (c.spec().quantized()) {
    p.kv_element = ElementOf(c.spec().dtype);
    p.k_scales = c.scales(0, layer);
    p.v_scales = c.scales(1, layer);
#pragma omp parallel for schedule(dynamic, 1)
    for (int32_t s = 0; s < p.num_seqs; ++s) {
      kernels::PagedAttentionQuantizedReference(p, qd, c.data(0, layer), c.data(1, layer), od, s, s + 1);
    }
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    kernels::PagedAttentionReference(p, qd, c.k(layer), c.v(layer), od, s, s + 1);
  }
}

void CpuBackend::SiluMul(Tensor gate_up, Tensor out) {
  const int64_t width = gate_up.cols / 2;
  CHECK_EQ(out.cols, width);
  kernels::SiluMulReference(gate_up.rows, width, F(gate_up), gate_up.stride, F(gate_up) + width, gate_up.stride,
                            F(out), out.stride);
}

void CpuBackend::Add(Tensor x, Tensor y) {
  CHECK_EQ(x.rows, y.rows);
  CHECK_EQ(x.cols, y.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    float* a = F(x) + r * x.stride;
    const float* b = F(y) + r * y.stride;
    for (int64_t c = 0; c < x.cols; ++c) a[c] += b[c];
  }
}

void CpuBackend::GatherLogitRows(Tensor x, Tensor out) {
  CHECK_EQ(out.rows, int64_t(batch_->logits_rows.size()));
  for (int64_t i = 0; i < out.rows; ++i) {
    std::memcpy(F(out) + i * out.stride, F(x) + int64_t(batch_->logits_rows[i]) * x.stride, x.cols * sizeof(float));
  }
}

void CpuBackend::MoeFfn(Tensor x, Tensor router_logits, const MoeWeights& experts, Tensor out) {
  const int64_t num_experts = router_logits.cols;
  const int64_t hidden = x.cols;
  // Route: softmax in fp32, top-k, renormalize (Mixtral).
  CHECK_EQ(router_logits.stride, router_logits.cols);
  const auto routed = RouteTopK(F(router_logits), x.rows, num_experts, experts.top_k);
  for (int64_t r = 0; r < out.rows; ++r) std::fill_n(F(out) + r * out.stride, hidden, 0.0f);
  for (int64_t e = 0; e < num_experts; ++e) {
    const auto& tokens = routed[e];
    if (tokens.empty()) continue;
    const int64_t n = int64_t(tokens.size());
    const auto& gate = static_cast<const CpuLinear&>(*experts.gate[e]);
    const auto& up = static_cast<const CpuLinear&>(*experts.up[e]);
    const auto& down = static_cast<const CpuLinear&>(*experts.down[e]);
    const int64_t inter = gate.out_features();
    moe_in_.resize(n * hidden);
    moe_gate_up_.resize(n * 2 * inter);
    moe_act_.resize(n * inter);
    moe_out_.resize(n * hidden);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&moe_in_[i * hidden], F(x) + tokens[i].first * x.stride, hidden * sizeof(float));
    }
    Tensor in{moe_in_.data(), DType::kF32, n, hidden, hidden};
    Tensor gate_up{moe_gate_up_.data(), DType::kF32, n, 2 * inter, 2 * inter};
    Tensor act{moe_act_.data(), DType::kF32, n, inter, inter};
    Tensor expert_out{moe_out_.data(), DType::kF32, n, hidden, hidden};
    gate.Apply(in, gate_up.Columns(0, inter), linear_scratch_);
    up.Apply(in, gate_up.Columns(inter, inter), linear_scratch_);
    SiluMul(gate_up, act);
    down.Apply(act, expert_out, linear_scratch_);
    for (int64_t i = 0; i < n; ++i) {
      float* dst = F(out) + tokens[i].first * out.stride;
      const float w = tokens[i].second;
      for (int64_t c = 0; c < hidden; ++c) dst[c] += w * moe_out_[i * hidden + c];
    }
  }
}

void CpuBackend::ReadToHost(Tensor tensor, float* out) {
  for (int64_t r = 0; r < tensor.rows; ++r) {
    std::memcpy(out + r * tensor.cols, F(tensor) + r * tensor.stride, tensor.cols * sizeof(float));
  }
}

}  // namespace tern::runtime
