#include "runtime/backend/backend_factory.h"

#include "runtime/cpu/cpu_backend.h"
#if defined(TERN_WITH_CUDA)
#include "runtime/cuda/cuda_backend.h"
#endif

namespace tern::runtime {

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const BackendChoice& choice) {
  if (choice.name == "cpu") return std::unique_ptr<Backend>(std::make_unique<CpuBackend>());
  if (choice.name != "cuda") return absl::InvalidArgumentError("the backend must be cpu or cuda");
#if defined(TERN_WITH_CUDA)
  CudaBackendOptions options;
  if (!ParseTorchDType(choice.dtype, &options.compute_dtype)) {
    return absl::InvalidArgumentError("the CUDA dtype must be float16, bfloat16 or float32");
  }
  options.cuda_graphs = choice.cuda_graphs;
  options.pdl = choice.pdl;
  options.moe_device_experts = choice.moe_device_experts;
  auto cuda = CudaBackend::Create(options);
  if (!cuda.ok()) return cuda.status();
  return std::unique_ptr<Backend>(std::move(*cuda));
#else
  return absl::FailedPreconditionError("this build has no CUDA backend");
#endif
}

}  // namespace tern::runtime
