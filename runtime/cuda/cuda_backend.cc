// CudaBackend: creation and the forward ops (embedding, RMSNorm, linear
// layers dense, weight-only and W8A8, RoPE and the KV append, attention,
// SwiGLU, gathers), device sampling and reads to the host. Its weights are
// cuda_backend_weights.cc, its KV cache cuda_kv_cache.cc, the step
// lifecycle and decode graphs cuda_backend_step.cc, MoE cuda_backend_moe.cc;
// its state is cuda_backend_impl.h.
#include "runtime/cuda/cuda_backend.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/activation/silu_mul.h"
#include "kernels/attention/flash_prefill_attention.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/attention/paged_decode_attention.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/gemm/skinny_gemm.h"
#include "kernels/gemm/weight_only_gemm.h"
#include "kernels/gemm/weight_only_gemv.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/rope/rope_kv_append.h"
#include "runtime/base/check.h"
#include "runtime/cuda/cuda_backend_impl.h"
#include "runtime/cuda/cuda_backend_weights.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/cuda/cuda_kv_cache.h"
#include "runtime/cuda/cuda_sampling.h"
#include "runtime/cuda/cuda_w8a8_linear.h"
#include "runtime/cuda/cuda_weight_only_linear.h"

namespace tern::runtime {
namespace {

// The kernels' element type of a compute dtype; anything but fp32, fp16 and
// bf16 is an error, never a silent fp32.
absl::StatusOr<ScalarType> ToScalar(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ScalarType::kF32;
    case DType::kF16: return ScalarType::kF16;
    case DType::kBF16: return ScalarType::kBF16;
    default:
      return absl::InvalidArgumentError(absl::StrCat("the CUDA backend has no kernels for dtype ",
                                                     DTypeSafetensorsName(dtype), " (F32, F16, BF16)"));
  }
}

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

}  // namespace

CudaBackend::CudaBackend(std::unique_ptr<Impl> impl, const CudaBackendOptions& options)
    : impl_(std::move(impl)), options_(options) {}

CudaBackend::~CudaBackend() {
  if (impl_->stream != nullptr) cudaStreamSynchronize(impl_->stream);
  if (impl_->cublas != nullptr) cublasDestroy(impl_->cublas);
  if (impl_->lt != nullptr) cublasLtDestroy(impl_->lt);
  if (impl_->pinned != nullptr) cudaFreeHost(impl_->pinned);
  if (impl_->stream != nullptr) cudaStreamDestroy(impl_->stream);
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaBackendOptions& options) {
  auto scalar = ToScalar(options.compute_dtype);
  if (!scalar.ok()) return absl::InvalidArgumentError("the CUDA backend computes in float16, bfloat16 or float32");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError("no CUDA device is visible");
  }
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA device ", options.device, " does not exist (", count, " visible)"));
  }
  RETURN_IF_CUDA(cudaSetDevice(options.device), "selecting the CUDA device");
  auto impl = std::make_unique<Impl>();
  impl->type = *scalar;
  impl->element_bytes = DTypeSize(options.compute_dtype);
  impl->pdl = options.pdl;
  RETURN_IF_CUDA(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "creating a stream");
  if (cublasCreate(&impl->cublas) != CUBLAS_STATUS_SUCCESS) return absl::InternalError("cublasCreate failed");
  cublasSetStream(impl->cublas, impl->stream);
  // fp32 stays fp32: no TF32 shortcuts, so the fp32 path can serve as a reference.
  cublasSetMathMode(impl->cublas, CUBLAS_DEFAULT_MATH);
  RETURN_IF_CUDA(impl->cublas_workspace.Reserve(options.cublas_workspace_bytes), "allocating the cuBLAS workspace");
  cublasSetWorkspace(impl->cublas, impl->cublas_workspace.data(), impl->cublas_workspace.bytes());
  if (cublasLtCreate(&impl->lt) != CUBLAS_STATUS_SUCCESS) return absl::InternalError("cublasLtCreate failed");
  cudaDeviceProp prop{};
  RETURN_IF_CUDA(cudaGetDeviceProperties(&prop, options.device), "reading the device properties");
  impl->compute_capability = prop.major * 10 + prop.minor;
  return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(impl), options));
}

