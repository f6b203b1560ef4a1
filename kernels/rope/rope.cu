// One block per token; threads cover (head, i) pairs of the rotated halves.
#include "kernels/common/dispatch.cuh"
#include "kernels/rope/rope.h"
#include "kernels/rope/rope_rotate.cuh"

namespace tern::kernels {
namespace {

template <typename T>
__global__ void RopeKernel(RopeParams p, const int32_t* __restrict__ positions, const float* __restrict__ inv_freq,
                           T* x) {
  const int64_t t = blockIdx.x;
  const int64_t half = p.head_dim / 2;
  const float position = static_cast<float>(positions[t]);
  T* row = x + t * p.row_stride;
  for (int64_t k = threadIdx.x; k < p.num_heads * half; k += blockDim.x) {
    const int64_t h = k / half;
    const int64_t i = k % half;
    T* head = row + h * p.head_dim;
    RotatePair(position, inv_freq[i], head + i, half, head + i);
  }
}

}  // namespace

cudaError_t LaunchRope(ScalarType type, const RopeParams& params, const int32_t* positions, const float* inv_freq,
                       void* x, cudaStream_t stream) {
  if (params.num_tokens == 0) return cudaSuccess;
  if (params.num_tokens < 0 || params.head_dim % 2 != 0 || params.num_tokens > INT32_MAX) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T,
                       RopeKernel<T><<<static_cast<unsigned>(params.num_tokens), 128, 0, stream>>>(
                           params, positions, inv_freq, static_cast<T*>(x)));
  return cudaGetLastError();
}

}  // namespace tern::kernels
