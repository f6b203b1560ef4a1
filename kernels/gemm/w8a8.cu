// Per-token activation quantization: one block per row, a max reduction of
// |x / smoothing| and a second pass that quantizes (rows without smoothing
// whose addresses allow it: 16-byte loads, the row held in registers); the scale and inverse
// are computed with quant_gemm.h's fp32 expressions, so q and the row scale
// equal the CPU reference bit for bit (IEEE division, rintf rounds half to
// even, __nv_cvt_float_to_fp8 rounds to nearest even and saturates at 448).
// The epilogue is elementwise.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/float8.h"
#include "kernels/gemm/activation_quant.cuh"
#include "kernels/gemm/w8a8.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;

// The row scale and its inverse: the static scale, else the row's dynamic one.
__device__ __forceinline__ void RowScale(const ActivationQuantParams& p, float absmax, float* scale, float* inv) {
  if (p.static_scale > 0.0f) {
    *scale = p.static_scale;
    *inv = 1.0f / *scale;
  } else {
    DynamicRowScale(p.type, absmax, scale, inv);
  }
}

// A row's inverse scale, one block per row: the largest magnitude over the
// block's threads (`absmax` is this thread's), the row's scale written to
// *row_scale by thread 0, the inverse returned to every thread.
template <int kBlockThreads>
__device__ __forceinline__ float BlockRowInverse(const ActivationQuantParams& p, float absmax, float* row_scale) {
  __shared__ float warp_max[kBlockThreads / 32];
  __shared__ float row_inv;
  absmax = WarpMax(absmax);
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = absmax;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = 0.0f;
    for (int w = 0; w < kBlockThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
    float scale, inv;
    RowScale(p, m, &scale, &inv);
    *row_scale = scale;
    row_inv = inv;
  }
  __syncthreads();
  return row_inv;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    QuantizeActivationsKernel(ActivationQuantParams p, const T* __restrict__ x, uint8_t* __restrict__ q,
                              int64_t q_row_stride, float* __restrict__ row_scales) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * p.x_stride;
  const auto value = [&](int64_t i) {
    const float v = ToFloat(xr[i]);
    return p.smoothing != nullptr ? v / p.smoothing[i] : v;
  };
  float absmax = 0.0f;
  for (int64_t i = threadIdx.x; i < p.k; i += kThreads) absmax = fmaxf(absmax, fabsf(value(i)));
  const float inv = BlockRowInverse<kThreads>(p, absmax, row_scales + row);
  uint8_t* qr = q + row * q_row_stride;
  for (int64_t i = threadIdx.x; i < p.k; i += kThreads) qr[i] = QuantCode(p.type, value(i), inv);
}

// The same codes and scales as QuantizeActivationsKernel for rows without
// smoothing whose x is read 16 bytes (kVec elements) at a time and whose
// codes are written kVec bytes at a time: one block of kVecThreads per row,
// each thread holding up to kVecCached of its vectors in registers between
// the max and the quantizing pass (x read once for rows up to
// kVecThreads * kVecCached * kVec elements; longer rows read the rest twice).
constexpr int kVecThreads = 128;
constexpr int kVecCached = 6;

template <int kBytes>
struct alignas(kBytes) Bytes {
  uint8_t b[kBytes];
};

template <typename T>
__global__ void __launch_bounds__(kVecThreads)
    QuantizeActivationsVecKernel(ActivationQuantParams p, const T* __restrict__ x, uint8_t* __restrict__ q,
                                 int64_t q_row_stride, float* __restrict__ row_scales) {
  constexpr int kVec = 16 / sizeof(T);
  struct alignas(16) Pack {
    T v[kVec];
  };
  const int64_t row = blockIdx.x;
  const Pack* xr = reinterpret_cast<const Pack*>(x + row * p.x_stride);
  const int64_t vecs = p.k / kVec;
  Pack cached[kVecCached];
  float absmax = 0.0f;
#pragma unroll
  for (int i = 0; i < kVecCached; ++i) {
    const int64_t v = threadIdx.x + int64_t(i) * kVecThreads;
    if (v < vecs) {
      cached[i] = xr[v];
#pragma unroll
      for (int j = 0; j < kVec; ++j) absmax = fmaxf(absmax, fabsf(ToFloat(cached[i].v[j])));
    }
  }
  for (int64_t v = threadIdx.x + int64_t(kVecCached) * kVecThreads; v < vecs; v += kVecThreads) {
    const Pack a = xr[v];
#pragma unroll
    for (int j = 0; j < kVec; ++j) absmax = fmaxf(absmax, fabsf(ToFloat(a.v[j])));
  }
  const float inv = BlockRowInverse<kVecThreads>(p, absmax, row_scales + row);
  Bytes<kVec>* qr = reinterpret_cast<Bytes<kVec>*>(q + row * q_row_stride);
  const auto quantize = [&](const Pack& a, int64_t v) {
    Bytes<kVec> out;
#pragma unroll
    for (int j = 0; j < kVec; ++j) out.b[j] = QuantCode(p.type, ToFloat(a.v[j]), inv);
    qr[v] = out;
  };
#pragma unroll
  for (int i = 0; i < kVecCached; ++i) {
    const int64_t v = threadIdx.x + int64_t(i) * kVecThreads;
    if (v < vecs) quantize(cached[i], v);
  }
  for (int64_t v = threadIdx.x + int64_t(kVecCached) * kVecThreads; v < vecs; v += kVecThreads) quantize(xr[v], v);
}

