#include "runtime/dit/cuda_dit_ops.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/dit/dit_attention.h"
#include "kernels/dit/dit_cache_kernels.h"
#include "kernels/dit/dit_kernels.h"
#include "kernels/dit/vae_conv.h"
#include "kernels/dit/vae_kernels.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cublaslt_autotune.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/dit/cuda_dit_w8a8_linear.h"

namespace tern::runtime {
namespace {

using kernels::ScalarType;

class CudaDitLinear final : public DitLinear {
 public:
  int64_t out_features() const override { return out; }
  int64_t in_features() const override { return in; }
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
  int32_t out = 0, in = 0, k = 0;
  CudaDitLinear gemm;
};

class CudaDitTable final : public DitTable {
 public:
  int64_t rows() const override { return num_rows; }
  int64_t cols() const override { return num_cols; }
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

absl::Status CheckFloat(const TensorView& t) {
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" has dtype ",
                                                   DTypeSafetensorsName(t.dtype), "; expected F32, F16 or BF16"));
  }
  if (t.shape.empty() || t.numel() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" is empty ", t.ShapeString()));
  }
  return absl::OkStatus();
}

size_t ElementBytes(ScalarType type) { return type == ScalarType::kF32 ? 4 : 2; }

cudaDataType BlasType(ScalarType type) {
  switch (type) {
    case ScalarType::kF16: return CUDA_R_16F;
    case ScalarType::kBF16: return CUDA_R_16BF;
    case ScalarType::kF32: return CUDA_R_32F;
  }
  return CUDA_R_32F;
}

// Largest power of two <= 16 that divides every value.
uint32_t Alignment(std::initializer_list<uint64_t> values) {
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

// (in, out, bias, x stride, out stride, reference rows)
// in, out, bias, x stride, out stride, reference rows, GELU epilogue.
using PlanKey = std::tuple<int64_t, int64_t, bool, int64_t, int64_t, int64_t, bool>;

// Rows of one convolution GEMM: a sample's pixels go through im2col this
// many at a time (a split fixed by the layer's shape, so batch invariance
// holds): at most 256 MiB of columns, 4096 to 65536 rows. Large chunks
// matter: a VAE layer's GEMM is only 128 to 512 outputs wide, so its row
// count alone fills the device (4096 rows of 128 outputs are 32 tiles).
int64_t ConvChunkPixels(int64_t pixels, int64_t columns, size_t element_bytes) {
  int64_t chunk = 4096;
  while (chunk < 65536 && 2 * chunk * columns * int64_t(element_bytes) <= (int64_t(256) << 20)) chunk *= 2;
  return std::min(chunk, pixels);
}

}  // namespace

struct CudaDitOps::Impl {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  DeviceBuffer workspace;
  ScalarType type = ScalarType::kBF16;
  DType dtype = DType::kBF16;
  size_t element_bytes = 2;
  int64_t gemm_reference_batch = 64;
  bool gemm_autotune = true;
  CudaDitOps::GemmTuning tuning;
  bool graphs_enabled = true;
  bool profile = false;

  cudaError_t first_error = cudaSuccess;
  std::string first_error_op;
  absl::Status pending;  // a failed ReadToHost, for the next BeginStep
  bool poisoned = false;
  std::string fatal_error;

  // The pass.
  int64_t batch = 0;
  bool eager_pass = false;          // DitStep::eager, or past the variant graphs' cap: no graph
  int64_t linear_rows_per_sample = 0;  // LinearSamples' rows per sample; 0: from the batch
  std::vector<float> timesteps;      // [B] host
  size_t labels_offset = 0;          // [B] int32 in the staging area, staged by BeginStep
  std::map<int, DeviceBuffer> scratch;
  DeviceBuffer im2col;          // a convolution chunk's columns
  DeviceBuffer norm_workspace;  // GroupNorm's partial moments and statistics
  DeviceBuffer read_buffer;  // ReadToHost's fp32 conversion
  DeviceBuffer w8a8_codes, w8a8_scales, w8a8_acc;  // a W8A8 linear's activation codes, row scales, sums

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

  std::map<PlanKey, std::unique_ptr<GemmPlan>> plans;

