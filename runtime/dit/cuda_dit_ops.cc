#include "runtime/dit/cuda_dit_ops.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/dit/dit_attention.h"
#include "kernels/dit/dit_cache_kernels.h"
#include "kernels/dit/dit_kernels.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/dit/cuda_dit_ops_impl.h"
#include "runtime/dit/cuda_dit_w8a8_linear.h"

namespace tern::runtime {

using namespace cuda_dit;  // NOLINT: the shared internal types of cuda_dit_ops_impl.h

namespace {

// Head dims above the flash kernel's largest (kernels/dit/dit_attention.h)
// run as two GEMMs and a softmax (MatmulAttention) instead of its
// one-warp-per-query fallback: the VAE's mid-block, one head of 512.
constexpr int32_t kMaxFlashHeadDim = 128;

// The LayerNorm + modulate kernels' shapes: x [rows, cols] of shift.rows samples.
kernels::DitNormParams ModulateParams(const Tensor& x, const Tensor& shift, const Tensor& scale, const Tensor& out,
                                      float eps) {
  kernels::DitNormParams p;
  p.rows = x.rows;
  p.cols = x.cols;
  p.tokens = x.rows / shift.rows;
  p.x_stride = x.stride;
  p.shift_stride = shift.stride;
  p.scale_stride = scale.stride;
  p.out_stride = out.stride;
  p.eps = eps;
  return p;
}

bool IsQuantized(const Tensor& t) { return t.dtype == DType::kI8 || t.dtype == DType::kF8E4M3; }

// A QuantizedScratch tensor as the norm kernels' quantized output.
kernels::DitQuantizedRows QuantizedRows(const Tensor& out) {
  kernels::DitQuantizedRows q;
  q.type = out.dtype == DType::kF8E4M3 ? kernels::ActivationQuant::kFp8E4M3 : kernels::ActivationQuant::kInt8;
  q.codes = static_cast<uint8_t*>(out.data);
  q.stride = out.stride;
  q.row_scales = out.row_scales;
  return q;
}

}  // namespace

CudaDitOps::CudaDitOps(std::unique_ptr<Impl> impl, const CudaDitOpsOptions& options)
    : impl_(std::move(impl)), options_(options) {}

CudaDitOps::~CudaDitOps() {
  if (impl_->stream != nullptr) cudaStreamSynchronize(impl_->stream);
}

absl::StatusOr<std::unique_ptr<CudaDitOps>> CudaDitOps::Create(const CudaDitOpsOptions& options) {
  ScalarType type;
  switch (options.compute_dtype) {
    case DType::kF32: type = ScalarType::kF32; break;
    case DType::kF16: type = ScalarType::kF16; break;
    case DType::kBF16: type = ScalarType::kBF16; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("the CUDA DiT ops compute in float32, bfloat16 or float16, not ",
                                                     DTypeSafetensorsName(options.compute_dtype)));
  }
  if (options.gemm_reference_batch < 1) {
    return absl::InvalidArgumentError("gemm_reference_batch must be at least 1");
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError("no CUDA device is visible");
  }
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", count, " visible)"));
  }
  RETURN_IF_CUDA(cudaSetDevice(options.device), "selecting the CUDA device");
  auto impl = std::make_unique<Impl>();
  impl->type = type;
  impl->dtype = options.compute_dtype;
  impl->element_bytes = ElementBytes(type);
  impl->gemm_reference_batch = options.gemm_reference_batch;
  impl->gemm_autotune = options.gemm_autotune;
  impl->w8a8_fp8_fast_accumulation = options.w8a8_fp8_fast_accumulation;
  impl->profile = options.profile;
  impl->graphs_enabled = options.cuda_graphs && !options.profile;
  RETURN_IF_CUDA(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "creating a stream");
  if (cublasLtCreate(&impl->lt) != CUBLAS_STATUS_SUCCESS) return absl::InternalError("cublasLtCreate failed");
  RETURN_IF_CUDA(impl->workspace.Reserve(options.cublas_workspace_bytes), "allocating the cuBLASLt workspace");
  return std::unique_ptr<CudaDitOps>(new CudaDitOps(std::move(impl), options));
}

