#include "runtime/cuda/cuda_backend.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/activation/silu_mul.h"
#include "kernels/attention/flash_prefill_attention.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/attention/paged_decode_attention.h"
#include "kernels/cache/copy_blocks.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/gemm/skinny_gemm.h"
#include "kernels/gemm/weight_only_gemm.h"
#include "kernels/moe/moe_routing.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/rope/rope_kv_append.h"
#include "runtime/backend/attention_span_tables.h"
#include "runtime/backend/backend_common.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cuda_sampling.h"
#include "runtime/cuda/cuda_w8a8_linear.h"
#include "runtime/cuda/cuda_weight_only_linear.h"
#include "runtime/cuda/decode_graph_keys.h"

namespace tern::runtime {
namespace {

using kernels::ScalarType;

// An allocation that failed is RESOURCE_EXHAUSTED: the device (or pinned
// host memory) has no room, but nothing is broken, and a smaller request may
// succeed. Every other error is INTERNAL.
absl::Status CudaStatus(cudaError_t error, const std::string& what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(absl::StrCat("out of memory: ", message));
  return absl::InternalError(message);
}

std::string Mib(size_t bytes) { return absl::StrFormat("%.1f MiB", double(bytes) / double(1 << 20)); }

// What a device allocation of `bytes` for `what` asked for, and what the
// device had: "allocating scratch: 1536.0 MiB of device memory asked, 20.5
// MiB free of 81559.0 MiB".
std::string DescribeDeviceAllocation(const std::string& what, size_t bytes) {
  size_t free = 0, total = 0;
  std::string room = "free memory unknown";
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) room = absl::StrCat(Mib(free), " free of ", Mib(total));
  return absl::StrCat(what, ": ", Mib(bytes), " of device memory asked, ", room);
}

// CudaStatus of a device allocation, naming its size and the room left when
// it failed for want of memory.
absl::Status AllocationStatus(cudaError_t error, const std::string& what, size_t bytes) {
  if (error != cudaErrorMemoryAllocation) return CudaStatus(error, what);
  return CudaStatus(error, DescribeDeviceAllocation(what, bytes));
}

#define RETURN_IF_CUDA(expr, what)                                   \
  do {                                                               \
    const cudaError_t tern_cuda_error_ = (expr);                     \
    if (tern_cuda_error_ != cudaSuccess) return CudaStatus(tern_cuda_error_, what); \
  } while (0)

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

// An owned device allocation that only grows.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      if (data_ != nullptr) cudaFree(data_);
      data_ = other.data_;
      bytes_ = other.bytes_;
      other.data_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  cudaError_t Reserve(size_t bytes) {
    if (bytes <= bytes_) return cudaSuccess;
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
    const cudaError_t error = cudaMalloc(&data_, std::max<size_t>(bytes, 256));
    if (error == cudaSuccess) {
      bytes_ = std::max<size_t>(bytes, 256);
    } else {
      // The failure is returned; clear it from the runtime's last error, where
      // a later step's check would find it again.
      data_ = nullptr;
      (void)cudaGetLastError();
    }
    return error;
  }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

class CudaWeight final : public DeviceWeight {
 public:
  CudaWeight(std::vector<int64_t> shape, DeviceBuffer buffer) : shape_(std::move(shape)), buffer_(std::move(buffer)) {}
  const std::vector<int64_t>& shape() const override { return shape_; }
  size_t bytes() const override { return buffer_.bytes(); }
  const void* data() const { return buffer_.data(); }

 private:
  std::vector<int64_t> shape_;
  DeviceBuffer buffer_;
};

class CudaLinear final : public LinearWeight {
 public:
  CudaLinear(int64_t out, int64_t in, DeviceBuffer weight, DeviceBuffer bias, bool has_bias)
      : out_(out), in_(in), weight_(std::move(weight)), bias_(std::move(bias)), has_bias_(has_bias) {}
  int64_t out_features() const override { return out_; }
  int64_t in_features() const override { return in_; }
  size_t bytes() const override { return weight_.bytes() + bias_.bytes(); }
  const void* weight() const { return weight_.data(); }
  const void* bias() const { return has_bias_ ? bias_.data() : nullptr; }

