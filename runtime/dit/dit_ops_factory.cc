#include "runtime/dit/dit_ops_factory.h"

#include "absl/strings/str_cat.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/model/dtype.h"
#if defined(TERN_WITH_CUDA)
#include "runtime/dit/cuda_dit_ops.h"
#endif

namespace tern::runtime {

absl::StatusOr<std::string> DitOpsComputeDType(const DitOpsChoice& choice) {
  const bool automatic = choice.dtype.empty() || choice.dtype == "auto";
  if (choice.backend == "cpu") {
    if (automatic || choice.dtype == "float32") return std::string("float32");
    return absl::InvalidArgumentError(
        absl::StrCat("dtype \"", choice.dtype, "\": the CPU DiT ops compute in float32 only"));
  }
  if (choice.backend == "cuda") {
    if (automatic) return std::string("bfloat16");
    DType parsed;
    if (!ParseTorchDType(choice.dtype, &parsed) ||
        (parsed != DType::kF32 && parsed != DType::kBF16 && parsed != DType::kF16)) {
      return absl::InvalidArgumentError(
          absl::StrCat("dtype \"", choice.dtype, "\": the CUDA DiT ops compute in float32, bfloat16 or float16"));
    }
    return choice.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("backend \"", choice.backend, "\": expected \"cpu\" or \"cuda\""));
}

absl::StatusOr<std::unique_ptr<DitOps>> MakeDitOps(const DitOpsChoice& choice) {
  auto dtype = DitOpsComputeDType(choice);
  if (!dtype.ok()) return dtype.status();
  if (choice.backend == "cpu") return std::unique_ptr<DitOps>(new CpuDitOps());
#if defined(TERN_WITH_CUDA)
  CudaDitOpsOptions options;
  options.device = choice.device;
  ParseTorchDType(*dtype, &options.compute_dtype);
  options.cuda_graphs = choice.cuda_graphs;
  auto ops = CudaDitOps::Create(options);
  if (!ops.ok()) return ops.status();
  return std::unique_ptr<DitOps>(std::move(*ops));
#else
  return absl::FailedPreconditionError("backend \"cuda\": this build has no CUDA (configure with -DTERN_CUDA=ON)");
#endif
}

}  // namespace tern::runtime