absl::StatusOr<std::unique_ptr<DitLinear>> CudaDitOps::PrepareLinear(const TensorView& weight,
                                                                    const TensorView* bias) {
  if (auto s = CheckFloatTensor(weight); !s.ok()) return s;
  auto linear = std::make_unique<CudaDitLinear>();
  linear->out = weight.shape[0];
  linear->in = weight.numel() / linear->out;
  if (bias != nullptr) {
    if (auto s = CheckFloatTensor(*bias); !s.ok()) return s;
    if (bias->shape != std::vector<int64_t>{linear->out}) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", bias->name, "\" has shape ", bias->ShapeString(),
                                                     "; expected [", linear->out, "] (the bias of \"", weight.name,
                                                     "\")"));
    }
    if (auto s = impl_->Upload(*bias, &linear->bias); !s.ok()) return s.status();
    linear->has_bias = true;
  }
  if (auto s = impl_->Upload(weight, &linear->weight); !s.ok()) return s.status();
  return std::unique_ptr<DitLinear>(std::move(linear));
}

absl::Status CudaDitOps::CheckWeightScheme(const LinearScheme& scheme) const {
  return CheckCudaDitWeightScheme(scheme, options_.device);
}

absl::StatusOr<std::unique_ptr<DitLinear>> CudaDitOps::PrepareQuantizedLinear(const QuantizedLinear& linear) {
  RETURN_IF_ERROR(CheckWeightScheme(linear.scheme));
  auto made = CudaDitW8A8Linear::Create(linear);
  if (!made.ok()) return made.status();
  return std::unique_ptr<DitLinear>(*std::move(made));
}

absl::StatusOr<std::unique_ptr<DitTable>> CudaDitOps::UploadTable(const TensorView& table, int64_t rows) {
  if (auto s = CheckFloatTensor(table); !s.ok()) return s;
  if (rows == 0) rows = table.shape[0];
  if (rows <= 0 || table.numel() % rows != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", table.name, "\" ", table.ShapeString(), " is not ", rows, " rows"));
  }
  auto t = std::make_unique<CudaDitTable>();
  t->num_rows = rows;
  t->num_cols = table.numel() / rows;
  if (auto s = impl_->Upload(table, &t->values); !s.ok()) return s.status();
  return std::unique_ptr<DitTable>(std::move(t));
}

absl::StatusOr<std::unique_ptr<DitTable>> CudaDitOps::UploadTable(absl::Span<const float> values, int64_t rows,
                                                                  int64_t cols) {
  if (rows <= 0 || cols <= 0 || int64_t(values.size()) != rows * cols) {
    return absl::InvalidArgumentError(absl::StrCat("table of ", values.size(), " values is not ", rows, " x ", cols));
  }
  auto t = std::make_unique<CudaDitTable>();
  t->num_rows = rows;
  t->num_cols = cols;
  if (auto s = impl_->UploadValues(values, &t->values, "computed table"); !s.ok()) return s.status();
  return std::unique_ptr<DitTable>(std::move(t));
}

absl::StatusOr<std::unique_ptr<DitConv>> CudaDitOps::PrepareConv2d(const TensorView& weight, const TensorView* bias) {
  if (auto s = CheckFloatTensor(weight); !s.ok()) return s;
  if (weight.shape.size() != 4 || weight.shape[2] != weight.shape[3] || weight.shape[2] % 2 != 1) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", weight.name, "\" has shape ", weight.ShapeString(),
                                                   "; expected [out, in, k, k] with k odd"));
  }
  auto conv = std::make_unique<CudaDitConv>();
  conv->out = int32_t(weight.shape[0]);
  conv->in = int32_t(weight.shape[1]);
  conv->k = int32_t(weight.shape[2]);
  const int64_t out = conv->out, in = conv->in, taps = int64_t(conv->k) * conv->k;
  conv->gemm.out = out;
  conv->gemm.in = taps * in;
  if (bias != nullptr) {
    if (auto s = CheckFloatTensor(*bias); !s.ok()) return s;
    if (bias->shape != std::vector<int64_t>{out}) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", bias->name, "\" has shape ", bias->ShapeString(),
                                                     "; expected [", out, "] (the bias of \"", weight.name, "\")"));
    }
    if (auto s = impl_->Upload(*bias, &conv->gemm.bias); !s.ok()) return s.status();
    conv->gemm.has_bias = true;
  }
  // [out, in, ky, kx] -> [out, ky, kx, in], im2col's column order.
  std::vector<float> values(weight.numel()), permuted(weight.numel());
  ConvertToFloat(weight.dtype, weight.data, values.size(), values.data());
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t c = 0; c < in; ++c) {
      for (int64_t t = 0; t < taps; ++t) permuted[(o * taps + t) * in + c] = values[(o * in + c) * taps + t];
    }
  }
  if (auto s = impl_->UploadValues(permuted, &conv->gemm.weight, weight.name); !s.ok()) return s.status();
  return std::unique_ptr<DitConv>(std::move(conv));
}