 private:
  int64_t out_, in_;
  DeviceBuffer weight_;  // [out, in] row-major
  DeviceBuffer bias_;
  bool has_bias_;
};

class CudaKvCache final : public KvCache {
 public:
  // Records an op's error as the step's (CudaBackend::Impl::Record).
  using Recorder = std::function<void(cudaError_t, const char*)>;
  // `element_bytes`: of the compute dtype; a quantized spec stores bytes.
  CudaKvCache(const KvCacheSpec& spec, size_t element_bytes, cudaStream_t stream, Recorder record)
      : spec_(spec), element_bytes_(spec.quantized() ? 1 : element_bytes), stream_(stream),
        record_(std::move(record)) {}
  absl::Status Allocate() {
    const size_t slots = size_t(spec_.num_blocks) * spec_.block_size;
    const size_t per_layer = slots * spec_.num_kv_heads * spec_.head_dim * element_bytes_;
    const size_t scales_per_layer = slots * spec_.num_kv_heads * sizeof(float);
    const bool token_scales = spec_.dtype == KvCacheDtype::kInt8;
    k_.resize(spec_.num_layers);
    v_.resize(spec_.num_layers);
    if (token_scales) {
      k_scales_.resize(spec_.num_layers);
      v_scales_.resize(spec_.num_layers);
    }
    std::vector<void*> pools, scale_pools;
    const size_t total = 2 * size_t(spec_.num_layers) * (per_layer + (token_scales ? scales_per_layer : 0));
    const std::string what = absl::StrCat("allocating the KV cache (", spec_.num_blocks, " blocks of ",
                                          spec_.block_size, " tokens, ", Mib(total), " in all)");
    const auto reserve = [&](DeviceBuffer& buffer, size_t bytes, std::vector<void*>* table) {
      if (auto s = AllocationStatus(buffer.Reserve(bytes), what, bytes); !s.ok()) return s;
      cudaMemsetAsync(buffer.data(), 0, bytes, stream_);
      table->push_back(buffer.data());
      return absl::OkStatus();
    };
    for (int32_t l = 0; l < spec_.num_layers; ++l) {
      if (auto s = reserve(k_[l], per_layer, &pools); !s.ok()) return s;
      if (auto s = reserve(v_[l], per_layer, &pools); !s.ok()) return s;
      if (token_scales) {
        if (auto s = reserve(k_scales_[l], scales_per_layer, &scale_pools); !s.ok()) return s;
        if (auto s = reserve(v_scales_[l], scales_per_layer, &scale_pools); !s.ok()) return s;
      }
    }
    if (spec_.dtype == KvCacheDtype::kFp8E4M3) {
      // [2, num_layers, num_kv_heads]: K's scales, then V's.
      std::vector<float> host;
      for (int side = 0; side < 2; ++side) {
        for (int32_t l = 0; l < spec_.num_layers; ++l) {
          for (int32_t h = 0; h < spec_.num_kv_heads; ++h) host.push_back(spec_.HeadScale(side == 1, l, h));
        }
      }
      if (auto s = AllocationStatus(head_scales_.Reserve(host.size() * sizeof(float)), "allocating the KV cache scales",
                                    host.size() * sizeof(float));
          !s.ok()) {
        return s;
      }
      if (auto s = CudaStatus(cudaMemcpy(head_scales_.data(), host.data(), host.size() * sizeof(float),
                                         cudaMemcpyHostToDevice),
                              "uploading the KV cache scales");
          !s.ok()) {
        return s;
      }
    }
    // The block copies address every layer's K and V (and int8 scales)
    // through these tables.
    if (auto s = UploadTable(pools, &pools_); !s.ok()) return s;
    if (token_scales) return UploadTable(scale_pools, &scale_pools_);
    return absl::OkStatus();
  }
  const KvCacheSpec& spec() const override { return spec_; }
  // One batched kernel for every (pair, layer, K or V); an error becomes the
  // step's first error, so the step these copies precede fails with it.
  void CopyBlocks(const std::vector<int32_t>& src, const std::vector<int32_t>& dst) override {
    CHECK_EQ(src.size(), dst.size());
    kernels::CopyBlocksParams p;
    p.pools = static_cast<void* const*>(pools_.data());
    p.num_pools = 2 * spec_.num_layers;
    p.num_blocks = spec_.num_blocks;
    p.block_bytes = int64_t(spec_.block_size) * spec_.num_kv_heads * spec_.head_dim * int64_t(element_bytes_);
    p.num_pairs = static_cast<int32_t>(src.size());
    p.src = src.data();
    p.dst = dst.data();
    record_(kernels::LaunchCopyBlocks(p, stream_), "copying KV cache blocks");
    if (spec_.dtype == KvCacheDtype::kInt8) {
      // A block's token scales are its slots' rows of the scale pools.
      p.pools = static_cast<void* const*>(scale_pools_.data());
      p.block_bytes = int64_t(spec_.block_size) * spec_.num_kv_heads * int64_t(sizeof(float));
      record_(kernels::LaunchCopyBlocks(p, stream_), "copying KV cache block scales");
    }
  }
  void* k(int32_t layer) const { return k_[layer].data(); }
  void* v(int32_t layer) const { return v_[layer].data(); }
  // int8: [slots, num_kv_heads] token scales of the layer; fp8: [num_kv_heads]
  // head scales of the layer; native: null.
  float* k_scales(int32_t layer) const { return Scales(0, layer); }
  float* v_scales(int32_t layer) const { return Scales(1, layer); }

 private:
  float* Scales(int side, int32_t layer) const {
    if (spec_.dtype == KvCacheDtype::kInt8) return static_cast<float*>((side == 0 ? k_scales_ : v_scales_)[layer].data());
    if (spec_.dtype == KvCacheDtype::kFp8E4M3) {
      return static_cast<float*>(head_scales_.data()) + (size_t(side) * spec_.num_layers + layer) * spec_.num_kv_heads;
    }
    return nullptr;
  }
  static absl::Status UploadTable(const std::vector<void*>& table, DeviceBuffer* buffer) {
    const size_t bytes = table.size() * sizeof(void*);
    if (auto s = AllocationStatus(buffer->Reserve(bytes), "allocating the KV cache tables", bytes); !s.ok()) return s;
    return CudaStatus(cudaMemcpy(buffer->data(), table.data(), bytes, cudaMemcpyHostToDevice),
                      "allocating the KV cache");
  }
  KvCacheSpec spec_;
  size_t element_bytes_;  // of one stored element
  cudaStream_t stream_;
  Recorder record_;
  std::vector<DeviceBuffer> k_, v_;
  std::vector<DeviceBuffer> k_scales_, v_scales_;  // int8: per layer [slots, num_kv_heads]
  DeviceBuffer head_scales_;                       // fp8: [2, num_layers, num_kv_heads]
  DeviceBuffer pools_;        // [2 * num_layers] device pointers: layer l's K at 2l, its V at 2l + 1
  DeviceBuffer scale_pools_;  // int8: the same for the token scales
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

}  // namespace

constexpr int64_t kSkinnyRows = 2;
// Scratch slots of quantized layers: an act-order layer's gathered input;
// a W8A8 layer's quantized activations, row scales and accumulators.
constexpr int kGatherScratchSlot = 110;
constexpr int kW8A8QuantSlot = 111;
constexpr int kW8A8ScaleSlot = 112;
constexpr int kW8A8AccSlot = 113;

struct CudaBackend::Impl {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t lt = nullptr;  // W8A8 GEMMs; shares cublas_workspace (same stream)
  int compute_capability = 0;     // major * 10 + minor
  DeviceBuffer cublas_workspace;
  ScalarType type = ScalarType::kBF16;
  size_t element_bytes = 2;
  bool pdl = true;  // CudaBackendOptions::pdl
  cudaError_t first_error = cudaSuccess;
  std::string first_error_op;
  bool poisoned = false;
  std::string fatal_error;  // the step error that poisoned the backend

