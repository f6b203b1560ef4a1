#include "runtime/cuda/cuda_w8a8_linear.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/gemm/w8a8.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cublaslt_autotune.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/model/dtype.h"

namespace tern::runtime {
namespace {

// Owns the three cuBLASLt descriptors of one call.
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  int64_t d_stride = 0;
  ~Descriptors() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

// The matmul descriptor (fp32 or int32 compute; FP8: fast accumulation
// off) and the layouts of D [out, rows] = A^T B: A the weight [out, in]
// row-major, B the quantized rows [rows, in] (row stride q_stride), D with
// row stride d_stride (0: out). False when cuBLASLt refuses one.
bool CreateDescriptors(bool fp8, bool fast_accumulation, cudaDataType_t ab_type, cudaDataType_t d_type, int64_t in,
                       int64_t out, int64_t rows, int64_t q_stride, Descriptors* desc, int64_t d_stride = 0) {
  desc->d_stride = d_stride > 0 ? d_stride : out;
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  bool ok = cublasLtMatmulDescCreate(&desc->op, fp8 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32I,
                                     fp8 ? CUDA_R_32F : CUDA_R_32I) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)) ==
                 CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)) ==
                 CUBLAS_STATUS_SUCCESS;
  if (fp8) {
    // Off (cuBLASLt's default, stated): partial sums are promoted to fp32
    // every 128 inputs instead of staying in the tensor cores'
    // 13-fraction-bit accumulation for all of K (on: faster, and the error
    // grows with K).
    const int8_t fast_accum = fast_accumulation ? 1 : 0;
    ok = ok && cublasLtMatmulDescSetAttribute(desc->op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum,
                                              sizeof(fast_accum)) == CUBLAS_STATUS_SUCCESS;
  }
  ok = ok && cublasLtMatrixLayoutCreate(&desc->a, ab_type, uint64_t(in), uint64_t(out), in) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatrixLayoutCreate(&desc->b, ab_type, uint64_t(in), uint64_t(rows), q_stride) ==
                 CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatrixLayoutCreate(&desc->d, d_type, uint64_t(out), uint64_t(rows), desc->d_stride) ==
                 CUBLAS_STATUS_SUCCESS;
  return ok;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaW8A8Linear>> CudaW8A8Linear::Create(const QuantizedLinear& q) {
  const std::string what =
      absl::StrCat("a ", q.scheme.ToString(), " linear [", q.out_features, ", ", q.in_features, "]");
  RETURN_IF_ERROR(ValidateQuantizedLinear(q, what));
  if (!IsW8A8(q.scheme.scheme)) return absl::InvalidArgumentError(absl::StrCat(what, " is not w8a8"));
  if (q.in_features % 16 != 0 || q.out_features % 4 != 0) {
    return absl::UnimplementedError(absl::StrCat("the CUDA backend runs ", what,
                                                 " only with in_features a multiple of 16 and out_features a "
                                                 "multiple of 4 (cuBLASLt's alignment)"));
  }
  auto linear = std::unique_ptr<CudaW8A8Linear>(new CudaW8A8Linear());
  linear->scheme_ = q.scheme;
  linear->out_ = q.out_features;
  linear->in_ = q.in_features;
  linear->input_scale_ = q.input_scale;
  size_t* total = &linear->device_bytes_;
  void* p = nullptr;
  RETURN_IF_ERROR(UploadToDevice(q.weight.data(), q.weight.size(), &p, what + " weight", total));
  linear->weight_ = static_cast<uint8_t*>(p);
  p = nullptr;
  RETURN_IF_ERROR(UploadToDevice(q.scales.data(), q.scales.size() * 4, &p, what + " scales", total));
  linear->w_scales_ = static_cast<float*>(p);
  p = nullptr;
  RETURN_IF_ERROR(
      UploadToDevice(q.input_smoothing.data(), q.input_smoothing.size() * 4, &p, what + " smoothing", total));
  linear->smoothing_ = static_cast<float*>(p);
  p = nullptr;
  RETURN_IF_ERROR(UploadToDevice(q.bias.data(), q.bias.size() * 4, &p, what + " bias", total));
  linear->bias_ = static_cast<float*>(p);
  if (linear->fp8() && !q.bias.empty()) {
    std::vector<uint16_t> bf16(q.bias.size()), f16(q.bias.size());
    for (size_t i = 0; i < q.bias.size(); ++i) {
      bf16[i] = FloatToBFloat16(q.bias[i]);
      f16[i] = FloatToHalf(q.bias[i]);
    }
    p = nullptr;
    RETURN_IF_ERROR(UploadToDevice(bf16.data(), bf16.size() * 2, &p, what + " bias (bf16)", total));
    linear->bias_bf16_ = static_cast<uint16_t*>(p);
    p = nullptr;
    RETURN_IF_ERROR(UploadToDevice(f16.data(), f16.size() * 2, &p, what + " bias (fp16)", total));
    linear->bias_f16_ = static_cast<uint16_t*>(p);
  }
  return linear;
}