void CudaDitOps::RunLinear(uint64_t op_id, bool gelu, Tensor x, const DitLinear& weight, Tensor out) {
  Impl& m = *impl_;
  // Shapes through the interface: `weight` is a CudaDitLinear or a
  // CudaDitW8A8Linear, and CudaDitLinear is final, so a call through a
  // reference of that type would be bound statically to its own accessors.
  CHECK_EQ(x.cols, weight.in_features());
  CHECK_EQ(out.cols, weight.out_features());
  CHECK_EQ(x.rows, out.rows);
  const bool enqueue = m.Enter(kLinearOp, op_id);
  m.Mix(x);
  m.Mix(reinterpret_cast<uintptr_t>(x.row_scales));
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(&weight));
  CHECK(!IsQuantized(x) || IsW8A8(weight.scheme().scheme)) << "a dense layer was given quantized activations";
  if (!enqueue || x.rows == 0) return;
  if (IsW8A8(weight.scheme().scheme)) {
    const auto& q = static_cast<const CudaDitW8A8Linear&>(weight);
    W8A8Workspace ws;
    ws.lt = m.lt;
    ws.workspace = m.workspace.data();
    ws.workspace_bytes = m.workspace.bytes();
    ws.stream = m.stream;
    ws.algorithm_rows = m.LinearRowsPerSample(x.rows) * m.gemm_reference_batch;  // as the dense layers choose theirs
    ws.autotune = m.gemm_autotune && m.mode == Impl::Mode::kEager;
    ws.fp8_fast_accumulation = m.w8a8_fp8_fast_accumulation;
    ws.q = static_cast<uint8_t*>(m.Workspace(m.w8a8_codes, q.CodeBytes(x.rows), "w8a8 activation codes"));
    ws.row_scales = static_cast<float*>(m.Workspace(m.w8a8_scales, size_t(x.rows) * 4, "w8a8 row scales"));
    ws.accumulators = [&] { return m.Workspace(m.w8a8_acc, q.AccBytes(x.rows), "w8a8 accumulators"); };
    if (ws.q == nullptr || ws.row_scales == nullptr) return;
    const char* what = "w8a8 linear";
    m.Record(q.Run(m.type, x, out, gelu, ws, &what), what);
    return;
  }
  const auto& w = static_cast<const CudaDitLinear&>(weight);
  const int64_t reference_rows = m.LinearRowsPerSample(x.rows) * m.gemm_reference_batch;
  if (!gelu || m.Plan(x, w, out, reference_rows, /*gelu=*/true) != nullptr) {
    m.Gemm(x, w, out, reference_rows, gelu);
    return;
  }
  // cuBLASLt has no GELU epilogue without split-K for this shape (tiny K):
  // the linear, then the activation kernel. The choice is fixed per shape,
  // so captured and replayed passes make the same one.
  m.Gemm(x, w, out, reference_rows);
  m.Record(kernels::LaunchDitPointwise(m.type, kernels::DitPointwise::kGeluTanh, out.rows, out.cols, out.data,
                                       out.stride, nullptr, 0, out.data, out.stride, m.stream),
           "gelu tanh");
}

void CudaDitOps::Linear(Tensor x, const DitLinear& weight, Tensor out) {
  RunLinear(2, /*gelu=*/false, x, weight, out);
}