std::optional<size_t> CudaBackend::FreeDeviceMemory() const {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return std::nullopt;
  return free;
}

Tensor CudaBackend::Scratch(int slot, int64_t rows, int64_t cols) {
  auto& buffer = impl_->scratch[slot];
  impl_->ReserveTracked(buffer,
                        size_t(std::max<int64_t>(rows, 1)) * size_t(std::max<int64_t>(cols, 1)) * impl_->element_bytes,
                        "allocating scratch");
  return Tensor{buffer.data(), options_.compute_dtype, rows, cols, cols};
}

void CudaBackend::Embed(const DeviceWeight& table, Tensor out) {
  if (impl_->Skip()) return;
  const auto& w = static_cast<const CudaWeight&>(table);
  impl_->Record(kernels::LaunchEmbedding(impl_->type, out.rows, out.cols, impl_->Meta(Impl::kTokens), w.data(),
                                         out.data, out.stride, impl_->stream),
                "embedding");
}

void CudaBackend::RmsNorm(Tensor x, const DeviceWeight& weight, float eps, Tensor out) {
  if (impl_->Skip()) return;
  kernels::RmsNormParams p{x.rows, x.cols, x.stride, out.stride, eps};
  impl_->Record(kernels::LaunchRmsNorm(impl_->type, p, x.data, static_cast<const CudaWeight&>(weight).data(), out.data,
                                       impl_->stream, impl_->pdl),
                "rmsnorm");
}

void CudaBackend::Linear(Tensor x, const LinearWeight& weight, Tensor out) {
  if (impl_->Skip()) return;
  if (IsWeightOnly(weight.scheme().scheme)) {
    WeightOnlyLinear(x, static_cast<const CudaWeightOnlyLinear&>(weight), out);
    return;
  }
  if (IsW8A8(weight.scheme().scheme)) {
    W8A8Linear(x, static_cast<const CudaW8A8Linear&>(weight), out);
    return;
  }
  const auto& w = static_cast<const CudaLinear&>(weight);
  CHECK_EQ(x.cols, w.in_features());
  CHECK_EQ(out.cols, w.out_features());
  impl_->Gemm(x, w.weight(), w.out_features(), w.in_features(), out);
  if (w.bias() != nullptr) {
    impl_->Record(kernels::LaunchAddBias(impl_->type, out.rows, out.cols, out.data, out.stride, w.bias(), impl_->stream),
                  "bias");
  }
}

// Act-order layers gather x into stored column order first. Then
// kernels::SelectWeightOnlyKernel: up to kWeightOnlyGemvMaxRows rows (decode)
// the weight-only GEMV, up to kWeightOnlyGemmFastRows the tensor-core GEMM,
// both on the packed codes; more rows (and fp32) dequantize the layer into
// dequant_scratch and run the dense GEMM (faster there, weight_only_gemm.h).
void CudaBackend::WeightOnlyLinear(Tensor x, const CudaWeightOnlyLinear& w, Tensor out) {
  Impl& m = *impl_;
  CHECK_EQ(x.cols, w.in_features());
  CHECK_EQ(out.cols, w.out_features());
  CHECK_EQ(x.rows, out.rows);
  if (x.rows == 0) return;
  if (w.input_order() != nullptr) {
    Tensor gathered = Scratch(kGatherScratchSlot, x.rows, x.cols);
    if (m.Skip()) return;  // the scratch could not grow
    m.Record(kernels::LaunchGatherColumns(m.type, x.rows, x.cols, w.input_order(), x.data, x.stride, gathered.data,
                                          gathered.stride, m.stream),
             "act-order gather");
    x = gathered;
  }
  const kernels::WeightOnlyGemmParams p{x.rows, x.stride, out.stride};
  const kernels::WeightOnlyKernel kernel = kernels::SelectWeightOnlyKernel(
      x.rows, x.rows <= kernels::kWeightOnlyGemvMaxRows && kernels::WeightOnlyGemvSupported(m.type, w.weight(), p, x.data),
      x.rows <= kernels::kWeightOnlyGemmFastRows && kernels::WeightOnlyGemmSupported(m.type, w.weight(), p, x.data));
  if (kernel == kernels::WeightOnlyKernel::kGemv) {
    m.Record(kernels::LaunchWeightOnlyGemv(m.type, w.weight(), p, x.data, w.bias(), out.data, m.stream, m.pdl),
             "weight-only gemv");
    return;
  }
  if (kernel == kernels::WeightOnlyKernel::kGemm) {
    m.Record(kernels::LaunchWeightOnlyGemm(m.type, w.weight(), p, x.data, w.bias(), out.data, m.stream, m.pdl),
             "weight-only gemm");
    return;
  }
  CHECK_GE(m.dequant_scratch.bytes(), w.DenseBytes()) << "weight-only scratch was not reserved at load";
  m.Record(kernels::LaunchWeightOnlyDequantize(m.type, w.weight(), m.dequant_scratch.data(), m.stream),
           "weight-only dequantize");
  m.Gemm(x, m.dequant_scratch.data(), w.out_features(), w.in_features(), out);
  if (w.bias() != nullptr) {
    m.Record(kernels::LaunchAddBias(m.type, out.rows, out.cols, out.data, out.stride, w.bias(), m.stream), "bias");
  }
}