CudaW8A8Linear::~CudaW8A8Linear() {
  for (void* p : {static_cast<void*>(weight_), static_cast<void*>(w_scales_), static_cast<void*>(smoothing_),
                  static_cast<void*>(bias_), static_cast<void*>(bias_bf16_), static_cast<void*>(bias_f16_)}) {
    if (p != nullptr) cudaFree(p);
  }
}

cudaError_t CudaW8A8Linear::Run(kernels::ScalarType type, const Tensor& x, const Tensor& out, const W8A8Workspace& ws,
                                const char** what, bool gelu, bool* gelu_applied) const {
  if (gelu_applied != nullptr) *gelu_applied = false;
  CHECK_EQ(x.cols, in_);
  CHECK_EQ(out.cols, out_);
  CHECK_EQ(x.rows, out.rows);
  const int64_t rows = x.rows;
  if (rows == 0) return cudaSuccess;
  const uint8_t* q = ws.q;
  const float* row_scales = ws.row_scales;
  int64_t q_stride = in_;
  if (x.dtype == DType::kI8 || x.dtype == DType::kF8E4M3) {
    CHECK(x.dtype == (fp8() ? DType::kF8E4M3 : DType::kI8))
        << "a " << scheme_.ToString() << " linear was given " << DTypeSafetensorsName(x.dtype) << " activations";
    CHECK(x.row_scales != nullptr && x.stride % 16 == 0) << "quantized activations need row scales and a row stride "
                                                            "that is a multiple of 16";
    q = static_cast<const uint8_t*>(x.data);
    row_scales = x.row_scales;
    q_stride = x.stride;
  } else {
    kernels::ActivationQuantParams p;
    p.type = fp8() ? kernels::ActivationQuant::kFp8E4M3 : kernels::ActivationQuant::kInt8;
    p.rows = rows;
    p.k = in_;
    p.x_stride = x.stride;
    p.static_scale = input_scale_;
    p.smoothing = smoothing_;
    *what = "w8a8 activation quantization";
    if (cudaError_t e = kernels::LaunchQuantizeActivations(type, p, x.data, ws.q, in_, ws.row_scales, ws.stream);
        e != cudaSuccess) {
      return e;
    }
  }

  cudaError_t error = cudaSuccess;
  last_fused_ = false;
  if (fp8() && type != kernels::ScalarType::kF32 &&
      RunFusedFp8(type, q, row_scales, q_stride, out, gelu, ws, &error, what)) {
    last_fused_ = error == cudaSuccess;
    if (gelu_applied != nullptr) *gelu_applied = gelu && last_fused_;
    return error;
  }

  // cuBLASLt, column-major: D [out, rows] = A^T B with A the weight [out, in]
  // row-major (column-major [in, out], transposed) and B the quantized rows
  // (column-major [in, rows]); D is then the row-major [rows, out] of acc.
  *what = "w8a8 cuBLASLt matmul";
  const cudaDataType_t ab_type = fp8() ? CUDA_R_8F_E4M3 : CUDA_R_8I;
  const cudaDataType_t d_type = fp8() ? CUDA_R_32F : CUDA_R_32I;
  Descriptors desc;
  if (!CreateDescriptors(fp8(), ws.fp8_fast_accumulation, ab_type, d_type, in_, out_, rows, q_stride, &desc)) {
    return cudaErrorUnknown;
  }
  const cublasLtMatmulAlgo_t* algo = Algorithm(ws, &desc, ab_type, d_type, q_stride, rows, algos_, what);
  if (algo == nullptr) return cudaErrorNotSupported;
  *what = "w8a8 cuBLASLt matmul";
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const int32_t alpha_i = 1, beta_i = 0;
  const void* alpha = fp8() ? static_cast<const void*>(&alpha_f) : static_cast<const void*>(&alpha_i);
  const void* beta = fp8() ? static_cast<const void*>(&beta_f) : static_cast<const void*>(&beta_i);
  *what = "w8a8 accumulators";
  void* const acc = ws.accumulators ? ws.accumulators() : nullptr;
  if (acc == nullptr) return cudaErrorMemoryAllocation;
  *what = "w8a8 cuBLASLt matmul";
  if (cublasLtMatmul(ws.lt, desc.op, alpha, weight_, desc.a, q, desc.b, beta, acc, desc.d, acc, desc.d, algo,
                     ws.workspace, ws.workspace_bytes, ws.stream) != CUBLAS_STATUS_SUCCESS) {
    return cudaErrorUnknown;
  }

  *what = "w8a8 epilogue";
  kernels::W8A8EpilogueParams e;
  e.rows = rows;
  e.n = out_;
  e.acc_row_stride = out_;
  e.y_row_stride = out.stride;
  e.int32_acc = !fp8();
  return kernels::LaunchW8A8Epilogue(type, e, acc, row_scales, w_scales_, bias_, out.data, ws.stream);
}