void CudaDitOps::LinearGeluTanh(Tensor x, const DitLinear& weight, Tensor out) {
  RunLinear(17, /*gelu=*/true, x, weight, out);
}

void CudaDitOps::Patchify(Tensor images, const DitPatchGeometry& g, Tensor patches) {
  Impl& m = *impl_;
  CHECK_EQ(images.cols, g.pixels());
  CHECK_EQ(patches.rows, images.rows * g.tokens());
  CHECK_EQ(patches.cols, int64_t(g.channels) * g.patch_size * g.patch_size);
  const bool enqueue = m.Enter(kOtherOp, 3);
  m.Mix(images);
  m.Mix(patches);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitPatchify(m.type, images.rows, {g.channels, g.image_size, g.patch_size}, images.data,
                                      images.stride, patches.data, patches.stride, m.stream),
           "patchify");
}

void CudaDitOps::AddPositions(Tensor x, const DitTable& table) {
  Impl& m = *impl_;
  const auto& t = static_cast<const CudaDitTable&>(table);
  CHECK_EQ(x.cols, t.cols());
  CHECK_EQ(x.rows % t.rows(), 0);
  const bool enqueue = m.Enter(kOtherOp, 4);
  m.Mix(x);
  m.Mix(reinterpret_cast<uintptr_t>(&table));
  if (!enqueue) return;
  m.Record(kernels::LaunchDitAddPositions(m.type, x.rows, x.cols, x.data, x.stride, t.values.data(), t.rows(),
                                          m.stream),
           "add positions");
}

void CudaDitOps::TimestepEmbedding(double max_period, double freq_shift, Tensor out) {
  Impl& m = *impl_;
  CHECK_EQ(out.rows, m.batch);
  CHECK_EQ(out.cols % 2, 0);
  const bool enqueue = m.Enter(kOtherOp, 5);
  m.Mix(out);
  const size_t bytes = size_t(out.rows) * out.cols * sizeof(float);
  if (bytes == 0) return;
  auto region = m.Stage(bytes);
  if (region.first == nullptr) return;
  // On the host in float64, as CpuDitOps does it: [B, 2h] is tiny, and
  // float32 arguments near 1000 radians would be off by ~6e-5.
  float* features = static_cast<float*>(region.first);
  const int64_t half = out.cols / 2;
  const double log_period = std::log(max_period);
  for (int64_t b = 0; b < out.rows; ++b) {
    float* row = features + b * out.cols;
    for (int64_t i = 0; i < half; ++i) {
      const double freq = std::exp(-log_period * double(i) / (double(half) - freq_shift));
      const double arg = double(m.timesteps[b]) * freq;
      row[i] = static_cast<float>(std::cos(arg));
      row[half + i] = static_cast<float>(std::sin(arg));
    }
  }
  if (enqueue) m.UploadFloat(region, out, "timestep embedding");
}

void CudaDitOps::EmbedClasses(const DitTable& table, Tensor out) {
  Impl& m = *impl_;
  const auto& t = static_cast<const CudaDitTable&>(table);
  CHECK_EQ(out.rows, m.batch);
  CHECK_EQ(out.cols, t.cols());
  const bool enqueue = m.Enter(kOtherOp, 6);
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(&table));
  if (!enqueue) return;
  m.Record(kernels::LaunchDitGatherRows(m.type, out.rows, out.cols,
                                        static_cast<const int32_t*>(m.StagedDevice(m.labels_offset)),
                                        t.values.data(), t.rows(), out.data, out.stride, m.stream),
           "embed classes");
}

void CudaDitOps::Add(Tensor x, Tensor y) {
  Impl& m = *impl_;
  CHECK_EQ(x.rows, y.rows);
  CHECK_EQ(x.cols, y.cols);
  const bool enqueue = m.Enter(kOtherOp, 7);
  m.Mix(x);
  m.Mix(y);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitPointwise(m.type, kernels::DitPointwise::kAdd, x.rows, x.cols, x.data, x.stride, y.data,
                                       y.stride, nullptr, 0, m.stream),
           "add");
}

