// The CUDA DiT ops' linear layers: one cuBLASLt plan and algorithm per layer
// shape (cuda_dit_ops.h, "Batch invariance"), optionally timed.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/cuda/cublaslt_autotune.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/dit/cuda_dit_ops_impl.h"

namespace tern::runtime {

using namespace cuda_dit;  // NOLINT: the shared internal types of cuda_dit_ops_impl.h

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
    if (SplitKParts(results[i].algo) > 1) {
      uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_INPLACE;
      size_t written = 0;
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

}  // namespace tern::runtime