  // Graphs by batch size.
  enum class Mode { kEager, kCapture, kReplay };
  struct Graph {
    bool warmed = false;
    uint64_t warm_generation = 0;
    cudaGraphExec_t exec = nullptr;
    uint64_t generation = 0;
    uint64_t signature = 0;
  };
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
  std::map<GraphKey, Graph> graphs;
  uint64_t generation = 0;  // bumped when a buffer that ops touch moves
  uint64_t signature = 0;   // the pass's op sequence, hashed
  GraphStats stats;

  // Profiling.
  std::vector<cudaEvent_t> events;
  std::vector<OpKind> event_kinds;
  size_t events_used = 0;
  OpTimes times;

  ~Impl() {
    for (auto& [b, g] : graphs) {
      if (g.exec != nullptr) cudaGraphExecDestroy(g.exec);
    }
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    plans.clear();
    if (lt != nullptr) cublasLtDestroy(lt);
    if (pinned != nullptr) cudaFreeHost(pinned);
    for (char* p : retired_pinned) cudaFreeHost(p);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  void Record(cudaError_t error, const std::string& op) {
    if (error != cudaSuccess && first_error == cudaSuccess) {
      first_error = error;
      first_error_op = op;
    }
  }
  void RecordBlas(cublasStatus_t status, const std::string& op) {
    if (status != CUBLAS_STATUS_SUCCESS && first_error == cudaSuccess) {
      first_error = cudaErrorUnknown;
      first_error_op = absl::StrCat(op, " (cuBLAS status ", int(status), ")");
    }
  }
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
  bool Enter(OpKind kind, uint64_t op_id) {
    Mix(op_id);
    if (profile) MarkEvent(kind);
    return mode != Mode::kReplay;
  }
  void MarkEvent(OpKind kind) {
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
  GemmPlan* Plan(const Tensor& x, const CudaDitLinear& w, const Tensor& out, int64_t reference_rows, bool gelu);
  void Gemm(const Tensor& x, const CudaDitLinear& w, const Tensor& out, int64_t reference_rows, bool gelu = false);
  // The index of the algorithm a plan keeps among `candidates` (whole-K,
  // heuristic order): 0, or with gemm_autotune in an eager pass the fastest
  // timed at up to reference_rows rows (0 when timing cannot run).
  size_t TunedChoice(const GemmPlan& plan, const CudaDitLinear& w, int64_t reference_rows,
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
    if (type == ScalarType::kF32) {
      RETURN_IF_CUDA(cudaMemcpy(dst->data(), values.data(), values.size() * 4, cudaMemcpyHostToDevice), what);
      return dst;
    }
    std::vector<uint16_t> converted(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      converted[i] = type == ScalarType::kBF16 ? FloatToBFloat16(values[i]) : FloatToHalf(values[i]);
    }
    RETURN_IF_CUDA(cudaMemcpy(dst->data(), converted.data(), converted.size() * 2, cudaMemcpyHostToDevice), what);
    return dst;
  }
};

namespace {

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

}  // namespace

GemmPlan* CudaDitOps::Impl::Plan(const Tensor& x, const CudaDitLinear& w, const Tensor& out,
                                 int64_t reference_rows, bool gelu) {
  const PlanKey key{w.in, w.out, w.has_bias, x.stride, out.stride, reference_rows, gelu};
  auto it = plans.find(key);
  if (it != plans.end()) return it->second.get();
  const std::string what = absl::StrCat("linear [", w.out, " x ", w.in, "]");
  auto plan = std::make_unique<GemmPlan>();
  const cudaDataType data_type = BlasType(type);
  // Row-major y [M, out] = x [M, in] W^T is column-major y' [out, M] =
  // W'^T [out, in] x' [in, M] with W' = W read column-major [in, out].
  if (auto s = cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F); s != CUBLAS_STATUS_SUCCESS) {
    RecordBlas(s, what + ": matmul descriptor");
    return nullptr;
  }
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a));
  cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b));
  if (w.has_bias || gelu) {
    const cublasLtEpilogue_t epilogue = gelu ? (w.has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                                             : CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
  }
  if (w.has_bias) {
    const void* bias = w.bias.data();
    cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
  }
  cublasLtMatrixLayoutCreate(&plan->weight_layout, data_type, uint64_t(w.in), uint64_t(w.out), int64_t(w.in));
  plan->x_align = Alignment({uint64_t(x.stride) * element_bytes, reinterpret_cast<uintptr_t>(x.data)});
  plan->out_align = Alignment({uint64_t(out.stride) * element_bytes, reinterpret_cast<uintptr_t>(out.data)});
  const uint32_t weight_align = Alignment({uint64_t(w.in) * element_bytes});

  // The algorithm: the heuristic's first choice without split-K for the
  // reference row count.
  GemmPlan::Layouts& ref = plan->by_rows[reference_rows];
  cublasLtMatrixLayoutCreate(&ref.x, data_type, uint64_t(w.in), uint64_t(reference_rows), x.stride);
  cublasLtMatrixLayoutCreate(&ref.out, data_type, uint64_t(w.out), uint64_t(reference_rows), out.stride);
  cublasLtMatmulPreference_t preference = nullptr;
  cublasLtMatmulPreferenceCreate(&preference);
  const size_t workspace_bytes = workspace.bytes();
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                       sizeof(workspace_bytes));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &weight_align,
                                       sizeof(weight_align));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &plan->x_align,
                                       sizeof(plan->x_align));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &plan->out_align,
                                       sizeof(plan->out_align));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &plan->out_align,
                                       sizeof(plan->out_align));
  constexpr int kCandidates = 16;
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  const cublasStatus_t heuristic =
      cublasLtMatmulAlgoGetHeuristic(lt, plan->desc, plan->weight_layout, ref.x, ref.out, ref.out, preference,
                                     kCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  if (heuristic != CUBLAS_STATUS_SUCCESS) {
    if (gelu) {  // the caller runs the linear and the activation apart
      plans.emplace(key, nullptr);
      return nullptr;
    }
    RecordBlas(heuristic, what + ": algorithm heuristic");
    return nullptr;
  }
  // First choice: no split-K. Where the heuristic offers none (tiny output widths such as a VAE's
  // 3-channel conv_out in 16-bit types), a split-K algorithm whose partial sums meet in the
  // workspace (reduction in the compute or output type): with the algorithm fixed, a row's
  // partial sums and their order are the same at every row count, so batch invariance holds. An
  // in-place split-K reduction (partial sums added into the output) is never taken: its order
  // is not fixed.
  int split_k_fallback = -1;
  bool chosen = false;
  std::vector<cublasLtMatmulAlgo_t> whole_k;  // the candidates without split-K, in the heuristic's order
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    int32_t splits = 1;
    size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&results[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits,
                                             sizeof(splits), &written) != CUBLAS_STATUS_SUCCESS) {
      splits = 1;
    }
    if (splits > 1) {
      uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_INPLACE;
      if (split_k_fallback < 0 &&
          cublasLtMatmulAlgoConfigGetAttribute(&results[i].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                               sizeof(scheme), &written) == CUBLAS_STATUS_SUCCESS &&
          (scheme == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE || scheme == CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE)) {
        split_k_fallback = i;
      }
      continue;
    }
    whole_k.push_back(results[i].algo);
  }
  if (!whole_k.empty()) {
    plan->algo = whole_k[TunedChoice(*plan, w, reference_rows, whole_k)];
    chosen = true;
  }
  if (!chosen && split_k_fallback >= 0 && !gelu) {
    plan->algo = results[split_k_fallback].algo;
    chosen = true;
  }
  if (!chosen) {
    if (gelu) {  // the caller runs the linear and the activation apart
      plans.emplace(key, nullptr);
      return nullptr;
    }
    Fail(absl::StrCat(what, ": cuBLASLt offers no algorithm without split-K or with a workspace reduction (", found,
                      " candidates)"));
    return nullptr;
  }
  GemmPlan* raw = plan.get();
  plans.emplace(key, std::move(plan));
  return raw;
}