void CudaDitOps::Silu(Tensor x, Tensor out) {
  Impl& m = *impl_;
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  const bool enqueue = m.Enter(kOtherOp, 8);
  m.Mix(x);
  m.Mix(out);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitPointwise(m.type, kernels::DitPointwise::kSilu, x.rows, x.cols, x.data, x.stride,
                                       nullptr, 0, out.data, out.stride, m.stream),
           "silu");
}

void CudaDitOps::GeluTanh(Tensor x) {
  Impl& m = *impl_;
  const bool enqueue = m.Enter(kOtherOp, 9);
  m.Mix(x);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitPointwise(m.type, kernels::DitPointwise::kGeluTanh, x.rows, x.cols, x.data, x.stride,
                                       nullptr, 0, x.data, x.stride, m.stream),
           "gelu tanh");
}

void CudaDitOps::LayerNormModulate(Tensor x, Tensor shift, Tensor scale, float eps, Tensor out) {
  Impl& m = *impl_;
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  CHECK_EQ(shift.cols, x.cols);
  CHECK_EQ(scale.cols, x.cols);
  CHECK_EQ(shift.rows, scale.rows);
  CHECK(shift.rows > 0 && x.rows % shift.rows == 0) << x.rows << " rows for " << shift.rows << " samples";
  CHECK(x.data != out.data);
  const bool enqueue = m.Enter(kOtherOp, 10);
  m.Mix(x);
  m.Mix(shift);
  m.Mix(scale);
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(out.row_scales));
  if (!enqueue) return;
  const kernels::DitNormParams p = ModulateParams(x, shift, scale, out, eps);
  if (IsQuantized(out)) {
    m.Record(kernels::LaunchDitLayerNormModulateQuantized(m.type, p, x.data, shift.data, scale.data,
                                                          QuantizedRows(out), m.stream),
             "layernorm modulate, quantized");
    return;
  }
  m.Record(kernels::LaunchDitLayerNormModulate(m.type, p, x.data, shift.data, scale.data, out.data, m.stream),
           "layernorm modulate");
}

void CudaDitOps::Attention(Tensor qkv, const DitAttentionParams& params, Tensor out) {
  Impl& m = *impl_;
  const int64_t width = int64_t(params.num_heads) * params.head_dim;
  const int64_t tokens = m.RowsPerSample(qkv.rows);
  CHECK_EQ(qkv.cols, 3 * width);
  CHECK_EQ(out.rows, qkv.rows);
  CHECK_EQ(out.cols, width);
  const bool enqueue = m.Enter(kAttentionOp, 11);
  m.Mix(qkv);
  m.Mix(out);
  if (!enqueue) return;
  if (params.head_dim > kMaxFlashHeadDim) {
    m.MatmulAttention(qkv, params, tokens, out);
    return;
  }
  kernels::DitAttentionShape s;
  s.batch = m.batch;
  s.tokens = int32_t(tokens);
  s.num_heads = params.num_heads;
  s.head_dim = params.head_dim;
  s.scale = params.scale;
  s.qkv_stride = qkv.stride;
  s.out_stride = out.stride;
  m.Record(kernels::LaunchDitAttention(m.type, s, qkv.data, out.data, m.stream),
           absl::StrCat("attention (", m.batch, " samples x ", tokens, " tokens, ", params.num_heads, " heads of ",
                        params.head_dim, ")"));
}

absl::StatusOr<std::unique_ptr<DitBuffer>> CudaDitOps::AllocateBuffer(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return absl::InvalidArgumentError(absl::StrCat("buffer of ", rows, " x ", cols));
  auto buffer = std::make_unique<CudaDitBuffer>();
  buffer->rows = rows;
  buffer->cols = cols;
  buffer->dtype = impl_->dtype;
  const size_t bytes = std::max<size_t>(size_t(rows) * size_t(cols) * impl_->element_bytes, 1);
  const std::string what = absl::StrCat("allocating a ", rows, " x ", cols, " DiT cache buffer");
  if (cudaError_t e = buffer->memory.Reserve(bytes); e != cudaSuccess) {
    cudaGetLastError();
    return e == cudaErrorMemoryAllocation ? absl::ResourceExhaustedError(absl::StrCat(what, ": out of device memory"))
                                          : CudaStatus(e, what);
  }
  RETURN_IF_CUDA(cudaMemset(buffer->memory.data(), 0, bytes), what);
  return std::unique_ptr<DitBuffer>(std::move(buffer));
}

