#include "runtime/cuda/cuda_w8a8_linear.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/gemm/w8a8.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

// Allocates `bytes` on the device, copies `host` there and adds `bytes` to
// `*total`; INTERNAL naming `what` on failure.
absl::Status Upload(const void* host, size_t bytes, void** device, const std::string& what, size_t* total) {
  if (bytes == 0) return absl::OkStatus();
  cudaError_t error = cudaMalloc(device, bytes);
  if (error == cudaSuccess) error = cudaMemcpy(*device, host, bytes, cudaMemcpyHostToDevice);
  if (error != cudaSuccess) {
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("uploading ", what, " (", bytes, " bytes): ", cudaGetErrorName(error), " (",
                                            cudaGetErrorString(error), ")"));
  }
  *total += bytes;
  return absl::OkStatus();
}

// Owns the three cuBLASLt descriptors of one call.
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  ~Descriptors() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

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
  RETURN_IF_ERROR(Upload(q.weight.data(), q.weight.size(), &p, what + " weight", total));
  linear->weight_ = static_cast<uint8_t*>(p);
  p = nullptr;
  RETURN_IF_ERROR(Upload(q.scales.data(), q.scales.size() * 4, &p, what + " scales", total));
  linear->w_scales_ = static_cast<float*>(p);
  p = nullptr;
  RETURN_IF_ERROR(Upload(q.input_smoothing.data(), q.input_smoothing.size() * 4, &p, what + " smoothing", total));
  linear->smoothing_ = static_cast<float*>(p);
  p = nullptr;
  RETURN_IF_ERROR(Upload(q.bias.data(), q.bias.size() * 4, &p, what + " bias", total));
  linear->bias_ = static_cast<float*>(p);
  return linear;
}

CudaW8A8Linear::~CudaW8A8Linear() {
  for (void* p : {static_cast<void*>(weight_), static_cast<void*>(w_scales_), static_cast<void*>(smoothing_),
                  static_cast<void*>(bias_)}) {
    if (p != nullptr) cudaFree(p);
  }
}

cudaError_t CudaW8A8Linear::Run(kernels::ScalarType type, const Tensor& x, const Tensor& out, const W8A8Workspace& ws,
                                const char** what) const {
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

  // cuBLASLt, column-major: D [out, rows] = A^T B with A the weight [out, in]
  // row-major (column-major [in, out], transposed) and B the quantized rows
  // (column-major [in, rows]); D is then the row-major [rows, out] of acc.
  *what = "w8a8 cuBLASLt matmul";
  const cudaDataType_t ab_type = fp8() ? CUDA_R_8F_E4M3 : CUDA_R_8I;
  const cudaDataType_t d_type = fp8() ? CUDA_R_32F : CUDA_R_32I;
  Descriptors desc;
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  bool ok = cublasLtMatmulDescCreate(&desc.op, fp8() ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32I,
                                     fp8() ? CUDA_R_32F : CUDA_R_32I) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)) ==
                 CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)) ==
                 CUBLAS_STATUS_SUCCESS;
  if (fp8()) {
    // cuBLASLt's default, stated: partial sums are promoted to fp32 every 128
    // inputs instead of staying in the tensor cores' 13-fraction-bit
    // accumulation for all of K (on, the error grows with K).
    const int8_t fast_accum = 0;
    ok = ok && cublasLtMatmulDescSetAttribute(desc.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum,
                                              sizeof(fast_accum)) == CUBLAS_STATUS_SUCCESS;
  }
  ok = ok && cublasLtMatrixLayoutCreate(&desc.a, ab_type, uint64_t(in_), uint64_t(out_), in_) == CUBLAS_STATUS_SUCCESS;
  ok = ok &&
       cublasLtMatrixLayoutCreate(&desc.b, ab_type, uint64_t(in_), uint64_t(rows), q_stride) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatrixLayoutCreate(&desc.d, d_type, uint64_t(out_), uint64_t(rows), out_) == CUBLAS_STATUS_SUCCESS;
  if (!ok) return cudaErrorUnknown;
  const bool fixed = ws.algorithm_rows > 0;
  const int64_t key = fixed ? ws.algorithm_rows : rows;
  auto found = algos_.find(key);
  if (found == algos_.end()) {
    // Host-side only: finding the algorithm enqueues nothing, so it may
    // happen during graph capture.
    *what = fixed ? "w8a8 cuBLASLt algorithm search (none without split-K for this shape on this device)"
                  : "w8a8 cuBLASLt algorithm search (none for this shape on this device)";
    Descriptors search;  // the B and D layouts at algorithm_rows rows
    if (fixed &&
        (cublasLtMatrixLayoutCreate(&search.b, ab_type, uint64_t(in_), uint64_t(key), q_stride) !=
             CUBLAS_STATUS_SUCCESS ||
         cublasLtMatrixLayoutCreate(&search.d, d_type, uint64_t(out_), uint64_t(key), out_) != CUBLAS_STATUS_SUCCESS)) {
      return cudaErrorUnknown;
    }
    cublasLtMatmulPreference_t preference = nullptr;
    if (cublasLtMatmulPreferenceCreate(&preference) != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
    const size_t limit = ws.workspace_bytes;
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &limit, sizeof(limit));
    constexpr int kCandidates = 16;
    cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
    int count = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        ws.lt, desc.op, desc.a, fixed ? search.b : desc.b, fixed ? search.d : desc.d, fixed ? search.d : desc.d,
        preference, fixed ? kCandidates : 1, results, &count);
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS) return cudaErrorNotSupported;
    int chosen = -1;
    for (int i = 0; i < count && chosen < 0; ++i) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
      int32_t splits = 1;
      size_t written = 0;
      if (fixed && cublasLtMatmulAlgoConfigGetAttribute(&results[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits,
                                                        sizeof(splits), &written) != CUBLAS_STATUS_SUCCESS) {
        splits = 1;
      }
      if (splits <= 1) chosen = i;
    }
    if (chosen < 0) return cudaErrorNotSupported;
    found = algos_.emplace(key, results[chosen].algo).first;
  }
  if (fixed && checked_.count({key, rows}) == 0) {
    *what = "w8a8 cuBLASLt: the layer's fixed algorithm does not run this row count";
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(ws.lt, desc.op, desc.a, desc.b, desc.d, desc.d, &found->second, &check) !=
        CUBLAS_STATUS_SUCCESS) {
      return cudaErrorNotSupported;
    }
    checked_.insert({key, rows});
  }
  *what = "w8a8 cuBLASLt matmul";
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const int32_t alpha_i = 1, beta_i = 0;
  const void* alpha = fp8() ? static_cast<const void*>(&alpha_f) : static_cast<const void*>(&alpha_i);
  const void* beta = fp8() ? static_cast<const void*>(&beta_f) : static_cast<const void*>(&beta_i);
  if (cublasLtMatmul(ws.lt, desc.op, alpha, weight_, desc.a, q, desc.b, beta, ws.acc, desc.d, ws.acc, desc.d,
                     &found->second, ws.workspace, ws.workspace_bytes, ws.stream) != CUBLAS_STATUS_SUCCESS) {
    return cudaErrorUnknown;
  }

  *what = "w8a8 epilogue";
  kernels::W8A8EpilogueParams e;
  e.rows = rows;
  e.n = out_;
  e.acc_row_stride = out_;
  e.y_row_stride = out.stride;
  e.int32_acc = !fp8();
  return kernels::LaunchW8A8Epilogue(type, e, ws.acc, row_scales, w_scales_, bias_, out.data, ws.stream);
}

}  // namespace tern::runtime
