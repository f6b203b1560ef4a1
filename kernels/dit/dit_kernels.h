// The diffusion transformer's pointwise and per-row kernels (runtime/dit's
// CudaDitOps): patchify / unpatchify, position and class embeddings, add,
// SiLU, GELU-tanh, LayerNorm fused with adaLN modulation, the gated
// residual (alone and fused with the LayerNorm after it), and conversions
// from host fp32. Their CPU reference is
// runtime/dit/cpu_dit_ops.cc, which tests/runtime/dit/cuda_dit_ops_test.cc
// compares them with op by op.
//
// All pointers are device pointers; tensors are row-major 2-D with explicit
// row strides in elements; `type` is the element type of every non-fp32
// tensor. Activations of B samples with L tokens are [B*L, cols],
// sample-major; per-sample vectors are [B, cols]. Arithmetic is fp32 with
// one rounding to `type` per output, and every output element depends only
// on its own sample's rows (batch invariance). Grids follow from the
// arguments alone (no device reads on the host), so every launch can be
// captured in a CUDA graph. Returns cudaErrorInvalidValue for negative sizes,
// else the launch status.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#include "kernels/gemm/quant_gemm.h"

namespace tern::kernels {

// A sample's image side: channels x size x size in patches of patch x patch.
struct DitPatchShape {
  int32_t channels = 0;
  int32_t size = 0;
  int32_t patch = 0;
};

// images [batch, channels*size*size] (row stride images_stride) ->
// patches [batch*L, channels*patch*patch], L = (size/patch)^2: row
// b*L + r*grid + c holds patch (r, c), ordered (channel, row, col).
cudaError_t LaunchDitPatchify(ScalarType type, int64_t batch, const DitPatchShape& shape, const void* images,
                              int64_t images_stride, void* patches, int64_t patches_stride, cudaStream_t stream);

// patches [batch*L, patch*patch*shape.channels] ordered (row, col, channel) ->
// images [batch, keep*size*size], the first `keep` channels.
cudaError_t LaunchDitUnpatchify(ScalarType type, int64_t batch, const DitPatchShape& shape, int32_t keep,
                                const void* patches, int64_t patches_stride, void* images, int64_t images_stride,
                                cudaStream_t stream);

// x[r, :] += table[r % table_rows, :]; table dense [table_rows, cols].
cudaError_t LaunchDitAddPositions(ScalarType type, int64_t rows, int64_t cols, void* x, int64_t x_stride,
                                  const void* table, int64_t table_rows, cudaStream_t stream);

// out[b, :] = table[labels[b], :]; labels [batch] int32 (checked by the
// caller), table dense [table_rows, cols]. A label outside [0, table_rows)
// reads nothing and writes NaN to its row, so a bad label shows in the
// output instead of faulting.
cudaError_t LaunchDitGatherRows(ScalarType type, int64_t batch, int64_t cols, const int32_t* labels,
                                const void* table, int64_t table_rows, void* out, int64_t out_stride,
                                cudaStream_t stream);

// Pointwise ops over rows x cols.
enum class DitPointwise {
  kAdd,       // x += y
  kSilu,      // out = x / (1 + exp(-x))
  kGeluTanh,  // out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
};
// kAdd: x (in place, `out` ignored) += y. kSilu, kGeluTanh: out = f(x), y
// ignored; out may equal x.
cudaError_t LaunchDitPointwise(ScalarType type, DitPointwise op, int64_t rows, int64_t cols, void* x,
                               int64_t x_stride, const void* y, int64_t y_stride, void* out, int64_t out_stride,
                               cudaStream_t stream);

// x[r, :] += gate[r / tokens, :] * y[r, :] for rows = batch * tokens.
cudaError_t LaunchDitGatedAdd(ScalarType type, int64_t rows, int64_t cols, int64_t tokens, void* x,
                              int64_t x_stride, const void* y, int64_t y_stride, const void* gate,
                              int64_t gate_stride, cudaStream_t stream);

// out[r, :] = LayerNorm(x[r, :]) * (1 + scale[r / tokens, :]) + shift[r /
// tokens, :], LayerNorm without affine: biased variance, eps; mean and
// variance in fp32, two passes. One warp per row, the row held in registers
// up to 1280 columns (x read once), 4 columns an access when cols and every
// row's address allow it. out must not alias x.
struct DitNormParams {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t tokens = 0;  // rows per sample
  int64_t x_stride = 0;
  int64_t shift_stride = 0;
  int64_t scale_stride = 0;
  int64_t out_stride = 0;
  float eps = 1e-6f;
};
cudaError_t LaunchDitLayerNormModulate(ScalarType type, const DitNormParams& params, const void* x, const void* shift,
                                       const void* scale, void* out, cudaStream_t stream);

// adaLN-Zero's residual fused with the LayerNorm + modulate after it:
// x[r, :] += gate[r / tokens, :] * y[r, :] (rounded to `type` as
// LaunchDitGatedAdd rounds it), then out as LaunchDitLayerNormModulate of
// the new x. One pass: x read once and written once, y read once. Bitwise
// equal to LaunchDitGatedAdd followed by LaunchDitLayerNormModulate. out
// must alias neither x nor y.
cudaError_t LaunchDitGatedAddLayerNormModulate(ScalarType type, const DitNormParams& params, void* x, const void* y,
                                               int64_t y_stride, const void* gate, int64_t gate_stride,
                                               const void* shift, const void* scale, void* out,
                                               cudaStream_t stream);

// The two launchers above with the output quantized per row for a W8A8
// layer (ViDiT-Q's dynamic per-token activations, made by their producer):
// codes [rows, cols] (INT8 or FP8 E4M3 bytes, row stride `stride`) and
// row_scales [rows], bit for bit LaunchQuantizeActivations (dynamic, no
// smoothing) of the output the plain launcher writes in `type`; the output
// in `type` itself is not written. cudaErrorInvalidValue without codes or
// scales or with a stride below cols.
struct DitQuantizedRows {
  ActivationQuant type = ActivationQuant::kInt8;
  uint8_t* codes = nullptr;
  int64_t stride = 0;
  float* row_scales = nullptr;
};
cudaError_t LaunchDitLayerNormModulateQuantized(ScalarType type, const DitNormParams& params, const void* x,
                                                const void* shift, const void* scale, const DitQuantizedRows& out,
                                                cudaStream_t stream);
cudaError_t LaunchDitGatedAddLayerNormModulateQuantized(ScalarType type, const DitNormParams& params, void* x,
                                                        const void* y, int64_t y_stride, const void* gate,
                                                        int64_t gate_stride, const void* shift, const void* scale,
                                                        const DitQuantizedRows& out, cudaStream_t stream);

// out [rows, out_stride] of `type` <- src dense fp32 [rows, cols].
cudaError_t LaunchDitFromFloat(ScalarType type, int64_t rows, int64_t cols, const float* src, void* out,
                               int64_t out_stride, cudaStream_t stream);

// out dense fp32 [rows, cols] <- x [rows, x_stride] of `type`.
cudaError_t LaunchDitToFloat(ScalarType type, int64_t rows, int64_t cols, const void* x, int64_t x_stride, float* out,
                             cudaStream_t stream);

}  // namespace tern::kernels