bool CudaW8A8Linear::RunFusedFp8(kernels::ScalarType type, const uint8_t* q, const float* row_scales,
                                 int64_t q_stride, const Tensor& out, bool gelu, const W8A8Workspace& ws,
                                 cudaError_t* error, const char** what) const {
  const int which = type == kernels::ScalarType::kBF16 ? 1 : 0;
  const int act = gelu ? 1 : 0;
  if (fused_unavailable_[which][act]) return false;
  const int64_t rows = out.rows;
  const cudaDataType_t d_type = which == 1 ? CUDA_R_16BF : CUDA_R_16F;
  Descriptors desc;
  *what = "w8a8 fused cuBLASLt matmul";
  if (!CreateDescriptors(/*fp8=*/true, ws.fp8_fast_accumulation, CUDA_R_8F_E4M3, d_type, in_, out_, rows, q_stride,
                         &desc, out.stride)) {
    *error = cudaErrorUnknown;
    return true;
  }
  // Outer-vector scales: A (the weight, the M = out side) by channel, B (the
  // rows, the N side) by row; the bias after them, in the output type.
  const int32_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  const void* a_scales = w_scales_;
  const void* b_scales = row_scales;
  bool ok = cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer, sizeof(outer)) ==
            CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer, sizeof(outer)) ==
                 CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scales,
                                            sizeof(a_scales)) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scales,
                                            sizeof(b_scales)) == CUBLAS_STATUS_SUCCESS;
  const void* bias = which == 1 ? static_cast<const void*>(bias_bf16_) : static_cast<const void*>(bias_f16_);
  if (bias != nullptr || gelu) {
    const cublasLtEpilogue_t epilogue = gelu ? (bias != nullptr ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                                             : CUBLASLT_EPILOGUE_BIAS;
    ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)) ==
                   CUBLAS_STATUS_SUCCESS;
  }
  if (bias != nullptr) {
    const int32_t bias_type = d_type;
    ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                              sizeof(bias_type)) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)) ==
                   CUBLAS_STATUS_SUCCESS;
  }
  if (!ok) {  // this cuBLASLt lacks the attributes: the unfused path
    fused_unavailable_[which][act] = true;
    return false;
  }
  const char* search_what = nullptr;
  const cublasLtMatmulAlgo_t* algo =
      Algorithm(ws, &desc, CUDA_R_8F_E4M3, d_type, q_stride, rows, fused_algos_[which][act], &search_what);
  if (algo == nullptr) {
    // No fused algorithm for this shape: the unfused path, from now on for
    // a layer that has found none, for this call only for a layer choosing
    // per row count. A layer with one fixed algorithm that later meets a
    // row count it cannot run fails instead: its sums must stay those of
    // its one algorithm.
    if (fused_algos_[which][act].empty()) {
      fused_unavailable_[which][act] = true;
      return false;
    }
    if (ws.algorithm_rows == 0) return false;
    *what = search_what;
    *error = cudaErrorNotSupported;
    return true;
  }
  *what = "w8a8 fused cuBLASLt matmul";
  const float alpha = 1.0f, beta = 0.0f;
  if (cublasLtMatmul(ws.lt, desc.op, &alpha, weight_, desc.a, q, desc.b, &beta, out.data, desc.d, out.data, desc.d,
                     algo, ws.workspace, ws.workspace_bytes, ws.stream) != CUBLAS_STATUS_SUCCESS) {
    *error = cudaErrorUnknown;
  }
  return true;
}