// Activations quantized per token into scratch, cuBLASLt, the epilogue
// (cuda_w8a8_linear.h). Scratch slots are sized in compute-dtype elements.
void CudaBackend::W8A8Linear(Tensor x, const CudaW8A8Linear& w, Tensor out) {
  Impl& m = *impl_;
  if (x.rows == 0) return;
  const int64_t element = int64_t(m.element_bytes);
  const auto elements = [&](int64_t bytes) { return (bytes + element - 1) / element; };
  W8A8Workspace ws;
  ws.lt = m.lt;
  ws.workspace = m.cublas_workspace.data();
  ws.workspace_bytes = m.cublas_workspace.bytes();
  ws.stream = m.stream;
  ws.q = static_cast<uint8_t*>(Scratch(kW8A8QuantSlot, x.rows, elements(w.in_features())).data);
  ws.row_scales = static_cast<float*>(Scratch(kW8A8ScaleSlot, x.rows, elements(4)).data);
  ws.accumulators = [&]() -> void* {
    void* acc = Scratch(kW8A8AccSlot, x.rows, elements(w.out_features() * 4)).data;
    return m.errors.ok() ? acc : nullptr;
  };
  if (m.Skip()) return;  // a scratch could not grow
  const char* what = "w8a8 linear";
  m.Record(w.Run(m.type, x, out, ws, &what), what);
}

void CudaBackend::Rope(Tensor q, Tensor k, int32_t head_dim, const DeviceWeight& inv_freq) {
  if (impl_->Skip()) return;
  const float* f = static_cast<const float*>(static_cast<const CudaWeight&>(inv_freq).data());
  const int32_t* positions = impl_->Meta(Impl::kPositions);
  impl_->Record(kernels::LaunchRope(impl_->type, {q.rows, q.cols / head_dim, head_dim, q.stride}, positions, f, q.data,
                                    impl_->stream),
                "rope q");
  impl_->Record(kernels::LaunchRope(impl_->type, {k.rows, k.cols / head_dim, head_dim, k.stride}, positions, f, k.data,
                                    impl_->stream),
                "rope k");
}

void CudaBackend::WriteKv(Tensor k, Tensor v, KvCache& cache, int32_t layer) {
  if (impl_->Skip()) return;
  auto& c = static_cast<CudaKvCache&>(cache);
  if (c.spec().quantized()) {
    kernels::KvWriteQuantParams p;
    p.element = ElementOf(c.spec().dtype);
    p.num_tokens = k.rows;
    p.num_kv_heads = c.spec().num_kv_heads;
    p.head_dim = c.spec().head_dim;
    p.k_row_stride = k.stride;
    p.v_row_stride = v.stride;
    impl_->Record(kernels::LaunchWriteKvQuantized(impl_->type, p, k.data, v.data, impl_->GroupSlots(c.spec(), layer),
                                                  static_cast<uint8_t*>(c.k(layer)), static_cast<uint8_t*>(c.v(layer)),
                                                  c.k_scales(layer), c.v_scales(layer), impl_->stream),
                  "quantized kv write");
    return;
  }
  impl_->Record(kernels::LaunchWriteKv(impl_->type, k.rows, c.spec().num_kv_heads, c.spec().head_dim, k.data, k.stride,
                                       v.data, v.stride, impl_->GroupSlots(c.spec(), layer), c.k(layer), c.v(layer),
                                       impl_->stream),
                "write kv");
}

