// Internal to the CUDA DiT ops (cuda_dit_ops.cc: creation, weights and the
// DiT's ops; cuda_dit_pass.cc: a pass's staging, graphs and host reads;
// cuda_dit_gemm.cc: the linear layers' cuBLASLt plans; cuda_dit_image_ops.cc:
// the VAE decoder's ops): the prepared weights' device types, the GEMM plans
// and CudaDitOps::Impl, the state those files share. Nothing else includes it.
//
// Built only with TERN_WITH_CUDA. One thread at a time, as CudaDitOps.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/common/scalar_type.h"
#include "kernels/dit/dit_kernels.h"
#include "runtime/base/check.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/cuda/pass_graph.h"
#include "runtime/cuda/step_errors.h"
#include "runtime/dit/cuda_dit_ops.h"
#include "runtime/model/dtype.h"

namespace tern::runtime {
namespace cuda_dit {


using kernels::ScalarType;

class CudaDitLinear final : public DitLinear {
 public:
  int64_t out_features() const override { return out; }
  int64_t in_features() const override { return in; }
  size_t bytes() const override { return weight.bytes() + (has_bias ? bias.bytes() : 0); }
  int64_t out = 0, in = 0;
  DeviceBuffer weight;  // [out, in] compute dtype
  DeviceBuffer bias;    // [out] compute dtype, when has_bias
  bool has_bias = false;
};

// A convolution as a GEMM over im2col rows: the weight permuted to [out,
// k, k, in] (the columns' order), a CudaDitLinear [out, k*k*in].
class CudaDitConv final : public DitConv {
 public:
  int32_t out_channels() const override { return out; }
  int32_t in_channels() const override { return in; }
  int32_t kernel() const override { return k; }
  size_t bytes() const override { return gemm.bytes(); }
  int32_t out = 0, in = 0, k = 0;
  CudaDitLinear gemm;
};

class CudaDitTable final : public DitTable {
 public:
  int64_t rows() const override { return num_rows; }
  int64_t cols() const override { return num_cols; }
  size_t bytes() const override { return values.bytes(); }
  int64_t num_rows = 0, num_cols = 0;
  DeviceBuffer values;  // [rows, cols] compute dtype
};

// DiTFastAttn's cache pool memory (AllocateBuffer).
class CudaDitBuffer final : public DitBuffer {
 public:
  Tensor tensor() const override { return Tensor{memory.data(), dtype, rows, cols, cols}; }
  size_t bytes() const override { return memory.bytes(); }
  int64_t rows = 0, cols = 0;
  DType dtype = DType::kBF16;
  DeviceBuffer memory;
};

inline size_t ElementBytes(ScalarType type) { return type == ScalarType::kF32 ? 4 : 2; }

inline cudaDataType BlasType(ScalarType type) {
  switch (type) {
    case ScalarType::kF16: return CUDA_R_16F;
    case ScalarType::kBF16: return CUDA_R_16BF;
    case ScalarType::kF32: return CUDA_R_32F;
  }
  return CUDA_R_32F;
}

// Largest power of two <= 16 that divides every value.
inline uint32_t Alignment(std::initializer_list<uint64_t> values) {
  uint32_t align = 16;
  for (uint64_t v : values) {
    while (align > 1 && v % align != 0) align /= 2;
  }
  return align;
}

enum OpKind { kLinearOp, kAttentionOp, kOtherOp };

// One linear layer shape: its cuBLASLt descriptors and its one algorithm.
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t weight_layout = nullptr;
  cublasLtMatmulAlgo_t algo{};
  uint32_t x_align = 16, out_align = 16;
  struct Layouts {
    cublasLtMatrixLayout_t x = nullptr, out = nullptr;
  };
  std::map<int64_t, Layouts> by_rows;  // created the first time a row count is seen