size_t CudaW8A8Linear::TunedChoice(const W8A8Workspace& ws, const void* desc_ptr, cudaDataType_t ab_type,
                                    cudaDataType_t d_type, int64_t rows,
                                    const std::vector<cublasLtMatmulAlgo_t>& candidates) const {
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(ws.stream, &capturing) != cudaSuccess || capturing != cudaStreamCaptureStatusNone) {
    cudaGetLastError();
    return 0;
  }
  const Descriptors& desc = *static_cast<const Descriptors*>(desc_ptr);
  // Dense tuning buffers at the search layouts' rows (codes, row scales, D),
  // capped at 512 MiB in whole 128-row tiles; their D layout is dense too.
  const size_t d_bytes = d_type == CUDA_R_16BF || d_type == CUDA_R_16F ? 2 : 4;
  constexpr int64_t kTuneBytes = int64_t(512) << 20;
  const int64_t row_bytes = in_ + out_ * int64_t(d_bytes) + 4;
  int64_t tune_rows = std::min(rows, kTuneBytes / row_bytes);
  if (tune_rows < rows) tune_rows = std::max<int64_t>(128, tune_rows / 128 * 128);
  void *codes = nullptr, *scales = nullptr, *d = nullptr;
  const auto release = [&] {
    for (void* p : {codes, scales, d}) {
      if (p != nullptr) cudaFree(p);
    }
  };
  if (cudaMalloc(&codes, size_t(tune_rows * in_)) != cudaSuccess ||
      cudaMalloc(&scales, size_t(tune_rows) * 4) != cudaSuccess ||
      cudaMalloc(&d, size_t(tune_rows * out_) * d_bytes) != cudaSuccess ||
      // Codes of a typical magnitude (0x38: 1.0 in E4M3, 56 in INT8) and
      // unit row scales (0x3f800000 needs a fill; 0 times the sums is timed
      // the same).
      cudaMemsetAsync(codes, 0x38, size_t(tune_rows * in_), ws.stream) != cudaSuccess ||
      cudaMemsetAsync(scales, 0, size_t(tune_rows) * 4, ws.stream) != cudaSuccess) {
    cudaGetLastError();  // no room to time: the heuristic's first
    release();
    return 0;
  }
  Descriptors tune;
  const bool layouts =
      cublasLtMatrixLayoutCreate(&tune.b, ab_type, uint64_t(in_), uint64_t(tune_rows), in_) == CUBLAS_STATUS_SUCCESS &&
      cublasLtMatrixLayoutCreate(&tune.d, d_type, uint64_t(out_), uint64_t(tune_rows), out_) == CUBLAS_STATUS_SUCCESS;
  // The fused descriptor points its B scales at the caller's row scales;
  // the timing points them at the tuning buffer's and restores them after.
  const void* b_scales = nullptr;
  size_t written = 0;
  const bool fused_scales =
      cublasLtMatmulDescGetAttribute(desc.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scales, sizeof(b_scales),
                                     &written) == CUBLAS_STATUS_SUCCESS &&
      b_scales != nullptr;
  if (fused_scales) {
    cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &scales, sizeof(scales));
  }
  size_t best = 0;
  if (layouts) {
    LtMatmulProblem problem;
    problem.lt = ws.lt;
    problem.desc = desc.op;
    problem.a_layout = desc.a;
    problem.b_layout = tune.b;
    problem.d_layout = tune.d;
    problem.a = weight_;
    problem.b = codes;
    problem.d = d;
    problem.workspace = ws.workspace;
    problem.workspace_bytes = ws.workspace_bytes;
    problem.stream = ws.stream;
    const absl::StatusOr<int> fastest = FastestAlgorithm(problem, candidates, /*warmup=*/2, /*runs=*/5);
    if (fastest.ok()) best = size_t(*fastest);
  }
  if (fused_scales) {
    cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scales, sizeof(b_scales));
  }
  cudaStreamSynchronize(ws.stream);
  release();
  return best;
}