size_t CudaDitOps::Impl::TunedChoice(const GemmPlan& plan, const CudaDitLinear& w, int64_t reference_rows,
                                     absl::Span<const cublasLtMatmulAlgo_t> candidates) {
  if (!gemm_autotune || mode != Mode::kEager || candidates.size() < 2) return 0;
  // Dense tuning buffers of at most kTuneBytes (whole 128-row tiles when
  // capped): big enough that the timing sees the reference shape's waves.
  constexpr int64_t kTuneBytes = int64_t(512) << 20;
  const int64_t row_bytes = (w.in + w.out) * int64_t(element_bytes);
  int64_t rows = std::min(reference_rows, kTuneBytes / row_bytes);
  if (rows < reference_rows) rows = std::max<int64_t>(128, rows / 128 * 128);
  DeviceBuffer x_buffer, out_buffer;
  if (x_buffer.Reserve(size_t(rows * w.in) * element_bytes) != cudaSuccess ||
      out_buffer.Reserve(size_t(rows * w.out) * element_bytes) != cudaSuccess) {
    cudaGetLastError();  // no room to time: the heuristic's first
    return 0;
  }
  // Inputs of a typical magnitude (0x3c3c: about 0.011 in bf16, 1.06 in fp16,
  // tiny in fp32): all-zero inputs would time the tensor cores at low power.
  if (cudaMemsetAsync(x_buffer.data(), 0x3c, size_t(rows * w.in) * element_bytes, stream) != cudaSuccess) return 0;
  const cudaDataType data_type = BlasType(type);
  GemmPlan::Layouts tune;
  cublasLtMatrixLayoutCreate(&tune.x, data_type, uint64_t(w.in), uint64_t(rows), w.in);
  cublasLtMatrixLayoutCreate(&tune.out, data_type, uint64_t(w.out), uint64_t(rows), w.out);
  LtMatmulProblem problem;
  problem.lt = lt;
  problem.desc = plan.desc;
  problem.a_layout = plan.weight_layout;
  problem.b_layout = tune.x;
  problem.d_layout = tune.out;
  problem.a = w.weight.data();
  problem.b = x_buffer.data();
  problem.d = out_buffer.data();
  problem.workspace = workspace.data();
  problem.workspace_bytes = workspace.bytes();
  problem.stream = stream;
  std::vector<AlgorithmTiming> timings;
  const absl::StatusOr<int> fastest = FastestAlgorithm(problem, candidates, /*warmup=*/2, /*runs=*/5, &timings);
  cublasLtMatrixLayoutDestroy(tune.x);
  cublasLtMatrixLayoutDestroy(tune.out);
  if (!fastest.ok() || timings.empty() || !std::isfinite(timings[0].mean_ms)) return 0;
  ++tuning.shapes_timed;
  tuning.heuristic_ms += timings[0].mean_ms;
  tuning.chosen_ms += timings[size_t(*fastest)].mean_ms;
  if (*fastest != 0) ++tuning.changed;
  return size_t(*fastest);
}