  ~GemmPlan() {
    for (auto& [rows, l] : by_rows) {
      if (l.x != nullptr) cublasLtMatrixLayoutDestroy(l.x);
      if (l.out != nullptr) cublasLtMatrixLayoutDestroy(l.out);
    }
    if (weight_layout != nullptr) cublasLtMatrixLayoutDestroy(weight_layout);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

// Attention as two GEMMs for one (tokens, head_dim, qkv stride, out stride):
// a (sample, head)'s scores S [L, L] fp32 = scale * Q K^T, then O = P V
// with P the rows' softmax in the compute dtype (cuda_dit_matmul_attention.cc).
struct MatmulAttentionPlan {
  cublasLtMatmulDesc_t scores_desc = nullptr, output_desc = nullptr;
  cublasLtMatrixLayout_t k = nullptr, q = nullptr, s = nullptr;  // the scores GEMM's A, B, D
  cublasLtMatrixLayout_t v = nullptr, p = nullptr, o = nullptr;  // the output GEMM's A, B, D
  cublasLtMatmulAlgo_t scores_algo{}, output_algo{};

  ~MatmulAttentionPlan() {
    for (cublasLtMatrixLayout_t l : {k, q, s, v, p, o}) {
      if (l != nullptr) cublasLtMatrixLayoutDestroy(l);
    }
    if (scores_desc != nullptr) cublasLtMatmulDescDestroy(scores_desc);
    if (output_desc != nullptr) cublasLtMatmulDescDestroy(output_desc);
  }
};
using MatmulAttentionKey = std::tuple<int64_t, int32_t, int64_t, int64_t>;

// in, out, bias, x stride, out stride, reference rows, GELU epilogue.
using PlanKey = std::tuple<int64_t, int64_t, bool, int64_t, int64_t, int64_t, bool>;

// Rows of one convolution GEMM: a sample's pixels go through im2col this
// many at a time (a split fixed by the layer's shape, so batch invariance
// holds): at most 256 MiB of columns, 4096 to 65536 rows. Large chunks
// matter: a VAE layer's GEMM is only 128 to 512 outputs wide, so its row
// count alone fills the device (4096 rows of 128 outputs are 32 tiles).
inline int64_t ConvChunkPixels(int64_t pixels, int64_t columns, size_t element_bytes) {
  int64_t chunk = 4096;
  while (chunk < 65536 && 2 * chunk * columns * int64_t(element_bytes) <= (int64_t(256) << 20)) chunk *= 2;
  return std::min(chunk, pixels);
}


}  // namespace cuda_dit

struct CudaDitOps::Impl {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  DeviceBuffer workspace;
  kernels::ScalarType type = kernels::ScalarType::kBF16;
  DType dtype = DType::kBF16;
  size_t element_bytes = 2;
  int64_t gemm_reference_batch = 64;
  bool gemm_autotune = true;
  bool w8a8_fp8_fast_accumulation = false;
  CudaDitOps::GemmTuning tuning;
  bool graphs_enabled = true;
  bool profile = false;

  StepErrors errors;     // the pass's first failure; a fault poisons the ops
  absl::Status pending;  // a failed ReadToHost, for the next BeginStep

  // The pass.
  int64_t batch = 0;
  bool eager_pass = false;          // DitStep::eager, or past the variant graphs' cap: no graph
  int64_t linear_rows_per_sample = 0;  // LinearSamples' rows per sample; 0: from the batch
  std::vector<float> timesteps;      // [B] host
  size_t labels_offset = 0;          // [B] int32 in the staging area, staged by BeginStep
  std::map<int, DeviceBuffer> scratch;
  struct QuantizedSlot {
    DeviceBuffer codes, scales;
  };
  std::map<int, QuantizedSlot> quantized_scratch;  // QuantizedScratch's codes and row scales
  DeviceBuffer im2col;          // a convolution chunk's columns
  DeviceBuffer norm_workspace;  // GroupNorm's partial moments and statistics
  DeviceBuffer read_buffer;  // ReadToHost's fp32 conversion
  DeviceBuffer w8a8_codes, w8a8_scales, w8a8_acc;  // a W8A8 linear's activation codes, row scales, sums
  DeviceBuffer attention_scores, attention_probs;  // MatmulAttention's S (fp32) and P of one (sample, head)