const cublasLtMatmulAlgo_t* CudaW8A8Linear::Algorithm(const W8A8Workspace& ws, const void* desc_ptr,
                                                      cudaDataType_t ab_type, cudaDataType_t d_type,
                                                      int64_t q_stride, int64_t rows,
                                                      std::map<int64_t, cublasLtMatmulAlgo_t>& cache,
                                                      const char** what) const {
  const Descriptors& desc = *static_cast<const Descriptors*>(desc_ptr);
  const bool fixed = ws.algorithm_rows > 0;
  const int64_t key = fixed ? ws.algorithm_rows : rows;
  const int64_t d_stride = desc.d_stride;
  auto found = cache.find(key);
  if (found == cache.end()) {
    // Host-side only: finding the algorithm enqueues nothing, so it may
    // happen during graph capture.
    *what = fixed ? "w8a8 cuBLASLt algorithm search (none without split-K for this shape on this device)"
                  : "w8a8 cuBLASLt algorithm search (none for this shape on this device)";
    Descriptors search;  // the B and D layouts at algorithm_rows rows
    if (fixed &&
        (cublasLtMatrixLayoutCreate(&search.b, ab_type, uint64_t(in_), uint64_t(key), q_stride) !=
             CUBLAS_STATUS_SUCCESS ||
         cublasLtMatrixLayoutCreate(&search.d, d_type, uint64_t(out_), uint64_t(key), d_stride) !=
             CUBLAS_STATUS_SUCCESS)) {
      return nullptr;
    }
    cublasLtMatmulPreference_t preference = nullptr;
    if (cublasLtMatmulPreferenceCreate(&preference) != CUBLAS_STATUS_SUCCESS) return nullptr;
    const size_t limit = ws.workspace_bytes;
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &limit, sizeof(limit));
    constexpr int kCandidates = 16;
    cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
    int count = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        ws.lt, desc.op, desc.a, fixed ? search.b : desc.b, fixed ? search.d : desc.d, fixed ? search.d : desc.d,
        preference, fixed ? kCandidates : 1, results, &count);
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS) return nullptr;
    std::vector<cublasLtMatmulAlgo_t> whole_k;  // the candidates without split-K, heuristic order
    for (int i = 0; i < count; ++i) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
      if (!fixed || SplitKParts(results[i].algo) <= 1) whole_k.push_back(results[i].algo);
    }
    if (whole_k.empty()) return nullptr;
    size_t chosen = 0;
    if (fixed && ws.autotune && whole_k.size() > 1) {
      chosen = TunedChoice(ws, &desc, ab_type, d_type, key, whole_k);
    }
    found = cache.emplace(key, whole_k[chosen]).first;
  }
  if (fixed && checked_.count({&cache, key, rows}) == 0) {
    *what = "w8a8 cuBLASLt: the layer's fixed algorithm does not run this row count";
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(ws.lt, desc.op, desc.a, desc.b, desc.d, desc.d, &found->second, &check) !=
        CUBLAS_STATUS_SUCCESS) {
      return nullptr;
    }
    checked_.insert({&cache, key, rows});
  }
  return &found->second;
}

}  // namespace tern::runtime