void CudaDitOps::Impl::Gemm(const Tensor& x, const CudaDitLinear& w, const Tensor& out, int64_t reference_rows,
                            bool gelu) {
  GemmPlan* plan = Plan(x, w, out, reference_rows, gelu);
  if (plan == nullptr) return;
  const std::string what = absl::StrCat("linear [", w.out, " x ", w.in, "]");
  if (reinterpret_cast<uintptr_t>(x.data) % plan->x_align != 0 ||
      reinterpret_cast<uintptr_t>(out.data) % plan->out_align != 0) {
    Fail(absl::StrCat(what, ": input or output less aligned than the layer's first call (", plan->x_align, " / ",
                      plan->out_align, " bytes)"));
    return;
  }
  auto found = plan->by_rows.find(x.rows);
  if (found == plan->by_rows.end()) {
    GemmPlan::Layouts layouts;
    const cudaDataType data_type = BlasType(type);
    cublasLtMatrixLayoutCreate(&layouts.x, data_type, uint64_t(w.in), uint64_t(x.rows), x.stride);
    cublasLtMatrixLayoutCreate(&layouts.out, data_type, uint64_t(w.out), uint64_t(x.rows), out.stride);
    found = plan->by_rows.emplace(x.rows, layouts).first;
    cublasLtMatmulHeuristicResult_t check{};
    const cublasStatus_t ok = cublasLtMatmulAlgoCheck(lt, plan->desc, plan->weight_layout, layouts.x, layouts.out,
                                                      layouts.out, &plan->algo, &check);
    if (ok != CUBLAS_STATUS_SUCCESS) {
      RecordBlas(ok, absl::StrCat(what, ": the layer's fixed algorithm does not run ", x.rows, " rows"));
      return;
    }
  }
  if (w.has_bias) {
    const void* bias = w.bias.data();
    cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
  }
  const float alpha = 1.0f, beta = 0.0f;
  RecordBlas(cublasLtMatmul(lt, plan->desc, &alpha, w.weight.data(), plan->weight_layout, x.data, found->second.x,
                            &beta, out.data, found->second.out, out.data, found->second.out, &plan->algo,
                            workspace.data(), workspace.bytes(), stream),
             what);
}

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
  impl->profile = options.profile;
  impl->graphs_enabled = options.cuda_graphs && !options.profile;
  RETURN_IF_CUDA(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "creating a stream");
  if (cublasLtCreate(&impl->lt) != CUBLAS_STATUS_SUCCESS) return absl::InternalError("cublasLtCreate failed");
  RETURN_IF_CUDA(impl->workspace.Reserve(options.cublas_workspace_bytes), "allocating the cuBLASLt workspace");
  return std::unique_ptr<CudaDitOps>(new CudaDitOps(std::move(impl), options));
}