  // Step metadata: one pinned staging buffer and one device buffer, the
  // fields at offsets that depend only on their sizes (block ids last).
  enum Meta { kTokens, kPositions, kSlots, kQueryStart, kContextLens, kBlockIndptr, kLogitsRows, kRowSeq, kBlockIds,
              kNumMeta };
  int32_t* pinned = nullptr;
  size_t pinned_elems = 0;
  DeviceBuffer meta_device;
  size_t meta_offset[kNumMeta] = {};
  DeviceBuffer moe_routing;
  std::vector<int32_t> moe_offsets_host;
  const ForwardBatch* batch = nullptr;
  int32_t max_query_len = 0;  // longest sequence's query rows this step
  // Steps of one query row per sequence run the split-context decode
  // kernel, its grid and partials sized by step_context_capacity. Its
  // workspace grows in BeginStep for the attention shape seen so far (and in
  // Attention on the first such step, before any shape is known).
  bool decode_step = false;
  // The attention shape of the last decode step (heads, head_dim, window),
  // for sizing the next step's workspace before any capture; num_heads == 0
  // until the first decode.
  kernels::PagedAttentionParams decode_shape;
  DeviceBuffer decode_workspace;
  std::map<int, DeviceBuffer> scratch;
  // The large-M path of weight-only layers: the layer dequantized [out, in]
  // in the compute dtype, sized at load for the largest such layer.
  DeviceBuffer dequant_scratch;
  DeviceBuffer host_read;  // fp32 conversion buffer for ReadToHost
  std::vector<int32_t> row_seq_host;

  // CUDA graphs (see the header). A key is (batch size, context capacity).
  enum class Mode { kEager, kCapture, kReplay };
  struct Graph {
    bool warmed = false;
    uint64_t warm_generation = 0;
    cudaGraphExec_t exec = nullptr;
    uint64_t generation = 0;
  };
  bool graphs_enabled = true;
  Mode mode = Mode::kEager;
  std::pair<int32_t, int32_t> step_key{0, 0};
  bool step_graphable = false;
  int32_t step_context_capacity = 0;
  uint64_t generation = 0;  // bumped when a buffer that ops read or write moves
  std::map<std::pair<int32_t, int32_t>, Graph> graphs;
  GraphStats stats;

  ~Impl() {
    for (auto& [key, graph] : graphs) {
      if (graph.exec != nullptr) cudaGraphExecDestroy(graph.exec);
    }
  }
  // An op enqueues nothing while a graph replays the pass, or once the step
  // has failed (a buffer that could not grow is empty): FinishStep reports
  // the error, and the backend stays usable unless the device faulted.
  bool Skip() const { return mode == Mode::kReplay || first_error != cudaSuccess; }
  // Reserve, counting moves of buffers that a recorded graph may point into.
  void ReserveTracked(DeviceBuffer& buffer, size_t bytes, const char* what) {
    const void* before = buffer.data();
    RecordAllocation(buffer.Reserve(bytes), what, bytes);
    if (buffer.data() != before) ++generation;
  }
  std::unique_ptr<CudaSampling> sampling;  // created by the first SampleRows

  void Record(cudaError_t error, const char* op) {
    if (error != cudaSuccess && first_error == cudaSuccess) {
      first_error = error;
      first_error_op = op;
    }
  }
  // Record for a device allocation of `bytes`: a failure names the size and
  // the room left. The buffer is then empty, and the step's later ops skip
  // (Skip), so no kernel runs on a missing buffer.
  void RecordAllocation(cudaError_t error, const char* what, size_t bytes) {
    if (error != cudaSuccess && first_error == cudaSuccess) {
      first_error = error;
      first_error_op = error == cudaErrorMemoryAllocation ? DescribeDeviceAllocation(what, bytes) : what;
    }
  }
  void RecordBlas(cublasStatus_t status, const char* op) {
    if (status != CUBLAS_STATUS_SUCCESS && first_error == cudaSuccess) {
      first_error = cudaErrorUnknown;
      first_error_op = absl::StrCat(op, " (cuBLAS status ", int(status), ")");
    }
  }
  const int32_t* Meta(int which) const {
    return static_cast<const int32_t*>(meta_device.data()) + meta_offset[which];
  }

  cudaDataType BlasType() const {
    switch (type) {
      case ScalarType::kF16: return CUDA_R_16F;
      case ScalarType::kBF16: return CUDA_R_16BF;
      case ScalarType::kF32: return CUDA_R_32F;
    }
    return CUDA_R_32F;
  }

