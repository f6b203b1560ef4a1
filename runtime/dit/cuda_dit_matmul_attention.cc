// CudaDitOps::Impl::MatmulAttention: attention of head dims the flash
// kernel does not take (the VAE decoder's mid-block, one head of 512 over
// every pixel) as S = scale * Q K^T (cuBLASLt, fp32 out), P = softmax(S) in
// the compute dtype (kernels/dit/dit_softmax.h), O = P V (cuBLASLt), one
// (sample, head) at a time.
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/dit/dit_softmax.h"
#include "runtime/cuda/cublaslt_autotune.h"
#include "runtime/dit/cuda_dit_ops_impl.h"

namespace tern::runtime {

using namespace cuda_dit;  // NOLINT: the shared internal types of cuda_dit_ops_impl.h

namespace {

// The heuristic's first algorithm without split-K for D = op(A) op(B): one
// algorithm for the plan, so every sample's GEMM sums in the same order.
cublasStatus_t FirstWholeK(cublasLtHandle_t lt, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                           cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t d, size_t workspace_bytes,
                           uint32_t alignment, cublasLtMatmulAlgo_t* algo) {
  cublasLtMatmulPreference_t preference = nullptr;
  cublasLtMatmulPreferenceCreate(&preference);
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                       sizeof(workspace_bytes));
  for (auto attribute : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                         CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof(alignment));
  }
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, d, d, preference, kCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  if (status != CUBLAS_STATUS_SUCCESS) return status;
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS || SplitKParts(results[i].algo) > 1) continue;
    *algo = results[i].algo;
    return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasLtMatmulDesc_t MakeDesc(cublasOperation_t trans_a) {
  cublasLtMatmulDesc_t desc = nullptr;
  if (cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return nullptr;
  const cublasOperation_t trans_b = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a));
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b));
  return desc;
}

cublasLtMatrixLayout_t MakeLayout(cudaDataType type, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t layout = nullptr;
  cublasLtMatrixLayoutCreate(&layout, type, uint64_t(rows), uint64_t(cols), ld);
  return layout;
}

}  // namespace

void CudaDitOps::Impl::MatmulAttention(const Tensor& qkv, const DitAttentionParams& params, int64_t tokens,
                                       const Tensor& out) {
  const int64_t d = params.head_dim;
  const int64_t width = int64_t(params.num_heads) * d;
  const std::string what = absl::StrCat("attention as GEMMs (", batch, " samples x ", tokens, " tokens, ",
                                        params.num_heads, " heads of ", d, ")");
  const uint32_t alignment =
      Alignment({uint64_t(qkv.stride) * element_bytes, uint64_t(out.stride) * element_bytes, uint64_t(d) * element_bytes,
                 uint64_t(tokens) * element_bytes, reinterpret_cast<uintptr_t>(qkv.data),
                 reinterpret_cast<uintptr_t>(out.data)});
  const MatmulAttentionKey key{tokens, params.head_dim, qkv.stride, out.stride};
  auto found = matmul_attention_plans.find(key);
  if (found == matmul_attention_plans.end()) {
    // Row-major X [r, c] with row stride ld is column-major [c, r] with
    // leading dimension ld. Scores: S' [L, L] (column-major; S row-major) =
    // K'^T Q' with K' and Q' [d, L]. Output: O' [d, L] = V' P' with V' [d, L]
    // and P' [L, L].
    auto plan = std::make_unique<MatmulAttentionPlan>();
    const cudaDataType data = BlasType(type);
    plan->scores_desc = MakeDesc(CUBLAS_OP_T);
    plan->output_desc = MakeDesc(CUBLAS_OP_N);
    plan->k = MakeLayout(data, d, tokens, qkv.stride);
    plan->q = MakeLayout(data, d, tokens, qkv.stride);
    plan->s = MakeLayout(CUDA_R_32F, tokens, tokens, tokens);
    plan->v = MakeLayout(data, d, tokens, qkv.stride);
    plan->p = MakeLayout(data, tokens, tokens, tokens);
    plan->o = MakeLayout(data, d, tokens, out.stride);
    if (plan->scores_desc == nullptr || plan->output_desc == nullptr) {
      Fail(what + ": matmul descriptors");
      return;
    }
    cublasStatus_t status = FirstWholeK(lt, plan->scores_desc, plan->k, plan->q, plan->s, workspace.bytes(),
                                        alignment, &plan->scores_algo);
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = FirstWholeK(lt, plan->output_desc, plan->v, plan->p, plan->o, workspace.bytes(), alignment,
                           &plan->output_algo);
    }
    if (status != CUBLAS_STATUS_SUCCESS) {
      RecordBlas(status, what + ": no cuBLASLt algorithm without split-K");
      return;
    }
    found = matmul_attention_plans.emplace(key, std::move(plan)).first;
  }
  const MatmulAttentionPlan& plan = *found->second;
  void* scores = Workspace(attention_scores, size_t(tokens * tokens) * sizeof(float), "attention scores");
  void* probs = Workspace(attention_probs, size_t(tokens * tokens) * element_bytes, "attention probabilities");
  if (scores == nullptr || probs == nullptr) return;
  const float scale = params.scale, one = 1.0f, zero = 0.0f;
  const auto at = [&](const Tensor& t, int64_t row, int64_t col) {
    return static_cast<char*>(t.data) + (row * t.stride + col) * int64_t(element_bytes);
  };
  for (int64_t b = 0; b < batch; ++b) {
    for (int32_t h = 0; h < params.num_heads; ++h) {
      const char* q = at(qkv, b * tokens, h * d);
      const char* k = at(qkv, b * tokens, width + h * d);
      const char* v = at(qkv, b * tokens, 2 * width + h * d);
      char* o = at(out, b * tokens, h * d);
      RecordBlas(cublasLtMatmul(lt, plan.scores_desc, &scale, k, plan.k, q, plan.q, &zero, scores, plan.s, scores,
                                plan.s, &plan.scores_algo, workspace.data(), workspace.bytes(), stream),
                 what + ": scores");
      Record(kernels::LaunchDitRowSoftmax(type, tokens, tokens, static_cast<const float*>(scores), tokens, probs,
                                          tokens, stream),
             what + ": softmax");
      RecordBlas(cublasLtMatmul(lt, plan.output_desc, &one, v, plan.v, probs, plan.p, &zero, o, plan.o, o, plan.o,
                                &plan.output_algo, workspace.data(), workspace.bytes(), stream),
                 what + ": output");
    }
  }
}

}  // namespace tern::runtime
