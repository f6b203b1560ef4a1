#include "kernels/activation/silu_mul.h"
#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"

namespace tern::kernels {
namespace {

template <typename T>
__global__ void SiluMulKernel(int64_t width, const T* gate, int64_t gate_stride, const T* up, int64_t up_stride,
                              T* out, int64_t out_stride) {
  PdlAllowDependents();
  PdlWaitForPrior();
  const int64_t t = blockIdx.y;
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < width; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = ToFloat(gate[t * gate_stride + i]);
    const float silu = ToFloat(FromFloat<T>(g / (1.0f + __expf(-g))));
    out[t * out_stride + i] = FromFloat<T>(silu * ToFloat(up[t * up_stride + i]));
  }
}

}  // namespace

cudaError_t LaunchSiluMul(ScalarType type, int64_t num_tokens, int64_t width, const void* gate, int64_t gate_stride,
                          const void* up, int64_t up_stride, void* out, int64_t out_stride, cudaStream_t stream,
                          bool pdl) {
  if (num_tokens == 0 || width == 0) return cudaSuccess;
  if (num_tokens < 0 || num_tokens > 65535 * 64) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((width + 255) / 256, 64)), static_cast<unsigned>(num_tokens));
  cudaError_t error = cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       error = LaunchWithPdl(pdl, SiluMulKernel<T>, grid, dim3(256), 0, stream, width,
                                             static_cast<const T*>(gate), gate_stride, static_cast<const T*>(up),
                                             up_stride, static_cast<T*>(out), out_stride));
  return error;
}

}  // namespace tern::kernels