absl::StatusOr<std::unique_ptr<DitLinear>> CudaDitOps::PrepareLinear(const TensorView& weight,
                                                                    const TensorView* bias) {
  if (auto s = CheckFloat(weight); !s.ok()) return s;
  auto linear = std::make_unique<CudaDitLinear>();
  linear->out = weight.shape[0];
  linear->in = weight.numel() / linear->out;
  if (bias != nullptr) {
    if (auto s = CheckFloat(*bias); !s.ok()) return s;
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
  if (auto s = CheckFloat(table); !s.ok()) return s;
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
  if (auto s = CheckFloat(weight); !s.ok()) return s;
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
    if (auto s = CheckFloat(*bias); !s.ok()) return s;
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

absl::Status CudaDitOps::Health() const {
  if (impl_->poisoned) return absl::InternalError(absl::StrCat("CUDA DiT ops are unusable: ", impl_->fatal_error));
  return absl::OkStatus();
}

absl::Status CudaDitOps::BeginStep(const DitStep& step) {
  Impl& m = *impl_;
  RETURN_IF_ERROR(Health());
  if (!m.pending.ok()) {
    absl::Status pending = m.pending;
    m.pending = absl::OkStatus();
    return pending;
  }
  if (step.labels.size() != step.timesteps.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dit step: ", step.timesteps.size(), " timesteps but ", step.labels.size(), " labels"));
  }
  m.batch = step.batch();
  m.eager_pass = step.eager;
  m.linear_rows_per_sample = 0;
  m.pass_key = {int32_t(step.pass), m.batch, step.image.height, step.image.width, step.variant};
  if (m.graphs_enabled && step.variant != 0 && !m.eager_pass && m.graphs.count(m.pass_key) == 0) {
    if (m.variant_graphs >= Impl::kMaxVariantGraphs) {
      m.eager_pass = true;
    } else {
      ++m.variant_graphs;
    }
  }
  m.timesteps.assign(step.timesteps.begin(), step.timesteps.end());
  m.staged = 0;
  m.signature = uint64_t(m.batch) * 4 + uint64_t(step.pass);
  m.Mix(step.variant);
  m.Mix(uint64_t(uint32_t(step.image.height)) << 32 | uint32_t(step.image.width));
  m.events_used = 0;
  m.mode = Impl::Mode::kEager;
  if (m.graphs_enabled && m.batch > 0 && !m.eager_pass) {
    Impl::Graph& g = m.graphs[m.pass_key];
    if (g.exec != nullptr && g.generation == m.generation) {
      m.mode = Impl::Mode::kReplay;
    } else if (g.warmed && g.warm_generation == m.generation) {
      m.mode = Impl::Mode::kCapture;
      RETURN_IF_CUDA(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "starting graph capture");
    }
  }
  if (m.profile) m.MarkEvent(kOtherOp);
  const size_t bytes = step.labels.size() * sizeof(int32_t);  // none in a decode pass
  m.labels_offset = m.staged;
  auto region = m.Stage(std::max<size_t>(bytes, 4));
  if (region.first != nullptr && bytes > 0) {
    std::memcpy(region.first, step.labels.data(), bytes);
    if (m.mode != Impl::Mode::kReplay) {
      m.Record(cudaMemcpyAsync(region.second, region.first, bytes, cudaMemcpyHostToDevice, m.stream), "labels");
    }
  }
  return absl::OkStatus();
}

Tensor CudaDitOps::Scratch(int slot, int64_t rows, int64_t cols) {
  Impl& m = *impl_;
  DeviceBuffer& buffer = m.scratch[slot];
  const size_t bytes = size_t(std::max<int64_t>(rows, 1)) * size_t(std::max<int64_t>(cols, 1)) * m.element_bytes;
  if (bytes > buffer.bytes()) {
    if (m.mode == Impl::Mode::kCapture) {
      m.Fail(absl::StrCat("scratch slot ", slot, " grew during graph capture"));
    } else {
      m.Record(buffer.Reserve(bytes), absl::StrCat("allocating scratch slot ", slot));
      ++m.generation;
    }
  }
  return Tensor{buffer.data(), m.dtype, rows, cols, cols};
}

void CudaDitOps::CopyFromHost(const float* src, Tensor dst) {
  Impl& m = *impl_;
  const bool enqueue = m.Enter(kOtherOp, 1);
  m.Mix(dst);
  const size_t bytes = size_t(dst.rows) * dst.cols * sizeof(float);
  if (bytes == 0) return;
  auto region = m.Stage(bytes);
  if (region.first == nullptr) return;
  std::memcpy(region.first, src, bytes);
  if (enqueue) m.UploadFloat(region, dst, "copy from host");
}

absl::Status CudaDitOps::FinishStep() {
  Impl& m = *impl_;
  if (m.profile) m.MarkEvent(kOtherOp);
  Impl::Graph* graph = m.graphs_enabled && m.batch > 0 && !m.eager_pass ? &m.graphs[m.pass_key] : nullptr;
  switch (m.mode) {
    case Impl::Mode::kCapture: {
      cudaGraph_t recorded = nullptr;
      const cudaError_t ended = cudaStreamEndCapture(m.stream, &recorded);
      m.Record(ended, "ending graph capture");
      if (ended == cudaSuccess && m.first_error == cudaSuccess) {
        cudaGraphExec_t exec = nullptr;
        const cudaError_t made = cudaGraphInstantiate(&exec, recorded, 0);
        m.Record(made, "instantiating a graph");
        if (made == cudaSuccess) {
          if (graph->exec != nullptr) cudaGraphExecDestroy(graph->exec);  // recorded before buffers moved
          graph->exec = exec;
          graph->generation = m.generation;
          graph->signature = m.signature;
          ++m.stats.captured;
          m.Record(cudaGraphLaunch(exec, m.stream), "launching a graph");
        }
      }
      if (recorded != nullptr) cudaGraphDestroy(recorded);
      break;
    }
    case Impl::Mode::kReplay:
      if (m.signature != graph->signature) {
        // Not the pass the graph recorded: run nothing, drop the graph.
        m.Fail(absl::StrCat("a pass of batch ", m.batch,
                            " issued other ops, shapes or buffers than the CUDA graph recorded for that batch"));
        cudaGraphExecDestroy(graph->exec);
        *graph = Impl::Graph{};
      } else if (m.first_error == cudaSuccess) {
        ++m.stats.replayed;
        m.Record(cudaGraphLaunch(graph->exec, m.stream), "launching a graph");
      }
      break;
    case Impl::Mode::kEager:
      ++m.stats.eager;
      if (graph != nullptr) {
        graph->warmed = true;
        graph->warm_generation = m.generation;
      }
      break;
  }
  m.mode = Impl::Mode::kEager;
  m.Record(cudaStreamSynchronize(m.stream), "dit step");
  m.Record(cudaGetLastError(), "dit step");
  for (char* p : m.retired_pinned) cudaFreeHost(p);
  m.retired_pinned.clear();
  m.retired_device.clear();
  if (m.profile && m.first_error == cudaSuccess) {
    m.times = OpTimes{};
    for (size_t i = 0; i + 1 < m.events_used; ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, m.events[i], m.events[i + 1]);
      (m.event_kinds[i] == kLinearOp ? m.times.linear_ms
       : m.event_kinds[i] == kAttentionOp ? m.times.attention_ms
                                          : m.times.other_ms) += ms;
    }
  }
  if (m.first_error == cudaSuccess) return absl::OkStatus();
  const cudaError_t probe = cudaDeviceSynchronize();
  const absl::Status status = CudaStatus(m.first_error, m.first_error_op);
  if (probe != cudaSuccess) {
    m.poisoned = true;
    m.fatal_error = std::string(status.message());
  }
  m.first_error = cudaSuccess;
  m.first_error_op.clear();
  cudaGetLastError();
  return status;
}

void CudaDitOps::ReadToHost(Tensor src, float* dst) {
  Impl& m = *impl_;
  const size_t count = size_t(src.rows) * src.cols;
  if (count == 0) return;
  // After the pass: its own buffer, never one a graph points into.
  DeviceBuffer& device = m.read_buffer;
  cudaError_t error = device.Reserve(count * sizeof(float));
  if (error == cudaSuccess) {
    error = kernels::LaunchDitToFloat(m.type, src.rows, src.cols, src.data, src.stride,
                                      static_cast<float*>(device.data()), m.stream);
  }
  if (error == cudaSuccess) {
    error = cudaMemcpyAsync(dst, device.data(), count * sizeof(float), cudaMemcpyDeviceToHost, m.stream);
  }
  const cudaError_t synced = cudaStreamSynchronize(m.stream);
  if (error == cudaSuccess) error = synced;
  if (error != cudaSuccess) {
    std::fill(dst, dst + count, std::numeric_limits<float>::quiet_NaN());
    if (m.pending.ok()) m.pending = CudaStatus(error, "reading a DiT result to the host");
    if (cudaDeviceSynchronize() != cudaSuccess) {
      m.poisoned = true;
      m.fatal_error = std::string(m.pending.message());
    }
    cudaGetLastError();
  }
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
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(&weight));
  if (!enqueue || x.rows == 0) return;
  if (IsW8A8(weight.scheme().scheme)) {
    const auto& q = static_cast<const CudaDitW8A8Linear&>(weight);
    W8A8Workspace ws;
    ws.lt = m.lt;
    ws.workspace = m.workspace.data();
    ws.workspace_bytes = m.workspace.bytes();
    ws.stream = m.stream;
    ws.algorithm_rows = m.LinearRowsPerSample(x.rows) * m.gemm_reference_batch;  // as the dense layers choose theirs
    ws.q = static_cast<uint8_t*>(m.Workspace(m.w8a8_codes, q.CodeBytes(x.rows), "w8a8 activation codes"));
    ws.row_scales = static_cast<float*>(m.Workspace(m.w8a8_scales, size_t(x.rows) * 4, "w8a8 row scales"));
    ws.acc = m.Workspace(m.w8a8_acc, q.AccBytes(x.rows), "w8a8 accumulators");
    if (ws.q == nullptr || ws.row_scales == nullptr || ws.acc == nullptr) return;
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
  if (!enqueue) return;
  const kernels::DitNormParams p = ModulateParams(x, shift, scale, out, eps);
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
  if (!enqueue) return;
  const kernels::DitNormParams p = ModulateParams(x, shift, scale, out, eps);
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

CudaDitOps::GemmTuning CudaDitOps::gemm_tuning() const { return impl_->tuning; }

void CudaDitOps::Conv2d(Tensor x, const DitImageShape& shape, const DitConv& conv, Tensor out) {
  Impl& m = *impl_;
  const auto& c = static_cast<const CudaDitConv&>(conv);
  const int64_t pixels = shape.pixels();
  CHECK_EQ(x.cols, c.in);
  CHECK_EQ(out.cols, c.out);
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(m.RowsPerSample(x.rows), pixels);
  CHECK(x.data != out.data);
  const bool enqueue = m.Enter(kLinearOp, 14);
  m.Mix(x);
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(&conv));
  // 3x3 layers in 16-bit types with channels a multiple of 8: one implicit
  // GEMM over the whole batch, reading x in place (its tiling depends on the
  // layer's shape only, so batch invariance holds). The choice follows from
  // what the signature already holds (x, out, the layer, the image shape).
  if (c.k == 3 && m.type != ScalarType::kF32) {
    kernels::DitConvImplicitParams p;
    p.batch = m.batch;
    p.dims = {shape.height, shape.width, c.in};
    p.out_channels = c.out;
    p.x_stride = x.stride;
    p.out_stride = out.stride;
    if (kernels::DitConvImplicitSupported(m.type, p, x.data, c.gemm.weight.data(), out.data)) {
      if (!enqueue || x.rows == 0) return;
      m.Record(kernels::LaunchDitConvImplicit(m.type, p, x.data, c.gemm.weight.data(),
                                              c.gemm.has_bias ? c.gemm.bias.data() : nullptr, out.data, m.stream),
               "implicit conv");
      return;
    }
  }
  const int64_t columns = c.gemm.in;
  const int64_t chunk = ConvChunkPixels(pixels, columns, m.element_bytes);
  // The im2col buffer is part of the pass's recorded work: size it (and
  // hash it) even when replaying.
  void* buffer = nullptr;
  if (c.k > 1) {
    buffer = m.Workspace(m.im2col, size_t(chunk) * size_t(columns) * m.element_bytes, "the im2col buffer");
    m.Mix(reinterpret_cast<uintptr_t>(buffer));
  }
  if (!enqueue || x.rows == 0) return;
  if (c.k > 1 && buffer == nullptr) return;
  const kernels::DitImageDims dims{shape.height, shape.width, c.in};
  for (int64_t b = 0; b < m.batch; ++b) {
    for (int64_t p0 = 0; p0 < pixels; p0 += chunk) {
      const int64_t count = std::min(chunk, pixels - p0);
      Tensor rows_out{static_cast<char*>(out.data) + size_t(b * pixels + p0) * out.stride * m.element_bytes,
                      out.dtype, count, out.cols, out.stride};
      Tensor rows_in;
      if (c.k == 1) {
        rows_in = Tensor{static_cast<char*>(x.data) + size_t(b * pixels + p0) * x.stride * m.element_bytes, x.dtype,
                         count, x.cols, x.stride};
      } else {
        const void* sample = static_cast<const char*>(x.data) + size_t(b * pixels) * x.stride * m.element_bytes;
        m.Record(kernels::LaunchDitIm2col(m.type, dims, c.k, sample, x.stride, p0, count, buffer, m.stream),
                 "im2col");
        rows_in = Tensor{buffer, x.dtype, count, columns, columns};
      }
      m.Gemm(rows_in, c.gemm, rows_out, chunk);
    }
  }
}

void CudaDitOps::GroupNorm(Tensor x, int32_t groups, float eps, const DitTable& affine, bool silu, Tensor out) {
  Impl& m = *impl_;
  const auto& t = static_cast<const CudaDitTable&>(affine);
  CHECK(groups > 0 && x.cols % groups == 0) << groups << " groups of " << x.cols << " channels";
  CHECK_EQ(t.rows(), 2);
  CHECK_EQ(t.cols(), x.cols);
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  const int64_t pixels = m.RowsPerSample(x.rows);
  const bool enqueue = m.Enter(kOtherOp, 15);
  m.Mix(x);
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(&affine));
  m.Mix(uint64_t(groups) * 2 + (silu ? 1 : 0));
  float* workspace = static_cast<float*>(m.Workspace(
      m.norm_workspace, size_t(kernels::DitGroupNormWorkspaceFloats(m.batch, pixels, groups)) * sizeof(float),
      "the GroupNorm workspace"));
  m.Mix(reinterpret_cast<uintptr_t>(workspace));
  if (!enqueue || workspace == nullptr) return;
  kernels::DitGroupNormParams p;
  p.batch = m.batch;
  p.pixels = pixels;
  p.channels = int32_t(x.cols);
  p.groups = groups;
  p.eps = eps;
  p.silu = silu;
  p.x_stride = x.stride;
  p.out_stride = out.stride;
  m.Record(kernels::LaunchDitGroupNorm(m.type, p, x.data, t.values.data(), out.data, workspace, m.stream),
           absl::StrCat("group norm (", groups, " groups of ", x.cols, " channels, ", pixels, " pixels)"));
}

void CudaDitOps::Upsample2x(Tensor x, const DitImageShape& shape, Tensor out) {
  Impl& m = *impl_;
  CHECK_EQ(m.RowsPerSample(x.rows), shape.pixels());
  CHECK_EQ(out.rows, 4 * x.rows);
  CHECK_EQ(out.cols, x.cols);
  const bool enqueue = m.Enter(kOtherOp, 16);
  m.Mix(x);
  m.Mix(out);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitUpsample2x(m.type, m.batch, {shape.height, shape.width, int32_t(x.cols)}, x.data,
                                        x.stride, out.data, out.stride, m.stream),
           "upsample 2x");
}

}  // namespace tern::runtime