void CudaBackend::RopeWriteKv(Tensor q, Tensor k, Tensor v, int32_t head_dim, const DeviceWeight& inv_freq,
                              KvCache& cache, int32_t layer) {
  if (impl_->Skip()) return;
  CHECK_EQ(k.cols, v.cols);
  auto& c = static_cast<CudaKvCache&>(cache);
  if (c.spec().quantized()) {
    // Rope, then the quantizing append (not fused yet).
    Backend::RopeWriteKv(q, k, v, head_dim, inv_freq, cache, layer);
    return;
  }
  kernels::RopeKvAppendParams p;
  p.num_tokens = q.rows;
  p.num_heads = int32_t(q.cols / head_dim);
  p.num_kv_heads = int32_t(k.cols / head_dim);
  p.head_dim = head_dim;
  p.q_row_stride = q.stride;
  p.k_row_stride = k.stride;
  p.v_row_stride = v.stride;
  CHECK_EQ(p.num_kv_heads, c.spec().num_kv_heads);
  const float* f = static_cast<const float*>(static_cast<const CudaWeight&>(inv_freq).data());
  impl_->Record(kernels::LaunchRopeKvAppend(impl_->type, p, impl_->Meta(Impl::kPositions), f,
                                            impl_->GroupSlots(c.spec(), layer), q.data, k.data, v.data, c.k(layer),
                                            c.v(layer), impl_->stream, impl_->pdl),
                "rope + kv append");
}

void CudaBackend::Attention(Tensor q, const KvCache& cache, int32_t layer, const AttentionOptions& o, Tensor out) {
  if (impl_->Skip()) return;
  const auto& c = static_cast<const CudaKvCache&>(cache);
  kernels::PagedAttentionParams p;
  p.num_seqs = impl_->batch->num_seqs();
  p.num_heads = o.num_heads;
  p.num_kv_heads = o.num_kv_heads;
  p.head_dim = o.head_dim;
  p.block_size = c.spec().block_size;
  p.scale = o.scale;
  p.sliding_window = o.sliding_window;
  if (o.spans != nullptr) p.spans = static_cast<const CudaAttentionSpans*>(o.spans)->Layer(layer);
  p.query_start = impl_->Meta(Impl::kQueryStart);
  p.context_lens = impl_->Meta(Impl::kContextLens);
  p.block_indptr = impl_->GroupBlockIndptr(c.spec(), layer);
  p.block_ids = impl_->Meta(Impl::kBlockIds);
  p.q_row_stride = q.stride;
  p.out_row_stride = out.stride;
  p.kv_element = ElementOf(c.spec().dtype);
  p.k_scales = c.k_scales(layer);
  p.v_scales = c.v_scales(layer);
  // Steps that prefill (some sequence has several query rows) take the tiled
  // tensor-core kernel for all their sequences; it refuses fp32 and odd shapes.
  if (impl_->max_query_len > 1 && kernels::SupportsFlashPrefillAttention(impl_->type, p) == cudaSuccess) {
    impl_->Record(kernels::LaunchFlashPrefillAttention(impl_->type, p, int32_t(q.rows), q.data, c.k(layer), c.v(layer),
                                                       out.data, impl_->stream),
                  "flash prefill attention");
    return;
  }
  Impl& m = *impl_;
  if (m.decode_step && q.rows == p.num_seqs && kernels::SupportsPagedDecodeAttention(p)) {
    m.decode_shape = p;
    m.ReserveTracked(m.decode_workspace,
                     kernels::PagedDecodeAttentionWorkspaceBytes(p, m.step_context_capacity),
                     "allocating the decode attention workspace");
    if (m.Skip()) return;  // the workspace could not grow
    m.Record(kernels::LaunchPagedDecodeAttention(m.type, p, m.step_context_capacity, q.data, c.k(layer), c.v(layer),
                                                 out.data, m.decode_workspace.data(), m.decode_workspace.bytes(),
                                                 m.stream, m.pdl),
             "decode attention");
    return;
  }
  impl_->Record(kernels::LaunchPagedAttention(impl_->type, p, int32_t(q.rows), impl_->Meta(Impl::kRowSeq), q.data,
                                              c.k(layer), c.v(layer), out.data, impl_->stream),
                "paged attention");
}

