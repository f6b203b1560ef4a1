// CudaBackend's state (CudaBackend::Impl): stream and cuBLAS handles, the
// step's first error, step metadata buffers, scratch, the decode graphs and
// their keys, and the GEMM helpers the ops share. Internal to runtime/cuda:
// included only by the cuda_backend*.cc files and cuda_kv_cache.cc, which
// define CudaBackend's members.
//
// Built only with TERN_WITH_CUDA. Single-threaded, as CudaBackend.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/common/scalar_type.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/gemm/skinny_gemm.h"
#include "runtime/backend/backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/cuda/cuda_sampling.h"
#include "runtime/cuda/pass_graph.h"
#include "runtime/cuda/step_errors.h"
#include "runtime/model/dtype.h"

namespace tern::runtime {

using kernels::ScalarType;

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
  StepErrors errors;  // the step's first failure; a fault poisons the backend

  // Step metadata: one pinned staging buffer and one device buffer, the
  // fields at offsets that depend only on their sizes (block ids last);
  // slots and block_indptr hold one section per KV-cache group.
  enum Meta { kTokens, kPositions, kSlots, kQueryStart, kContextLens, kBlockIndptr, kLogitsRows, kRowSeq, kBlockIds,
              kNumMeta };
  int32_t* pinned = nullptr;
  size_t pinned_elems = 0;
  DeviceBuffer meta_device;
  size_t meta_offset[kNumMeta] = {};
  DeviceBuffer moe_routing;
  std::vector<int32_t> moe_offsets_host;
  // Per MoE layer (its MoeWeights), the experts' gate, up and down weight
  // pointers in device memory for the expert GEMM (moe_expert_gemm.h),
  // uploaded by the layer's first eager pass, and the host copy they came from.
  struct MoeExpertTable {
    DeviceBuffer device;
    std::vector<const void*> pointers;
  };
  std::map<const MoeWeights*, MoeExpertTable> moe_expert_tables;
  // Graph keys whose pass ran a MoE layer that waits on the host (more rows
  // than the expert GEMM takes): they always run eagerly.
  std::set<std::pair<int32_t, int32_t>> host_bound_keys;
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
  using Mode = PassGraph::Mode;
  Mode mode = Mode::kEager;
  std::pair<int32_t, int32_t> step_key{0, 0};
  bool step_graphable = false;
  int32_t step_context_capacity = 0;
  uint64_t generation = 0;  // bumped when a buffer that ops read or write moves
  std::map<std::pair<int32_t, int32_t>, PassGraph> graphs;
  GraphStats stats;

  // An op enqueues nothing while a graph replays the pass, or once the step
  // has failed (a buffer that could not grow is empty): FinishStep reports
  // the error, and the backend stays usable unless the device faulted.
  bool Skip() const { return mode == Mode::kReplay || !errors.ok(); }
  // Reserve, counting moves of buffers that a recorded graph may point into.
  void ReserveTracked(DeviceBuffer& buffer, size_t bytes, const char* what) {
    const void* before = buffer.data();
    RecordAllocation(buffer.Reserve(bytes), what, bytes);
    if (buffer.data() != before) ++generation;
  }
  std::unique_ptr<CudaSampling> sampling;  // created by the first SampleRows
  // The sampling EnqueueSampleRows started, until FinishSampleRows.
  std::vector<SampleRequest> sample_requests;
  absl::Status sample_prepared;

  void Record(cudaError_t error, const char* op) { errors.Record(error, op); }
  // Record for a device allocation of `bytes`: a failure names the size and
  // the room left. The buffer is then empty, and the step's later ops skip
  // (Skip), so no kernel runs on a missing buffer.
  void RecordAllocation(cudaError_t error, const char* what, size_t bytes) {
    errors.RecordAllocation(error, what, bytes);
  }
  void RecordBlas(cublasStatus_t status, const char* op) { errors.RecordBlas(status, op); }
  const int32_t* Meta(int which) const {
    return static_cast<const int32_t*>(meta_device.data()) + meta_offset[which];
  }
  // The step's slots and block-table offsets of `layer`'s KV-cache group
  // (ForwardBatch's group sections).
  const int32_t* GroupSlots(const KvCacheSpec& spec, int32_t layer) const {
    return Meta(kSlots) + batch->group_slots_offset(spec.LayerGroup(layer));
  }
  const int32_t* GroupBlockIndptr(const KvCacheSpec& spec, int32_t layer) const {
    return Meta(kBlockIndptr) + batch->group_indptr_offset(spec.LayerGroup(layer));
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

}  // namespace tern::runtime