  // y[rows, out] = x[rows, in] W^T for W [out, in] row-major: in cuBLAS's
  // column-major terms, C[out, rows] = W^T' * x' with W read transposed.
  void Gemm(const Tensor& x, const void* w, int64_t out_features, int64_t in_features, const Tensor& y) {
    if (x.rows == 0) return;
    // One or two rows: the skinny kernel streams the weights at 0.83-0.97 of
    // the copy bandwidth on an H100 (LM head, gate/up), a few points above
    // cuBLAS; from four rows on cuBLAS is as fast or faster
    // (tern-gemm-bench, bench/RESULTS.md).
    const kernels::SkinnyGemmParams skinny{x.rows, out_features, in_features, x.stride, y.stride};
    if (x.rows <= kSkinnyRows && kernels::SkinnyGemmSupported(type, skinny, x.data, w)) {
      Record(kernels::LaunchSkinnyGemm(type, skinny, x.data, w, y.data, stream, pdl), "skinny gemm");
      return;
    }
    const float alpha = 1.0f, beta = 0.0f;
    RecordBlas(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(out_features), int(x.rows), int(in_features), &alpha,
                            w, BlasType(), int(in_features), x.data, BlasType(), int(x.stride), &beta, y.data,
                            BlasType(), int(y.stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  }

  // One cuBLAS grouped GEMM call: group i computes C_i[rows_i, m_i] =
  // B_i[rows_i, k_i] A_i^T for a weight A_i [m_i, k_i] (row-major), in
  // cuBLAS's column-major terms C_i' = A_i'^T B_i'.
  struct GroupedGemm {
    std::vector<int> m, n, k, lda, ldb, ldc;
    std::vector<cublasOperation_t> trans_a, trans_b;
    std::vector<float> alpha, beta;
    std::vector<const void*> pointers;  // [A..., B..., C...] once Finish()ed
    std::vector<const void*> a, b;
    std::vector<void*> c;
    std::vector<int> group_size;
    DeviceBuffer device_pointers;
    void Clear() {
      for (auto* v : {&m, &n, &k, &lda, &ldb, &ldc, &group_size}) v->clear();
      trans_a.clear();
      trans_b.clear();
      alpha.clear();
      beta.clear();
      a.clear();
      b.clear();
      c.clear();
    }
    void Add(const void* weight, int64_t out_features, int64_t in_features, const void* x, int64_t x_stride,
             int64_t rows, void* y, int64_t y_stride) {
      m.push_back(int(out_features));
      n.push_back(int(rows));
      k.push_back(int(in_features));
      lda.push_back(int(in_features));
      ldb.push_back(int(x_stride));
      ldc.push_back(int(y_stride));
      trans_a.push_back(CUBLAS_OP_T);
      trans_b.push_back(CUBLAS_OP_N);
      alpha.push_back(1.0f);
      beta.push_back(0.0f);
      group_size.push_back(1);
      a.push_back(weight);
      b.push_back(x);
      c.push_back(y);
    }
  };
  void GroupedGemmRun(GroupedGemm& g, const char* op) {
    const int groups = int(g.m.size());
    if (groups == 0) return;
    g.pointers.assign(g.a.begin(), g.a.end());
    g.pointers.insert(g.pointers.end(), g.b.begin(), g.b.end());
    g.pointers.insert(g.pointers.end(), g.c.begin(), g.c.end());
    RecordAllocation(g.device_pointers.Reserve(g.pointers.size() * sizeof(void*)), op, g.pointers.size() * sizeof(void*));
    // Pageable source: the copy has read it when the call returns.
    Record(cudaMemcpyAsync(g.device_pointers.data(), g.pointers.data(), g.pointers.size() * sizeof(void*),
                           cudaMemcpyHostToDevice, stream),
           op);
    const auto* arrays = static_cast<const void* const*>(g.device_pointers.data());
    RecordBlas(cublasGemmGroupedBatchedEx(cublas, g.trans_a.data(), g.trans_b.data(), g.m.data(), g.n.data(),
                                          g.k.data(), g.alpha.data(), arrays, BlasType(), g.lda.data(),
                                          arrays + groups, BlasType(), g.ldb.data(), g.beta.data(),
                                          const_cast<void* const*>(arrays + 2 * groups), BlasType(), g.ldc.data(),
                                          groups, g.group_size.data(), CUBLAS_COMPUTE_32F),
               op);
  }
  GroupedGemm moe_first, moe_second;

  absl::StatusOr<DeviceBuffer> ToDevice(const std::vector<TensorView>& parts, size_t* count_out) {
    size_t count = 0;
    for (const auto& part : parts) count += size_t(part.numel());
    DeviceBuffer buffer;
    if (absl::Status s = AllocationStatus(buffer.Reserve(count * element_bytes),
                                          absl::StrCat("allocating weight ", parts.empty() ? "" : parts[0].name,
                                                       parts.size() > 1 ? absl::StrCat(" (+", parts.size() - 1, " fused)") : ""),
                                          count * element_bytes);
        !s.ok()) {
      return s;
    }
    size_t offset = 0;
    std::vector<float> staging;
    DeviceBuffer staging_device;
    for (const auto& part : parts) {
      const size_t n = size_t(part.numel());
      uint8_t* dst = static_cast<uint8_t*>(buffer.data()) + offset * element_bytes;
      const bool same = (part.dtype == DType::kF32 && type == ScalarType::kF32) ||
                        (part.dtype == DType::kF16 && type == ScalarType::kF16) ||
                        (part.dtype == DType::kBF16 && type == ScalarType::kBF16);
      if (same) {
        RETURN_IF_CUDA(cudaMemcpy(dst, part.data, part.nbytes, cudaMemcpyHostToDevice), "uploading weights");
      } else {
        staging.resize(n);
        ConvertToFloat(part.dtype, part.data, n, staging.data());
        if (absl::Status s = AllocationStatus(staging_device.Reserve(n * sizeof(float)), "allocating weight staging",
                                              n * sizeof(float));
            !s.ok()) {
          return s;
        }
        RETURN_IF_CUDA(cudaMemcpy(staging_device.data(), staging.data(), n * sizeof(float), cudaMemcpyHostToDevice),
                       "uploading weights");
        RETURN_IF_CUDA(kernels::LaunchFromFloat(type, int64_t(n), static_cast<const float*>(staging_device.data()),
                                                dst, nullptr),
                       "converting weights");
        RETURN_IF_CUDA(cudaDeviceSynchronize(), "converting weights");
      }
      offset += n;
    }
    *count_out = count;
    return buffer;
  }

};

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

absl::StatusOr<std::unique_ptr<DeviceWeight>> CudaBackend::UploadWeight(const TensorView& tensor) {
  if (!IsFloatDType(tensor.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", tensor.name, "\" is not F32/F16/BF16"));
  }
  size_t count = 0;
  auto buffer = impl_->ToDevice({tensor}, &count);
  if (!buffer.ok()) return buffer.status();
  return std::unique_ptr<DeviceWeight>(new CudaWeight(tensor.shape, std::move(*buffer)));
}

absl::StatusOr<std::unique_ptr<DeviceWeight>> CudaBackend::UploadFp32Table(const std::vector<float>& values) {
  DeviceBuffer buffer;
  RETURN_IF_ERROR(AllocationStatus(buffer.Reserve(values.size() * sizeof(float)), "allocating a table",
                                   values.size() * sizeof(float)));
  RETURN_IF_CUDA(cudaMemcpy(buffer.data(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice),
                 "uploading a table");
  return std::unique_ptr<DeviceWeight>(new CudaWeight({int64_t(values.size())}, std::move(buffer)));
}

namespace {

// An MoA plan's span tables in device memory (attention_span_tables.h).
class CudaAttentionSpans final : public AttentionSpans {
 public:
  explicit CudaAttentionSpans(AttentionSpanTables tables) : tables_(std::move(tables)) {}
  absl::Status Upload() {
    RETURN_IF_ERROR(Copy(tables_.bucket_max_length, &max_length_));
    RETURN_IF_ERROR(Copy(tables_.sinks, &sinks_));
    RETURN_IF_ERROR(Copy(tables_.alphas, &alphas_));
    return Copy(tables_.betas, &betas_);
  }
  kernels::AttentionSpanRules Layer(int32_t layer) const {
    return tables_.Layer(layer, static_cast<const int32_t*>(max_length_.data()),
                         static_cast<const int32_t*>(sinks_.data()), static_cast<const double*>(alphas_.data()),
                         static_cast<const double*>(betas_.data()));
  }

 private:
  template <typename T>
  static absl::Status Copy(const std::vector<T>& values, DeviceBuffer* buffer) {
    RETURN_IF_ERROR(AllocationStatus(buffer->Reserve(values.size() * sizeof(T)), "allocating attention span tables",
                                     values.size() * sizeof(T)));
    RETURN_IF_CUDA(cudaMemcpy(buffer->data(), values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice),
                   "uploading attention span tables");
    return absl::OkStatus();
  }
  AttentionSpanTables tables_;
  DeviceBuffer max_length_, sinks_, alphas_, betas_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AttentionSpans>> CudaBackend::UploadAttentionSpans(const MoaPlan& plan) {
  auto spans = std::make_unique<CudaAttentionSpans>(AttentionSpanTables::FromPlan(plan));
  RETURN_IF_ERROR(spans->Upload());
  return std::unique_ptr<AttentionSpans>(std::move(spans));
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareLinear(const TensorView& weight,
                                                                         const TensorView* bias) {
  std::vector<TensorView> biases;
  if (bias != nullptr) biases.push_back(*bias);
  return PrepareFusedLinear({weight}, biases);
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareFusedLinear(const std::vector<TensorView>& weights,
                                                                              const std::vector<TensorView>& biases) {
  auto shape = CheckFusedLinear(weights, biases);
  if (!shape.ok()) return shape.status();
  size_t count = 0;
  auto weight = impl_->ToDevice(weights, &count);
  if (!weight.ok()) return weight.status();
  DeviceBuffer bias;
  if (!biases.empty()) {
    auto uploaded = impl_->ToDevice(biases, &count);
    if (!uploaded.ok()) return uploaded.status();
    bias = std::move(*uploaded);
  }
  return std::unique_ptr<LinearWeight>(new CudaLinear(shape->out_features, shape->in_features, std::move(*weight),
                                                      std::move(bias), !biases.empty()));
}

absl::Status CudaBackend::SupportsWeightScheme(const LinearScheme& scheme) const {
  if (scheme.scheme == WeightScheme::kDense) return absl::OkStatus();
  if (IsWeightOnly(scheme.scheme)) {
    if (scheme.group_size == 0 || scheme.group_size % 16 == 0) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat("the cuda backend runs ", scheme.ToString(),
                                                 " only with groups of a multiple of 16 input channels, or one "
                                                 "group per output channel"));
  }
  if (scheme.scheme == WeightScheme::kW8A8Int8) return absl::OkStatus();
  if (scheme.scheme == WeightScheme::kW8A8Fp8) {
    if (impl_->compute_capability >= 89) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat("the cuda backend runs ", scheme.ToString(),
                                                 " on compute capability 8.9 or later (this device: ",
                                                 impl_->compute_capability / 10, ".",
                                                 impl_->compute_capability % 10, ")"));
  }
  return Backend::SupportsWeightScheme(scheme);
}

absl::StatusOr<std::unique_ptr<LinearWeight>> CudaBackend::PrepareQuantizedLinear(const QuantizedLinear& weight) {
  RETURN_IF_ERROR(SupportsWeightScheme(weight.scheme));
  if (IsW8A8(weight.scheme.scheme)) {
    auto linear = CudaW8A8Linear::Create(weight);
    if (!linear.ok()) return linear.status();
    return std::unique_ptr<LinearWeight>(std::move(*linear));
  }
  auto linear = CudaWeightOnlyLinear::Create(weight, impl_->type);
  if (!linear.ok()) return linear.status();
  RETURN_IF_CUDA(impl_->dequant_scratch.Reserve((*linear)->DenseBytes()),
                 "allocating the weight-only dequantization scratch");
  ++impl_->generation;  // the scratch may have moved
  return std::unique_ptr<LinearWeight>(std::move(*linear));
}

absl::StatusOr<std::unique_ptr<KvCache>> CudaBackend::AllocateKvCache(const KvCacheSpec& spec) {
  if (absl::Status status = ValidateKvCacheSpec(spec); !status.ok()) return status;
  if (spec.quantized() && spec.head_dim > 256) {
    return absl::UnimplementedError(absl::StrCat("a ", KvCacheDtypeName(spec.dtype), " KV cache needs head_dim <= 256; the model has ",
                                                 spec.head_dim));
  }
  Impl* impl = impl_.get();
  auto cache = std::make_unique<CudaKvCache>(spec, impl_->element_bytes, impl_->stream,
                                             [impl](cudaError_t error, const char* op) { impl->Record(error, op); });
  if (auto status = cache->Allocate(); !status.ok()) return status;
  RETURN_IF_CUDA(cudaStreamSynchronize(impl_->stream), "clearing the KV cache");
  return std::unique_ptr<KvCache>(std::move(cache));
}

size_t CudaBackend::KvBlockBytes(const KvCacheSpec& spec) const {
  return KvCacheBlockBytes(spec, impl_->element_bytes);
}

std::optional<size_t> CudaBackend::FreeDeviceMemory() const {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return std::nullopt;
  return free;
}

int32_t CudaBackend::DecodeGraphBatchSize(int32_t num_seqs) const {
  if (!options_.cuda_graphs || !impl_->graphs_enabled) return 0;
  return GraphBatchBucket(num_seqs);
}

std::vector<std::pair<int32_t, int32_t>> CudaBackend::DecodeGraphShapes(int32_t max_seqs, int32_t max_context) const {
  if (!options_.cuda_graphs || !impl_->graphs_enabled) return {};
  return DecodeGraphKeyShapes(max_seqs, max_context);
}

CudaBackend::GraphStats CudaBackend::graph_stats() const { return impl_->stats; }

absl::Status CudaBackend::BeginStep(const ForwardBatch& batch) {
  Impl& m = *impl_;
  if (m.poisoned) return absl::InternalError("the CUDA backend failed earlier and cannot run more steps");
  m.batch = &batch;
  // first_error keeps what was recorded since the last FinishStep: the
  // step's block copies come before BeginStep, and fail this step.
  m.mode = Impl::Mode::kEager;
  const int32_t num_seqs = batch.num_seqs();
  m.step_context_capacity = ContextCapacity(batch.context_lens);
  m.step_graphable = options_.cuda_graphs && m.graphs_enabled &&
                     IsGraphBucket(num_seqs) && batch.IsDecodeOnly();
  m.step_key = {num_seqs, m.step_context_capacity};

  std::vector<int32_t>& row_seq = m.row_seq_host;
  row_seq.resize(size_t(batch.num_tokens()));
  m.max_query_len = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    for (int32_t r = batch.query_start[s]; r < batch.query_start[s + 1]; ++r) row_seq[r] = s;
    m.max_query_len = std::max(m.max_query_len, batch.query_start[s + 1] - batch.query_start[s]);
  }
  const std::vector<int32_t>* lists[Impl::kNumMeta] = {
      &batch.token_ids,    &batch.positions,   &batch.slots,       &batch.query_start, &batch.context_lens,
      &batch.block_indptr, &batch.logits_rows, &row_seq,           &batch.block_ids};
  size_t total = 0;
  for (int i = 0; i < Impl::kNumMeta; ++i) {
    m.meta_offset[i] = total;
    total += lists[i]->size();
  }
  // A graph step reserves room for the largest block table its key allows
  // (every sequence at the context capacity, one-token blocks at worst), so
  // the device buffer does not move while the key's graph lives.
  size_t reserve = total;
  if (m.step_graphable) reserve = m.meta_offset[Impl::kBlockIds] + size_t(num_seqs) * m.step_context_capacity;
  if (total > m.pinned_elems) {
    if (m.pinned != nullptr) cudaFreeHost(m.pinned);
    m.pinned = nullptr;
    m.pinned_elems = 0;
    // The pinned buffer may still feed an earlier step's copies.
    RETURN_IF_CUDA(cudaStreamSynchronize(m.stream), "waiting for the previous step");
    RETURN_IF_CUDA(cudaMallocHost(&m.pinned, total * 2 * sizeof(int32_t)), "allocating pinned staging");
    m.pinned_elems = total * 2;
  }
  if (reserve * sizeof(int32_t) > m.meta_device.bytes()) {
    m.ReserveTracked(m.meta_device, 2 * reserve * sizeof(int32_t), "allocating step metadata");
  }
  for (int i = 0; i < Impl::kNumMeta; ++i) {
    if (!lists[i]->empty()) {
      std::memcpy(m.pinned + m.meta_offset[i], lists[i]->data(), lists[i]->size() * sizeof(int32_t));
    }
  }
  // One copy for all the step's metadata.
  if (total > 0) {
    m.Record(cudaMemcpyAsync(m.meta_device.data(), m.pinned, total * sizeof(int32_t), cudaMemcpyHostToDevice,
                             m.stream),
             "uploading step metadata");
  }
  m.decode_step = num_seqs > 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    m.decode_step = m.decode_step && batch.query_start[s + 1] - batch.query_start[s] == 1;
  }
  if (m.decode_step && m.decode_shape.num_heads > 0) {
    m.decode_shape.num_seqs = num_seqs;
    m.ReserveTracked(m.decode_workspace,
                     kernels::PagedDecodeAttentionWorkspaceBytes(m.decode_shape, m.step_context_capacity),
                     "allocating the decode attention workspace");
  }
  // An error already (the block copies, a buffer that could not grow): the
  // step fails with it, reported and cleared as FinishStep does (a fault
  // poisons the backend).
  if (m.first_error != cudaSuccess) return FinishStep();

  if (m.step_graphable) {
    Impl::Graph& graph = m.graphs[m.step_key];
    if (graph.exec != nullptr && graph.generation == m.generation) {
      m.mode = Impl::Mode::kReplay;
    } else if (graph.warmed && graph.warm_generation == m.generation) {
      if (graph.exec != nullptr) {
        cudaGraphExecDestroy(graph.exec);
        graph.exec = nullptr;
      }
      RETURN_IF_CUDA(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "starting graph capture");
      m.mode = Impl::Mode::kCapture;
    }
  }
  return absl::OkStatus();
}

void CudaBackend::EndForward() {
  Impl& m = *impl_;
  switch (m.mode) {
    case Impl::Mode::kEager:
      ++m.stats.eager;
      if (m.step_graphable) {
        // Every buffer this pass touched now has its size: capture next time.
        Impl::Graph& graph = m.graphs[m.step_key];
        graph.warmed = true;
        graph.warm_generation = m.generation;
      }
      break;
    case Impl::Mode::kCapture: {
      cudaGraph_t recorded = nullptr;
      const cudaError_t ended = cudaStreamEndCapture(m.stream, &recorded);
      m.Record(ended, "ending graph capture");
      Impl::Graph& graph = m.graphs[m.step_key];
      if (ended == cudaSuccess && m.first_error == cudaSuccess) {
        cudaGraphExec_t exec = nullptr;
        const cudaError_t made = cudaGraphInstantiate(&exec, recorded, 0);
        m.Record(made, "instantiating a graph");
        if (made == cudaSuccess) {
          graph.exec = exec;
          graph.generation = m.generation;
          ++m.stats.captured;
          // Captured work did not run: run it now.
          m.Record(cudaGraphLaunch(exec, m.stream), "launching a graph");
        }
      }
      if (recorded != nullptr) cudaGraphDestroy(recorded);
      break;
    }
    case Impl::Mode::kReplay:
      ++m.stats.replayed;
      m.Record(cudaGraphLaunch(m.graphs[m.step_key].exec, m.stream), "launching a graph");
      break;
  }
  m.mode = Impl::Mode::kEager;
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

// Act-order layers gather x into stored column order first. Up to
// kWeightOnlyGemmFastRows rows run the tensor-core weight-only GEMM on the
// packed codes; more rows (and fp32) dequantize the layer into
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
  if (x.rows <= kernels::kWeightOnlyGemmFastRows && kernels::WeightOnlyGemmSupported(m.type, w.weight(), p, x.data)) {
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
  ws.acc = Scratch(kW8A8AccSlot, x.rows, elements(w.out_features() * 4)).data;
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
    impl_->Record(kernels::LaunchWriteKvQuantized(impl_->type, p, k.data, v.data, impl_->Meta(Impl::kSlots),
                                                  static_cast<uint8_t*>(c.k(layer)), static_cast<uint8_t*>(c.v(layer)),
                                                  c.k_scales(layer), c.v_scales(layer), impl_->stream),
                  "quantized kv write");
    return;
  }
  impl_->Record(kernels::LaunchWriteKv(impl_->type, k.rows, c.spec().num_kv_heads, c.spec().head_dim, k.data, k.stride,
                                       v.data, v.stride, impl_->Meta(Impl::kSlots), c.k(layer), c.v(layer),
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
                                            impl_->Meta(Impl::kSlots), q.data, k.data, v.data, c.k(layer),
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
  p.block_indptr = impl_->Meta(Impl::kBlockIndptr);
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

void CudaBackend::MoeFfn(Tensor x, Tensor router_logits, const MoeWeights& experts, Tensor out) {
  // Routing and the stable sort by expert run on the device; the host reads
  // back only the per-expert row offsets (one small copy and one wait per
  // layer) to size one grouped GEMM call for gate and up and one for down.
  // That wait rules out graphs for MoE models.
  Impl& m = *impl_;
  m.graphs_enabled = false;
  CHECK(m.mode == Impl::Mode::kEager) << "MoeFfn cannot be recorded into a graph";
  if (m.Skip()) return;  // the step failed already
  const int32_t num_experts = int32_t(router_logits.cols);
  const int32_t top_k = experts.top_k;
  const int64_t tokens = x.rows;
  const int64_t hidden = x.cols;
  const int64_t n = tokens * top_k;
  if (tokens == 0) return;
  const int64_t inter = experts.gate[0]->out_features();

  // Routing outputs: ids, weights, offsets, sorted tokens, sorted weights, entry rows.
  m.RecordAllocation(m.moe_routing.Reserve(size_t(5 * n + num_experts + 1) * sizeof(int32_t)), "moe routing buffers",
                     size_t(5 * n + num_experts + 1) * sizeof(int32_t));
  if (m.Skip()) return;
  auto* base = static_cast<int32_t*>(m.moe_routing.data());
  int32_t* topk_ids = base;
  float* topk_weights = reinterpret_cast<float*>(base + n);
  int32_t* sorted_tokens = base + 2 * n;
  float* sorted_weights = reinterpret_cast<float*>(base + 3 * n);
  int32_t* entry_rows = base + 4 * n;
  int32_t* offsets = base + 5 * n;
  const kernels::MoeRoutingParams routing{tokens, num_experts, top_k, router_logits.stride};
  m.Record(kernels::LaunchMoeRoute(m.type, routing, router_logits.data, topk_ids, topk_weights, offsets,
                                   sorted_tokens, sorted_weights, entry_rows, m.stream),
           "moe routing");
  m.moe_offsets_host.resize(size_t(num_experts) + 1);
  m.Record(cudaMemcpyAsync(m.moe_offsets_host.data(), offsets, (num_experts + 1) * sizeof(int32_t),
                           cudaMemcpyDeviceToHost, m.stream),
           "moe offsets");
  m.Record(cudaStreamSynchronize(m.stream), "moe offsets");
  if (m.first_error != cudaSuccess) return;

  Tensor in = Scratch(100, n, hidden);
  Tensor gate_up = Scratch(101, n, 2 * inter);
  Tensor act = Scratch(102, n, inter);
  Tensor expert_out = Scratch(103, n, hidden);
  if (m.Skip()) return;
  m.Record(kernels::LaunchGatherRows(m.type, n, hidden, sorted_tokens, x.data, x.stride, in.data, in.stride, m.stream),
           "moe gather");

  if (experts.gate[0]->scheme().scheme != WeightScheme::kDense) {
    // Quantized experts: one weight-only linear per expert and projection.
    for (int32_t e = 0; e < num_experts; ++e) {
      const int32_t row = m.moe_offsets_host[e];
      const int32_t rows = m.moe_offsets_host[e + 1] - row;
      if (rows == 0) continue;
      Linear(in.Rows(row, rows), *experts.gate[e], gate_up.Rows(row, rows).Columns(0, inter));
      Linear(in.Rows(row, rows), *experts.up[e], gate_up.Rows(row, rows).Columns(inter, inter));
    }
    SiluMul(gate_up, act);
    for (int32_t e = 0; e < num_experts; ++e) {
      const int32_t row = m.moe_offsets_host[e];
      const int32_t rows = m.moe_offsets_host[e + 1] - row;
      if (rows > 0) Linear(act.Rows(row, rows), *experts.down[e], expert_out.Rows(row, rows));
    }
    m.Record(kernels::LaunchMoeCombine(m.type, tokens, top_k, hidden, entry_rows, sorted_weights, expert_out.data,
                                       expert_out.stride, out.data, out.stride, m.stream),
             "moe combine");
    return;
  }
  // Groups: gate and up of every expert with rows, then down.
  const auto at = [&](const Tensor& t, int64_t row, int64_t col) {
    return static_cast<void*>(static_cast<uint8_t*>(t.data) + (row * t.stride + col) * int64_t(m.element_bytes));
  };
  Impl::GroupedGemm& first = m.moe_first;
  Impl::GroupedGemm& second = m.moe_second;
  first.Clear();
  second.Clear();
  for (int32_t e = 0; e < num_experts; ++e) {
    const int32_t row = m.moe_offsets_host[e];
    const int32_t rows = m.moe_offsets_host[e + 1] - row;
    if (rows == 0) continue;
    const auto& gate = static_cast<const CudaLinear&>(*experts.gate[e]);
    const auto& up = static_cast<const CudaLinear&>(*experts.up[e]);
    const auto& down = static_cast<const CudaLinear&>(*experts.down[e]);
    first.Add(gate.weight(), inter, hidden, at(in, row, 0), in.stride, rows, at(gate_up, row, 0), gate_up.stride);
    first.Add(up.weight(), inter, hidden, at(in, row, 0), in.stride, rows, at(gate_up, row, inter), gate_up.stride);
    second.Add(down.weight(), hidden, inter, at(act, row, 0), act.stride, rows, at(expert_out, row, 0),
               expert_out.stride);
  }
  m.GroupedGemmRun(first, "moe gate/up");
  SiluMul(gate_up, act);
  m.GroupedGemmRun(second, "moe down");
  m.Record(kernels::LaunchMoeCombine(m.type, tokens, top_k, hidden, entry_rows, sorted_weights, expert_out.data,
                                     expert_out.stride, out.data, out.stride, m.stream),
           "moe combine");
}

absl::Status CudaBackend::Health() const {
  if (!impl_->poisoned) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("the CUDA device failed and cannot run more steps: ", impl_->fatal_error));
}

absl::Status CudaBackend::SampleRows(Tensor logits, absl::Span<const SampleRequest> requests,
                                     std::vector<absl::StatusOr<SampledToken>>* out) {
  Impl& m = *impl_;
  if (m.sampling == nullptr) m.sampling = std::make_unique<CudaSampling>();
  const absl::Status prepared = m.sampling->Prepare(logits, requests);
  // A step that failed already samples nothing (its logits may be missing).
  if (prepared.ok() && m.first_error == cudaSuccess) m.Record(m.sampling->Enqueue(m.type, logits, m.stream), "sampling");
  // The step's one synchronization; it reports the forward pass's errors too.
  if (absl::Status finished = FinishStep(); !finished.ok()) return finished;
  if (!prepared.ok()) return prepared;
  m.sampling->Collect(requests, out);
  return absl::OkStatus();
}

absl::Status CudaBackend::FinishStep() {
  Impl& m = *impl_;
  if (m.mode != Impl::Mode::kEager) {
    // A pass that never reached EndForward: drop a half-recorded graph.
    if (m.mode == Impl::Mode::kCapture) {
      cudaGraph_t recorded = nullptr;
      cudaStreamEndCapture(m.stream, &recorded);
      if (recorded != nullptr) cudaGraphDestroy(recorded);
      m.Record(cudaErrorStreamCaptureInvalidated, "a step ended during graph capture");
    }
    m.mode = Impl::Mode::kEager;
  }
  m.Record(cudaStreamSynchronize(m.stream), "step");
  m.Record(cudaGetLastError(), "step");
  if (m.first_error == cudaSuccess) return absl::OkStatus();
  // Errors that are not sticky (a bad launch configuration) leave the
  // context usable; a fault poisons it for good.
  const cudaError_t probe = cudaDeviceSynchronize();
  const absl::Status status = CudaStatus(m.first_error, m.first_error_op);
  if (probe != cudaSuccess) {
    m.poisoned = true;
    m.fatal_error = std::string(status.message());
  }
  m.first_error = cudaSuccess;
  return status;
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