void CudaBackend::SiluMul(Tensor gate_up, Tensor out) {
  if (impl_->Skip()) return;
  const int64_t width = gate_up.cols / 2;
  const uint8_t* base = static_cast<const uint8_t*>(gate_up.data);
  impl_->Record(kernels::LaunchSiluMul(impl_->type, gate_up.rows, width, base, gate_up.stride,
                                       base + width * impl_->element_bytes, gate_up.stride, out.data, out.stride,
                                       impl_->stream, impl_->pdl),
                "silu mul");
}

void CudaBackend::AddRmsNorm(Tensor x, Tensor residual, const DeviceWeight& weight, float eps, Tensor out) {
  if (impl_->Skip()) return;
  kernels::AddRmsNormParams p;
  p.norm = {x.rows, x.cols, x.stride, out.stride, eps};
  p.residual_row_stride = residual.stride;
  impl_->Record(kernels::LaunchAddRmsNorm(impl_->type, p, x.data, residual.data,
                                          static_cast<const CudaWeight&>(weight).data(), out.data, impl_->stream,
                                          impl_->pdl),
                "add rmsnorm");
}

void CudaBackend::Add(Tensor x, Tensor y) {
  if (impl_->Skip()) return;
  impl_->Record(kernels::LaunchAdd(impl_->type, x.rows, x.cols, x.data, x.stride, y.data, y.stride, impl_->stream),
                "add");
}

void CudaBackend::GatherLogitRows(Tensor x, Tensor out) {
  if (impl_->Skip()) return;
  impl_->Record(kernels::LaunchGatherRows(impl_->type, out.rows, x.cols, impl_->Meta(Impl::kLogitsRows), x.data,
                                          x.stride, out.data, out.stride, impl_->stream),
                "gather logit rows");
}

absl::Status CudaBackend::SampleRows(Tensor logits, absl::Span<const SampleRequest> requests,
                                     std::vector<absl::StatusOr<SampledToken>>* out) {
  EnqueueSampleRows(logits, requests);
  return FinishSampleRows(out);
}

void CudaBackend::EnqueueSampleRows(Tensor logits, absl::Span<const SampleRequest> requests) {
  Impl& m = *impl_;
  if (m.sampling == nullptr) m.sampling = std::make_unique<CudaSampling>();
  m.sample_requests.assign(requests.begin(), requests.end());
  m.sample_prepared = m.sampling->Prepare(logits, requests);
  // A step that failed already samples nothing (its logits may be missing).
  if (m.sample_prepared.ok() && m.errors.ok()) m.Record(m.sampling->Enqueue(m.type, logits, m.stream), "sampling");
}

absl::Status CudaBackend::FinishSampleRows(std::vector<absl::StatusOr<SampledToken>>* out) {
  Impl& m = *impl_;
  // The step's one synchronization; it reports the forward pass's errors too.
  if (absl::Status finished = FinishStep(); !finished.ok()) return finished;
  if (!m.sample_prepared.ok()) return std::exchange(m.sample_prepared, absl::OkStatus());
  m.sampling->Collect(m.sample_requests, out);
  return absl::OkStatus();
}

void CudaBackend::ReadToHost(Tensor tensor, float* out) {
  Impl& m = *impl_;
  const size_t bytes = size_t(tensor.rows) * tensor.cols * sizeof(float);
  m.RecordAllocation(m.host_read.Reserve(bytes), "read to host", bytes);
  m.Record(kernels::LaunchToFloat(m.type, tensor.rows, tensor.cols, tensor.data, tensor.stride,
                                  static_cast<float*>(m.host_read.data()), m.stream),
           "read to host");
  m.Record(cudaMemcpyAsync(out, m.host_read.data(), bytes, cudaMemcpyDeviceToHost, m.stream), "read to host");
  m.Record(cudaStreamSynchronize(m.stream), "read to host");
}

}  // namespace tern::runtime