void CudaDitOps::LinearSamples(Tensor x, int64_t samples, const DitLinear& weight, Tensor out) {
  CHECK(samples > 0 && x.rows % samples == 0) << x.rows << " rows for " << samples << " samples";
  impl_->linear_rows_per_sample = x.rows / samples;
  RunLinear(/*op_id=*/30, /*gelu=*/false, x, weight, out);
  impl_->linear_rows_per_sample = 0;
}

void CudaDitOps::WindowAttention(Tensor qkv, const DitAttentionParams& params, absl::Span<const int32_t> windows,
                                 Tensor out) {
  Impl& m = *impl_;
  const int64_t width = int64_t(params.num_heads) * params.head_dim;
  const int64_t samples = int64_t(windows.size());
  CHECK(samples > 0 && qkv.rows % samples == 0) << qkv.rows << " rows for " << samples << " samples";
  const int64_t tokens = qkv.rows / samples;
  CHECK_EQ(qkv.cols, 3 * width);
  CHECK_EQ(out.rows, qkv.rows);
  CHECK_EQ(out.cols, width);
  const bool enqueue = m.Enter(kAttentionOp, 31);
  m.Mix(qkv);
  m.Mix(out);
  const int32_t* device_windows = m.StageInts({windows}, enqueue, "attention windows");
  if (!enqueue || device_windows == nullptr) return;
  kernels::DitAttentionShape s;
  s.batch = samples;
  s.tokens = int32_t(tokens);
  s.num_heads = params.num_heads;
  s.head_dim = params.head_dim;
  s.scale = params.scale;
  s.qkv_stride = qkv.stride;
  s.out_stride = out.stride;
  s.windows = device_windows;
  m.Record(kernels::LaunchDitAttention(m.type, s, qkv.data, out.data, m.stream),
           absl::StrCat("window attention (", samples, " samples x ", tokens, " tokens, ", params.num_heads,
                        " heads of ", params.head_dim, ")"));
}

void CudaDitOps::CopySamples(Tensor src, absl::Span<const int32_t> from, Tensor dst, absl::Span<const int32_t> to,
                             int64_t rows_per_sample) {
  Impl& m = *impl_;
  CHECK_EQ(from.size(), to.size());
  CHECK_EQ(src.cols, dst.cols);
  for (size_t i = 0; i < from.size(); ++i) {
    CHECK(from[i] >= 0 && (from[i] + 1) * rows_per_sample <= src.rows) << "sample " << from[i] << " of src";
    CHECK(to[i] >= 0 && (to[i] + 1) * rows_per_sample <= dst.rows) << "sample " << to[i] << " of dst";
  }
  const bool enqueue = m.Enter(kOtherOp, 32);
  m.Mix(src);
  m.Mix(dst);
  if (from.empty()) return;
  const int32_t* indices = m.StageInts({from, to}, enqueue, "copy samples");
  if (!enqueue || indices == nullptr) return;
  m.Record(kernels::LaunchDitCopySamples(m.type, int32_t(from.size()), indices, indices + from.size(),
                                         rows_per_sample, src.cols, src.data, src.stride, dst.data, dst.stride,
                                         m.stream),
           "copy samples");
}

void CudaDitOps::Subtract(Tensor x, Tensor y, Tensor out) {
  Impl& m = *impl_;
  CHECK(x.rows == y.rows && x.rows == out.rows && x.cols == y.cols && x.cols == out.cols);
  const bool enqueue = m.Enter(kOtherOp, 33);
  m.Mix(x);
  m.Mix(y);
  m.Mix(out);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitSubtract(m.type, x.rows, x.cols, x.data, x.stride, y.data, y.stride, out.data,
                                      out.stride, m.stream),
           "subtract");
}

