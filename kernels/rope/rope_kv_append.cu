// A token's work is a flat list: the rotation pairs of q's heads, then those
// of k's heads (stored to the cache), then v's elements (copied to the
// cache). Grid: (token, slice of kThreads items), one item per thread, so a
// single decode token still spreads over dozens of SMs. Each pair goes through
// RotatePair, as in RopeKernel.
#include "kernels/common/dispatch.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/rope/rope_kv_append.h"
#include "kernels/rope/rope_rotate.cuh"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) RopeKvAppendKernel(RopeKvAppendParams p, const int32_t* positions,
                                                               const float* __restrict__ inv_freq,
                                                               const int32_t* slots, T* q, const T* k, const T* v,
                                                               T* k_cache, T* v_cache) {
  PdlAllowDependents();
  PdlWaitForPrior();
  const int64_t t = blockIdx.x;
  const int32_t half = p.head_dim / 2;
  const int64_t slot = slots[t];
  const int32_t width = p.num_kv_heads * p.head_dim;
  const int32_t q_pairs = p.num_heads * half;
  const int32_t k_pairs = p.num_kv_heads * half;
  const int32_t total = q_pairs + (slot >= 0 ? k_pairs + width : 0);
  const int32_t w = int32_t(blockIdx.y) * kThreads + int32_t(threadIdx.x);
  if (w >= total) return;
  const float position = static_cast<float>(positions[t]);
  if (w < q_pairs) {
    T* q_row = q + t * p.q_row_stride;
    const int32_t at = (w / half) * p.head_dim + w % half;
    RotatePair(position, inv_freq[w % half], q_row + at, half, q_row + at);
  } else if (w < q_pairs + k_pairs) {
    const int32_t pair = w - q_pairs;
    const int32_t at = (pair / half) * p.head_dim + pair % half;
    RotatePair(position, inv_freq[pair % half], k + t * p.k_row_stride + at, half, k_cache + slot * width + at);
  } else {
    const int32_t c = w - q_pairs - k_pairs;
    v_cache[slot * width + c] = v[t * p.v_row_stride + c];
  }
}

}  // namespace

cudaError_t LaunchRopeKvAppend(ScalarType type, const RopeKvAppendParams& params, const int32_t* positions,
                               const float* inv_freq, const int32_t* slots, void* q, const void* k, const void* v,
                               void* k_cache, void* v_cache, cudaStream_t stream, bool pdl) {
  if (params.num_tokens == 0) return cudaSuccess;
  if (params.num_tokens < 0 || params.num_tokens > INT32_MAX || params.head_dim <= 0 || params.head_dim % 2 != 0 ||
      params.num_heads <= 0 || params.num_kv_heads <= 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t items = int64_t(params.num_heads + 2 * params.num_kv_heads) * params.head_dim / 2 +
                        int64_t(params.num_kv_heads) * params.head_dim / 2;
  const int64_t slices = (items + kThreads - 1) / kThreads;
  if (items > INT32_MAX || slices > 65535) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(params.num_tokens), static_cast<unsigned>(slices));
  cudaError_t error = cudaSuccess;
  TERN_DISPATCH_SCALAR(type, T,
                       error = LaunchWithPdl(pdl, RopeKvAppendKernel<T>, grid,
                                             dim3(kThreads), 0, stream, params, positions, inv_freq, slots,
                                             static_cast<T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                                             static_cast<T*>(k_cache), static_cast<T*>(v_cache)));
  return error;
}

}  // namespace tern::kernels