// Whether QuantizeActivationsVecKernel takes these rows.
bool VectorRowsAllow(size_t elem, const ActivationQuantParams& p, const void* x, const uint8_t* q,
                     int64_t q_row_stride) {
  const size_t vec = 16 / elem;
  return p.smoothing == nullptr && p.k % int64_t(vec) == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         (size_t(p.x_stride) * elem) % 16 == 0 && reinterpret_cast<uintptr_t>(q) % vec == 0 &&
         size_t(q_row_stride) % vec == 0;
}

template <typename T, typename Acc>
__global__ void W8A8EpilogueKernel(W8A8EpilogueParams p, const Acc* __restrict__ acc,
                                   const float* __restrict__ row_scales, const float* __restrict__ w_scales,
                                   const float* __restrict__ bias, T* __restrict__ y) {
  const int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= p.rows * p.n) return;
  const int64_t r = index / p.n, c = index % p.n;
  const float a = float(acc[r * p.acc_row_stride + c]);
  // quant_gemm.h's W8A8Epilogue.
  y[r * p.y_row_stride + c] = FromFloat<T>(row_scales[r] * (w_scales[c] * a) + (bias != nullptr ? bias[c] : 0.0f));
}

}  // namespace

cudaError_t LaunchQuantizeActivations(ScalarType type, const ActivationQuantParams& params, const void* x, uint8_t* q,
                                      int64_t q_row_stride, float* row_scales, cudaStream_t stream) {
  if (params.rows == 0) return cudaSuccess;
  if (params.k <= 0 || params.x_stride < params.k || q_row_stride < params.k) return cudaErrorInvalidValue;
  TERN_DISPATCH_SCALAR(type, T, {
    if (VectorRowsAllow(sizeof(T), params, x, q, q_row_stride)) {
      QuantizeActivationsVecKernel<T><<<unsigned(params.rows), kVecThreads, 0, stream>>>(
          params, static_cast<const T*>(x), q, q_row_stride, row_scales);
    } else {
      QuantizeActivationsKernel<T><<<unsigned(params.rows), kThreads, 0, stream>>>(
          params, static_cast<const T*>(x), q, q_row_stride, row_scales);
    }
  });
  return cudaGetLastError();
}

cudaError_t LaunchW8A8Epilogue(ScalarType type, const W8A8EpilogueParams& params, const void* acc,
                               const float* row_scales, const float* w_scales, const float* bias, void* y,
                               cudaStream_t stream) {
  if (params.rows == 0 || params.n == 0) return cudaSuccess;
  const int64_t total = params.rows * params.n;
  const dim3 grid(unsigned((total + kThreads - 1) / kThreads));
  TERN_DISPATCH_SCALAR(type, T, {
    if (params.int32_acc) {
      W8A8EpilogueKernel<T, int32_t><<<grid, kThreads, 0, stream>>>(params, static_cast<const int32_t*>(acc),
                                                                    row_scales, w_scales, bias, static_cast<T*>(y));
    } else {
      W8A8EpilogueKernel<T, float><<<grid, kThreads, 0, stream>>>(params, static_cast<const float*>(acc), row_scales,
                                                                  w_scales, bias, static_cast<T*>(y));
    }
  });
  return cudaGetLastError();
}

}  // namespace tern::kernels