void CudaDitOps::GatedAdd(Tensor x, Tensor y, Tensor gate) {
  Impl& m = *impl_;
  CHECK_EQ(x.rows, y.rows);
  CHECK_EQ(x.cols, y.cols);
  CHECK_EQ(gate.cols, x.cols);
  CHECK(gate.rows > 0 && x.rows % gate.rows == 0);
  const bool enqueue = m.Enter(kOtherOp, 12);
  m.Mix(x);
  m.Mix(y);
  m.Mix(gate);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitGatedAdd(m.type, x.rows, x.cols, x.rows / gate.rows, x.data, x.stride, y.data, y.stride,
                                      gate.data, gate.stride, m.stream),
           "gated add");
}

void CudaDitOps::GatedAddLayerNormModulate(Tensor x, Tensor y, Tensor gate, Tensor shift, Tensor scale, float eps,
                                           Tensor out) {
  Impl& m = *impl_;
  CHECK_EQ(x.rows, y.rows);
  CHECK_EQ(x.cols, y.cols);
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  CHECK_EQ(gate.cols, x.cols);
  CHECK_EQ(shift.cols, x.cols);
  CHECK_EQ(scale.cols, x.cols);
  CHECK(gate.rows == shift.rows && shift.rows == scale.rows) << gate.rows << ", " << shift.rows << ", " << scale.rows;
  CHECK(shift.rows > 0 && x.rows % shift.rows == 0) << x.rows << " rows for " << shift.rows << " samples";
  CHECK(out.data != x.data && out.data != y.data);
  const bool enqueue = m.Enter(kOtherOp, 17);
  m.Mix(x);
  m.Mix(y);
  m.Mix(gate);
  m.Mix(shift);
  m.Mix(scale);
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(out.row_scales));
  if (!enqueue) return;
  const kernels::DitNormParams p = ModulateParams(x, shift, scale, out, eps);
  if (IsQuantized(out)) {
    m.Record(kernels::LaunchDitGatedAddLayerNormModulateQuantized(m.type, p, x.data, y.data, y.stride, gate.data,
                                                                  gate.stride, shift.data, scale.data,
                                                                  QuantizedRows(out), m.stream),
             "gated add + layernorm modulate, quantized");
    return;
  }
  m.Record(kernels::LaunchDitGatedAddLayerNormModulate(m.type, p, x.data, y.data, y.stride, gate.data, gate.stride,
                                                       shift.data, scale.data, out.data, m.stream),
           "gated add + layernorm modulate");
}

void CudaDitOps::Unpatchify(Tensor patches, const DitPatchGeometry& g, int32_t keep_channels, Tensor images) {
  Impl& m = *impl_;
  CHECK(keep_channels > 0 && keep_channels <= g.channels);
  CHECK_EQ(patches.cols, int64_t(g.patch_size) * g.patch_size * g.channels);
  CHECK_EQ(patches.rows, images.rows * g.tokens());
  CHECK_EQ(images.cols, int64_t(keep_channels) * g.image_size * g.image_size);
  const bool enqueue = m.Enter(kOtherOp, 13);
  m.Mix(patches);
  m.Mix(images);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitUnpatchify(m.type, images.rows, {g.channels, g.image_size, g.patch_size}, keep_channels,
                                        patches.data, patches.stride, images.data, images.stride, m.stream),
           "unpatchify");
}

CudaDitOps::OpTimes CudaDitOps::op_times() const { return impl_->times; }

CudaDitOps::GraphStats CudaDitOps::graph_stats() const { return impl_->stats; }

bool CudaDitOps::records_graphs() const { return impl_->graphs_enabled; }

size_t CudaDitOps::workspace_bytes() const {
  const Impl& m = *impl_;
  size_t total = m.workspace.bytes() + m.im2col.bytes() + m.norm_workspace.bytes() + m.read_buffer.bytes() +
                 m.w8a8_codes.bytes() + m.w8a8_scales.bytes() + m.w8a8_acc.bytes() + m.attention_scores.bytes() +
                 m.attention_probs.bytes() + m.staging_device->bytes();
  for (const auto& [slot, buffer] : m.scratch) total += buffer.bytes();
  for (const auto& [slot, quantized] : m.quantized_scratch) total += quantized.codes.bytes() + quantized.scales.bytes();
  return total;
}

CudaDitOps::GemmTuning CudaDitOps::gemm_tuning() const { return impl_->tuning; }

}  // namespace tern::runtime