  // Host inputs of a pass: pinned regions handed out in op order from
  // offset 0 (reset by BeginStep), each with a device twin at the same
  // offset, so a replayed graph reads the new pass's values from the
  // addresses it recorded. When a pass outgrows the area, the regions it
  // already staged move to the new buffers at the same offsets (host bytes
  // copied, device bytes uploaded again): an op may read a region after a
  // later Stage (EmbedClasses reads the labels), so device addresses are
  // taken at use time, never kept across a Stage. Outgrown buffers (host
  // and device) stay alive until FinishStep: work enqueued earlier in the
  // pass may still read them.
  char* pinned = nullptr;
  size_t pinned_bytes = 0;
  size_t staged = 0;
  std::unique_ptr<DeviceBuffer> staging_device = std::make_unique<DeviceBuffer>();
  std::vector<char*> retired_pinned;
  std::vector<std::unique_ptr<DeviceBuffer>> retired_device;

  std::map<cuda_dit::PlanKey, std::unique_ptr<cuda_dit::GemmPlan>> plans;
  std::map<cuda_dit::MatmulAttentionKey, std::unique_ptr<cuda_dit::MatmulAttentionPlan>> matmul_attention_plans;

  // Graphs by pass (runtime/cuda/pass_graph.h).
  using Mode = PassGraph::Mode;
  // A graph records the ops of one (pass kind, batch, image height, image
  // width, variant): a pass of the same kind and batch at another image
  // shape (a VAE decoder at another latent size) issues other ops on other
  // shapes; DiTFastAttn passes differ by their rows' plan steps (variant).
  using GraphKey = std::tuple<int32_t, int64_t, int32_t, int32_t, uint64_t>;
  // Graphs of passes with a variant, at most: step-level batching makes many
  // combinations of plan steps; past the cap a new one runs eagerly.
  static constexpr size_t kMaxVariantGraphs = 512;
  size_t variant_graphs = 0;
  Mode mode = Mode::kEager;
  GraphKey pass_key{};
  std::map<GraphKey, PassGraph> graphs;
  uint64_t generation = 0;  // bumped when a buffer that ops touch moves
  uint64_t signature = 0;   // the pass's op sequence, hashed
  GraphStats stats;

  // Profiling.
  std::vector<cudaEvent_t> events;
  std::vector<cuda_dit::OpKind> event_kinds;
  size_t events_used = 0;
  OpTimes times;

