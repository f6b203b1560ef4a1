// The VAE decoder's 3x3 convolutions (stride 1, padding 1) as one
// implicit GEMM on the tensor cores: the activations are read in place, no
// im2col buffer. Over NHWC activations [batch * H * W, C] (pixel (y, x) of
// sample b in row b*H*W + y*W + x):
//
//   out[b, y, x, o] = bias[o] + sum_{ky, kx, c} w[o, (ky*3 + kx)*C_in + c] * in[b, y+ky-1, x+kx-1, c]
//
// with `in` zero outside the image. The weight is the im2col GEMM's
// (runtime/dit/cuda_dit_ops.cc, CudaDitConv): [C_out, 9*C_in] row-major in
// (ky, kx, channel) order. Its CPU reference is runtime/dit/cpu_dit_ops.cc's
// Conv2d (tests/kernels/vae_conv_cuda_test.cc checks it against float64
// loops, tests/runtime/dit/cuda_dit_ops_test.cc against CpuDitOps).
//
// fp16 and bf16 only: inputs, weights, bias and output all of `type`; fp32
// accumulation, the bias added to the fp32 sum, one rounding per output.
//
// Batch invariance: a CTA computes a tile of 128 consecutive pixel rows of
// the flattened batch (so a tile may hold pixels of two samples) by
// DitConvImplicitTileN(...) output channels. The reduction is the same for
// every output whatever the tile or the batch: channel chunks of 32 in
// order, the 9 taps of each chunk in (ky, kx) order, each chunk's 32
// products as two m16n8k16 MMAs; out-of-image taps read zeros and never
// another sample's pixels. So an output is bitwise the same computed alone
// or batched, and with either tile width.
//
// Graph-capture safe: no allocation, the grid follows from the arguments.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#include "kernels/dit/vae_kernels.h"

namespace tern::kernels {

struct DitConvImplicitParams {
  int64_t batch = 0;
  DitImageDims dims;         // one sample's image: height, width, channels (C_in)
  int32_t out_channels = 0;  // C_out
  int64_t x_stride = 0;      // elements between consecutive pixel rows of x
  int64_t out_stride = 0;    // elements between consecutive pixel rows of out
  // Output channels a CTA computes: 0 takes DitConvImplicitTileN(...); 64
  // or 128 insist on one (the result is the same either way).
  int32_t tile_n = 0;
};

// The tile width the launcher picks for a shape, from the shape alone (never
// the batch): 128 output channels when C_out > 128 and one sample already
// makes at least 256 such tiles, else 64 (more CTAs for small images and
// 128-channel layers).
int32_t DitConvImplicitTileN(const DitImageDims& dims, int32_t out_channels);

// Whether LaunchDitConvImplicit runs this shape: type fp16 or bf16;
// batch >= 0; height, width >= 1; C_in and C_out positive multiples of 8;
// x_stride >= C_in and out_stride >= C_out, both multiples of 8; x, weight
// and out 16-byte aligned; batch * H * W < 2^31; tile_n 0, 64 or 128.
// Callers fall back to im2col + GEMM (LaunchDitIm2col) otherwise.
bool DitConvImplicitSupported(ScalarType type, const DitConvImplicitParams& params, const void* x,
                              const void* weight, const void* out);

// out [batch * H * W, C_out] (row stride out_stride) <- the 3x3 convolution
// of x [batch * H * W, C_in] (row stride x_stride) with weight [C_out,
// 9 * C_in] (dense rows) and bias [C_out] (nullptr: none). out must not
// overlap x. Returns cudaErrorInvalidValue when DitConvImplicitSupported
// is false, else the launch status (batch 0 launches nothing).
cudaError_t LaunchDitConvImplicit(ScalarType type, const DitConvImplicitParams& params, const void* x,
                                  const void* weight, const void* bias, void* out, cudaStream_t stream);

}  // namespace tern::kernels
