// The CUDA DiT ops of the VAE decoder: Conv2d (the implicit-GEMM kernel or
// im2col + cuBLASLt), GroupNorm and Upsample2x.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/dit/vae_conv.h"
#include "kernels/dit/vae_kernels.h"
#include "runtime/base/check.h"
#include "runtime/dit/cuda_dit_ops_impl.h"

namespace tern::runtime {

using namespace cuda_dit;  // NOLINT: the shared internal types of cuda_dit_ops_impl.h

void CudaDitOps::Conv2d(Tensor x, const DitImageShape& shape, const DitConv& conv, Tensor out) {
  Impl& m = *impl_;
  const auto& c = static_cast<const CudaDitConv&>(conv);
  const int64_t pixels = shape.pixels();
  CHECK_EQ(x.cols, c.in);
  CHECK_EQ(out.cols, c.out);
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(m.RowsPerSample(x.rows), pixels);
  CHECK(x.data != out.data);
  const bool enqueue = m.Enter(kLinearOp, 14);
  m.Mix(x);
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(&conv));
  // 3x3 layers in 16-bit types with channels a multiple of 8: one implicit
  // GEMM over the whole batch, reading x in place (its tiling depends on the
  // layer's shape only, so batch invariance holds). The choice follows from
  // what the signature already holds (x, out, the layer, the image shape).
  if (c.k == 3 && m.type != ScalarType::kF32) {
    kernels::DitConvImplicitParams p;
    p.batch = m.batch;
    p.dims = {shape.height, shape.width, c.in};
    p.out_channels = c.out;
    p.x_stride = x.stride;
    p.out_stride = out.stride;
    if (kernels::DitConvImplicitSupported(m.type, p, x.data, c.gemm.weight.data(), out.data)) {
      if (!enqueue || x.rows == 0) return;
      m.Record(kernels::LaunchDitConvImplicit(m.type, p, x.data, c.gemm.weight.data(),
                                              c.gemm.has_bias ? c.gemm.bias.data() : nullptr, out.data, m.stream),
               "implicit conv");
      return;
    }
  }
  const int64_t columns = c.gemm.in;
  const int64_t chunk = ConvChunkPixels(pixels, columns, m.element_bytes);
  // The im2col buffer is part of the pass's recorded work: size it (and
  // hash it) even when replaying.
  void* buffer = nullptr;
  if (c.k > 1) {
    buffer = m.Workspace(m.im2col, size_t(chunk) * size_t(columns) * m.element_bytes, "the im2col buffer");
    m.Mix(reinterpret_cast<uintptr_t>(buffer));
  }
  if (!enqueue || x.rows == 0) return;
  if (c.k > 1 && buffer == nullptr) return;
  const kernels::DitImageDims dims{shape.height, shape.width, c.in};
  for (int64_t b = 0; b < m.batch; ++b) {
    for (int64_t p0 = 0; p0 < pixels; p0 += chunk) {
      const int64_t count = std::min(chunk, pixels - p0);
      Tensor rows_out{static_cast<char*>(out.data) + size_t(b * pixels + p0) * out.stride * m.element_bytes,
                      out.dtype, count, out.cols, out.stride};
      Tensor rows_in;
      if (c.k == 1) {
        rows_in = Tensor{static_cast<char*>(x.data) + size_t(b * pixels + p0) * x.stride * m.element_bytes, x.dtype,
                         count, x.cols, x.stride};
      } else {
        const void* sample = static_cast<const char*>(x.data) + size_t(b * pixels) * x.stride * m.element_bytes;
        m.Record(kernels::LaunchDitIm2col(m.type, dims, c.k, sample, x.stride, p0, count, buffer, m.stream),
                 "im2col");
        rows_in = Tensor{buffer, x.dtype, count, columns, columns};
      }
      m.Gemm(rows_in, c.gemm, rows_out, chunk);
    }
  }
}

void CudaDitOps::GroupNorm(Tensor x, int32_t groups, float eps, const DitTable& affine, bool silu, Tensor out) {
  Impl& m = *impl_;
  const auto& t = static_cast<const CudaDitTable&>(affine);
  CHECK(groups > 0 && x.cols % groups == 0) << groups << " groups of " << x.cols << " channels";
  CHECK_EQ(t.rows(), 2);
  CHECK_EQ(t.cols(), x.cols);
  CHECK_EQ(x.rows, out.rows);
  CHECK_EQ(x.cols, out.cols);
  const int64_t pixels = m.RowsPerSample(x.rows);
  const bool enqueue = m.Enter(kOtherOp, 15);
  m.Mix(x);
  m.Mix(out);
  m.Mix(reinterpret_cast<uintptr_t>(&affine));
  m.Mix(uint64_t(groups) * 2 + (silu ? 1 : 0));
  float* workspace = static_cast<float*>(m.Workspace(
      m.norm_workspace, size_t(kernels::DitGroupNormWorkspaceFloats(m.batch, pixels, groups)) * sizeof(float),
      "the GroupNorm workspace"));
  m.Mix(reinterpret_cast<uintptr_t>(workspace));
  if (!enqueue || workspace == nullptr) return;
  kernels::DitGroupNormParams p;
  p.batch = m.batch;
  p.pixels = pixels;
  p.channels = int32_t(x.cols);
  p.groups = groups;
  p.eps = eps;
  p.silu = silu;
  p.x_stride = x.stride;
  p.out_stride = out.stride;
  m.Record(kernels::LaunchDitGroupNorm(m.type, p, x.data, t.values.data(), out.data, workspace, m.stream),
           absl::StrCat("group norm (", groups, " groups of ", x.cols, " channels, ", pixels, " pixels)"));
}

void CudaDitOps::Upsample2x(Tensor x, const DitImageShape& shape, Tensor out) {
  Impl& m = *impl_;
  CHECK_EQ(m.RowsPerSample(x.rows), shape.pixels());
  CHECK_EQ(out.rows, 4 * x.rows);
  CHECK_EQ(out.cols, x.cols);
  const bool enqueue = m.Enter(kOtherOp, 16);
  m.Mix(x);
  m.Mix(out);
  if (!enqueue) return;
  m.Record(kernels::LaunchDitUpsample2x(m.type, m.batch, {shape.height, shape.width, int32_t(x.cols)}, x.data,
                                        x.stride, out.data, out.stride, m.stream),
           "upsample 2x");
}

}  // namespace tern::runtime
