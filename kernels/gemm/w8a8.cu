// Per-token activation quantization: one block per row, a max reduction of
// |x / smoothing| and a second pass that quantizes; the scale and inverse
// are computed with quant_gemm.h's fp32 expressions, so q and the row scale
// equal the CPU reference bit for bit (IEEE division, rintf rounds half to
// even, __nv_cvt_float_to_fp8 rounds to nearest even and saturates at 448).
// The epilogue is elementwise.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "kernels/common/dispatch.cuh"
#include "kernels/common/float8.h"
#include "kernels/gemm/w8a8.h"

namespace tern::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    QuantizeActivationsKernel(ActivationQuantParams p, const T* __restrict__ x, uint8_t* __restrict__ q,
                              int64_t q_row_stride, float* __restrict__ row_scales) {
  __shared__ float warp_max[kThreads / 32];
  __shared__ float row_inv;
  const int64_t row = blockIdx.x;
  const T* xr = x + row * p.x_stride;
  const auto value = [&](int64_t i) {
    const float v = ToFloat(xr[i]);
    return p.smoothing != nullptr ? v / p.smoothing[i] : v;
  };
  float absmax = 0.0f;
  for (int64_t i = threadIdx.x; i < p.k; i += kThreads) absmax = fmaxf(absmax, fabsf(value(i)));
  absmax = WarpMax(absmax);
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = absmax;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
    float scale, inv;
    if (p.static_scale > 0.0f) {
      scale = p.static_scale;
      inv = 1.0f / scale;
    } else if (p.type == ActivationQuant::kInt8) {
      scale = m / 127.0f;
      inv = m > 0.0f ? 127.0f / m : 0.0f;
    } else {
      scale = fmaxf(m / kFp8E4M3Max, 1.0f / (kFp8E4M3Max * 512.0f));
      inv = 1.0f / scale;
    }
    row_scales[row] = scale;
    row_inv = inv;
  }
  __syncthreads();
  const float inv = row_inv;
  uint8_t* qr = q + row * q_row_stride;
  if (p.type == ActivationQuant::kInt8) {
    for (int64_t i = threadIdx.x; i < p.k; i += kThreads) {
      const float v = fminf(fmaxf(rintf(value(i) * inv), -128.0f), 127.0f);
      qr[i] = uint8_t(int8_t(v));
    }
  } else {
    for (int64_t i = threadIdx.x; i < p.k; i += kThreads) {
      qr[i] = uint8_t(__nv_cvt_float_to_fp8(value(i) * inv, __NV_SATFINITE, __NV_E4M3));
    }
  }
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
    QuantizeActivationsKernel<T>
        <<<unsigned(params.rows), kThreads, 0, stream>>>(params, static_cast<const T*>(x), q, q_row_stride, row_scales);
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
