// The image ops of the VAE decoder (runtime/dit's CudaDitOps): im2col for
// convolutions (the GEMM is cuBLASLt's), GroupNorm (+ SiLU) and nearest 2x
// upsampling, over NHWC activations [B * H * W, C] (pixel (y, x) of sample b
// in row b*H*W + y*W + x). Their CPU reference is runtime/dit/cpu_dit_ops.cc
// (tests/runtime/dit/cuda_dit_ops_test.cc compares them).
//
// Device pointers; row strides in elements; `type` is the element type of
// every non-fp32 tensor. Arithmetic in fp32, one rounding per output. Every
// output depends on its own sample alone, with a work split fixed by the
// shapes (batch invariance), and grids follow from the arguments (graph
// capture is fine). Returns cudaErrorInvalidValue for bad sizes, else the
// launch status.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"

namespace tern::kernels {

// One sample's image: height x width pixels of `channels`.
struct DitImageDims {
  int32_t height = 0;
  int32_t width = 0;
  int32_t channels = 0;
};

// columns [count, k*k*channels] (dense) <- the k x k neighbourhoods of
// pixels first .. first+count-1 of one sample's image x (row stride
// x_stride), ordered (ky, kx, channel), zero outside the image (padding
// (k - 1) / 2).
cudaError_t LaunchDitIm2col(ScalarType type, const DitImageDims& dims, int32_t kernel, const void* x,
                            int64_t x_stride, int64_t first, int64_t count, void* columns, cudaStream_t stream);

// GroupNorm statistics are partial sums over fixed chunks of a sample's
// pixels, merged in a fixed order: kDitGroupNormChunkPixels pixels a chunk.
constexpr int64_t kDitGroupNormChunkPixels = 1024;

// Floats of the GroupNorm workspace for this shape.
int64_t DitGroupNormWorkspaceFloats(int64_t batch, int64_t pixels, int32_t groups);

// out = GroupNorm(x) * gamma + beta (then SiLU when `silu`) for x [batch *
// pixels, channels]: per sample and group of channels / groups consecutive
// channels, the mean and biased variance over pixels x group channels (each
// chunk's mean and squared deviations in two passes, chunks merged by Chan's
// formula in a fixed order). affine [2, channels] of `type`: gamma, beta.
// `workspace` holds DitGroupNormWorkspaceFloats floats. out may equal x.
struct DitGroupNormParams {
  int64_t batch = 0;
  int64_t pixels = 0;  // per sample
  int32_t channels = 0;
  int32_t groups = 0;
  float eps = 1e-6f;
  bool silu = false;
  int64_t x_stride = 0;
  int64_t out_stride = 0;
};
cudaError_t LaunchDitGroupNorm(ScalarType type, const DitGroupNormParams& params, const void* x, const void* affine,
                               void* out, float* workspace, cudaStream_t stream);

// out [batch * 4 * H * W, channels] <- nearest 2x of x [batch * H * W,
// channels]: out pixel (y, x) = x pixel (y / 2, x / 2).
cudaError_t LaunchDitUpsample2x(ScalarType type, int64_t batch, const DitImageDims& dims, const void* x,
                                int64_t x_stride, void* out, int64_t out_stride, cudaStream_t stream);

}  // namespace tern::kernels
