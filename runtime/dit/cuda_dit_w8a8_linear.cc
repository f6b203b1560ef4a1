#include "runtime/dit/cuda_dit_w8a8_linear.h"

#include "absl/strings/str_cat.h"
#include "kernels/dit/dit_kernels.h"

namespace tern::runtime {

absl::StatusOr<std::unique_ptr<CudaDitW8A8Linear>> CudaDitW8A8Linear::Create(const QuantizedLinear& linear) {
  if (linear.input_scale != 0.0f || !linear.input_smoothing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("a ", linear.scheme.ToString(), " linear [", linear.out_features,
                                                   ", ", linear.in_features,
                                                   "]: the DiT quantizes activations per token (no static scale or "
                                                   "smoothing)"));
  }
  auto gemm = CudaW8A8Linear::Create(linear);
  if (!gemm.ok()) return gemm.status();
  return std::unique_ptr<CudaDitW8A8Linear>(new CudaDitW8A8Linear(*std::move(gemm)));
}

cudaError_t CudaDitW8A8Linear::Run(kernels::ScalarType type, const Tensor& x, const Tensor& out, bool gelu,
                                   const W8A8Workspace& ws, const char** what) const {
  bool gelu_applied = false;
  if (cudaError_t e = gemm_->Run(type, x, out, ws, what, gelu, &gelu_applied);
      e != cudaSuccess || !gelu || gelu_applied) {
    return e;
  }
  *what = "gelu tanh after a w8a8 linear";
  return kernels::LaunchDitPointwise(type, kernels::DitPointwise::kGeluTanh, out.rows, out.cols, out.data,
                                     out.stride, nullptr, 0, out.data, out.stride, ws.stream);
}

absl::Status CheckCudaDitWeightScheme(const LinearScheme& scheme, int device) {
  if (scheme.scheme == WeightScheme::kDense || scheme.scheme == WeightScheme::kW8A8Int8) return absl::OkStatus();
  if (scheme.scheme != WeightScheme::kW8A8Fp8) {
    return absl::FailedPreconditionError(
        absl::StrCat("the cuda DiT ops run dense, w8a8-int8 and w8a8-fp8 linear layers, not ", scheme.ToString()));
  }
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("reading CUDA device ", device, "'s compute capability"));
  }
  if (major * 10 + minor >= 89) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("weight_scheme ", scheme.ToString(),
                                                    " needs FP8 tensor cores (compute capability 8.9 or later); "
                                                    "CUDA device ", device, " is ", major, ".", minor,
                                                    ": use w8a8-int8"));
}

}  // namespace tern::runtime