  ~Impl() {
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    plans.clear();
    if (lt != nullptr) cublasLtDestroy(lt);
    if (pinned != nullptr) cudaFreeHost(pinned);
    for (char* p : retired_pinned) cudaFreeHost(p);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  void Record(cudaError_t error, const std::string& op) { errors.Record(error, op); }
  void RecordBlas(cublasStatus_t status, const std::string& op) { errors.RecordBlas(status, op); }
  void Fail(const std::string& op) { Record(cudaErrorUnknown, op); }

  void Mix(uint64_t v) { signature = (signature ^ v) * 0x100000001b3ULL + 0x9e3779b97f4a7c15ULL; }
  void Mix(const Tensor& t) {
    Mix(reinterpret_cast<uintptr_t>(t.data));
    Mix(uint64_t(t.rows));
    Mix(uint64_t(t.cols));
    Mix(uint64_t(t.stride));
  }

  // Every op starts here: hashes the op, times it when profiling; false
  // when the op's device work must not be enqueued (a replayed graph has it).
  bool Enter(cuda_dit::OpKind kind, uint64_t op_id) {
    Mix(op_id);
    if (profile) MarkEvent(kind);
    return mode != Mode::kReplay;
  }
  void MarkEvent(cuda_dit::OpKind kind) {
    if (events_used == events.size()) {
      cudaEvent_t e = nullptr;
      Record(cudaEventCreate(&e), "profiling event");
      events.push_back(e);
      event_kinds.push_back(kind);
    }
    event_kinds[events_used] = kind;
    Record(cudaEventRecord(events[events_used], stream), "profiling event");
    ++events_used;
  }

  // A linear's rows per sample: LinearSamples' own, else the pass's.
  int64_t LinearRowsPerSample(int64_t rows) const {
    return linear_rows_per_sample > 0 ? linear_rows_per_sample : RowsPerSample(rows);
  }
  // Host int32 values staged in one region, uploaded on the stream: their
  // device address, valid until the next Stage.
  const int32_t* StageInts(std::initializer_list<absl::Span<const int32_t>> parts, bool enqueue, const char* op) {
    size_t count = 0;
    for (const auto& p : parts) count += p.size();
    auto region = Stage(std::max<size_t>(count, 1) * sizeof(int32_t));
    if (region.first == nullptr) return nullptr;
    int32_t* host = static_cast<int32_t*>(region.first);
    for (const auto& p : parts) host = std::copy(p.begin(), p.end(), host);
    if (enqueue) {  // a replayed graph holds the copy
      Record(cudaMemcpyAsync(region.second, region.first, count * sizeof(int32_t), cudaMemcpyHostToDevice, stream),
             op);
    }
    return static_cast<const int32_t*>(region.second);
  }

  int64_t RowsPerSample(int64_t rows) const {
    CHECK(batch > 0 && rows % batch == 0) << rows << " rows in a step of " << batch << " samples";
    return rows / batch;
  }

  // A staged host input of `bytes`: {pinned host, device twin}. Valid
  // until the next Stage call (which may move the area); use StagedDevice
  // for a region read later in the pass.
  std::pair<void*, void*> Stage(size_t bytes) {
    const size_t offset = staged;
    staged += (bytes + 255) / 256 * 256;
    if (staged > pinned_bytes || staged > staging_device->bytes()) {
      if (mode != Mode::kEager) {
        // A captured or replayed pass stages what its key's eager pass
        // staged; growing would move addresses the graph records. Only a
        // caller that issues other host inputs under one key gets here.
        Fail(absl::StrCat("host staging grew ", mode == Mode::kCapture ? "during graph capture" : "in a replayed pass",
                          " (", staged, " bytes staged, ", std::min(pinned_bytes, staging_device->bytes()),
                          " recorded): a pass of one kind, batch and image shape must issue the same ops"));
        return {nullptr, nullptr};
      }
      const size_t size = std::max(staged * 2, size_t(1) << 16);
      if (staged > pinned_bytes) {
        char* grown = nullptr;
        Record(cudaMallocHost(&grown, size), "allocating pinned staging");
        if (grown == nullptr) return {nullptr, nullptr};
        if (pinned != nullptr) {
          std::memcpy(grown, pinned, offset);
          retired_pinned.push_back(pinned);
        }
        pinned = grown;
        pinned_bytes = size;
      }
      if (staged > staging_device->bytes()) {
        auto grown = std::make_unique<DeviceBuffer>();
        Record(grown->Reserve(size), "allocating device staging");
        if (grown->data() == nullptr) return {nullptr, nullptr};
        retired_device.push_back(std::move(staging_device));
        staging_device = std::move(grown);
      }
      // The regions staged so far in this pass, at their offsets in the
      // new device buffer (an eager pass: copies are enqueued as staged).
      if (offset > 0) {
        Record(cudaMemcpyAsync(staging_device->data(), pinned, offset, cudaMemcpyHostToDevice, stream),
               "moving host staging");
      }
      ++generation;
    }
    return {pinned + offset, static_cast<char*>(staging_device->data()) + offset};
  }
  // The device address of a region staged at `offset` in this pass.
  const void* StagedDevice(size_t offset) const {
    return static_cast<const char*>(staging_device->data()) + offset;
  }

  // dst <- host fp32 values already written at `host` (a staged region).
  void UploadFloat(std::pair<void*, void*> region, const Tensor& dst, const char* op) {
    if (region.first == nullptr) return;
    const size_t bytes = size_t(dst.rows) * dst.cols * sizeof(float);
    Record(cudaMemcpyAsync(region.second, region.first, bytes, cudaMemcpyHostToDevice, stream), op);
    Record(kernels::LaunchDitFromFloat(type, dst.rows, dst.cols, static_cast<const float*>(region.second), dst.data,
                                       dst.stride, stream),
           op);
  }

  // A workspace (im2col, GroupNorm) of at least `bytes`, grown like a
  // Scratch slot: never during capture, and growth retires the graphs.
  void* Workspace(DeviceBuffer& buffer, size_t bytes, const char* what) {
    if (bytes > buffer.bytes()) {
      if (mode != Mode::kEager) {
        Fail(absl::StrCat(what, mode == Mode::kCapture ? " grew during graph capture" : " grew in a replayed pass"));
        return nullptr;
      }
      Record(buffer.Reserve(bytes), absl::StrCat("allocating ", what));
      ++generation;
    }
    return buffer.data();
  }

  // One algorithm per (layer shape, reference_rows): the heuristic's choice
  // for reference_rows rows, used for every row count.
  // `gelu`: GELU (tanh) in the epilogue, after the bias; a GELU plan that
  // cuBLASLt cannot make without split-K is null (cached), not an error.
  cuda_dit::GemmPlan* Plan(const Tensor& x, const cuda_dit::CudaDitLinear& w, const Tensor& out, int64_t reference_rows, bool gelu);
  void Gemm(const Tensor& x, const cuda_dit::CudaDitLinear& w, const Tensor& out, int64_t reference_rows, bool gelu = false);
  // Attention of every (sample, head) of the pass as two cuBLASLt GEMMs and
  // a row softmax (kernels/dit/dit_softmax.h), one (sample, head) after
  // another through one S and P workspace: for head dims the flash kernel
  // does not take (the VAE's mid-block attention, one head of 512). The
  // GEMMs' shapes, and so their algorithms, are the same for every sample:
  // batch invariant. Enqueues only.
  void MatmulAttention(const Tensor& qkv, const DitAttentionParams& params, int64_t tokens, const Tensor& out);
  // The index of the algorithm a plan keeps among `candidates` (whole-K,
  // heuristic order): 0, or with gemm_autotune in an eager pass the fastest
  // timed at up to reference_rows rows (0 when timing cannot run).
  size_t TunedChoice(const cuda_dit::GemmPlan& plan, const cuda_dit::CudaDitLinear& w, int64_t reference_rows,
                     absl::Span<const cublasLtMatmulAlgo_t> candidates);

  absl::StatusOr<DeviceBuffer*> Upload(const TensorView& t, DeviceBuffer* dst) {
    std::vector<float> values(t.numel());
    ConvertToFloat(t.dtype, t.data, values.size(), values.data());
    return UploadValues(values, dst, t.name);
  }
  absl::StatusOr<DeviceBuffer*> UploadValues(absl::Span<const float> values, DeviceBuffer* dst,
                                             const std::string& name) {
    const std::string what = absl::StrCat("uploading \"", name, "\"");
    RETURN_IF_CUDA(dst->Reserve(values.size() * element_bytes), what);
    if (type == kernels::ScalarType::kF32) {
      RETURN_IF_CUDA(cudaMemcpy(dst->data(), values.data(), values.size() * 4, cudaMemcpyHostToDevice), what);
      return dst;
    }
    std::vector<uint16_t> converted(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      converted[i] = type == kernels::ScalarType::kBF16 ? FloatToBFloat16(values[i]) : FloatToHalf(values[i]);
    }
    RETURN_IF_CUDA(cudaMemcpy(dst->data(), converted.data(), converted.size() * 2, cudaMemcpyHostToDevice), what);
    return dst;
  }
};

}  // namespace tern::runtime
