// W4A16 / W8A16 linear layers on the GPU, on weights repacked by
// weight_only_pack.h: y[m, n] = sum_i x[m, i] * W[n, i] + bias[n] with
// W[n, i] = (code - zero) * scale as kernels/gemm/quant_gemm.h states it.
//
// LaunchWeightOnlyGemm (rows 1..kWeightOnlyGemmMaxRows: decode and small
// batches): one thread block per 16-row tile of outputs, its warps splitting
// the input columns; each warp streams its chunks of packed codes once
// through a ring of shared memory that cp.async keeps three batches of four
// 512-byte chunks ahead of the math (so the bytes in flight, not registers,
// set the bandwidth), turns each pair of codes into an fp16/bf16 pair
// (c - zero, exact) with a mask-and-OR (plus one fma for fp16's high
// nibbles, one byte permute for fp16 8-bit codes) and a packed subtraction,
// and multiplies it with x on the tensor cores (m16n8k16, fp32
// accumulation), 8 rows of x per MMA. The block stages its tile's group
// scales and zero codes in shared memory before the loop (when they fit),
// so no warp waits on a scale load. The group scale multiplies each group's
// fp32 partial sum, so the arithmetic is the reference's up to fp32
// summation order; warps combine in shared memory, the bias is added and
// each output is rounded once.
//
// LaunchWeightOnlyDequantize writes the dense weight [n, k] (stored column
// order) in the compute type, for larger row counts: dequantize into a
// scratch buffer, then a dense GEMM (cuBLAS).
//
// LaunchGatherColumns applies an act-order layer's input permutation:
// out[m, j] = x[m, order[j]].
//
// Pointers: x [rows, k] row stride x_row_stride, y [rows, n] row stride
// y_row_stride, bias [n] (the compute type) or null; weights as packed.
// Launchers never allocate and never wait, so they can be captured.
#pragma once

#include <cstdint>

#include "kernels/gemm/weight_only_pack.h"

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

inline constexpr int64_t kWeightOnlyGemmMaxRows = 64;
// The row count up to which the CUDA backend runs LaunchWeightOnlyGemm; from
// kWeightOnlyGemmFastRows + 1 on it dequantizes and runs cuBLAS. The GEMM
// reads x from L1/L2 once per 16-row output tile and MMA row tile, which
// costs more than dequantize + cuBLAS at 64 rows on the H100 (Llama-7B MLP
// shapes, tern-quant-bench); 32 rows is the last MMA row-tile count below
// that crossover.
inline constexpr int64_t kWeightOnlyGemmFastRows = 32;

// Device pointers of a packed layer (PackedWeightOnly uploaded as is).
struct WeightOnlyDeviceWeight {
  WeightOnlyLayout layout;
  const void* codes = nullptr;     // [n_tiles][k_chunks][512] bytes
  const void* scales = nullptr;    // [n_tiles][groups][16] fp16 or fp32
  bool half_scales = true;         // scales are fp16 (else fp32)
  const uint8_t* zeros = nullptr;  // [n_tiles][groups][16], or null: midpoint
};

struct WeightOnlyGemmParams {
  int64_t rows = 0;  // 0 .. kWeightOnlyGemmMaxRows
  int64_t x_row_stride = 0;
  int64_t y_row_stride = 0;
};

#if defined(TERN_WITH_CUDA)
// Whether LaunchWeightOnlyGemm runs this: fp16 or bf16, rows within the
// limit, x 4-byte aligned with an even row stride, y_row_stride >= n.
bool WeightOnlyGemmSupported(ScalarType type, const WeightOnlyDeviceWeight& weight, const WeightOnlyGemmParams& params,
                             const void* x);

// cudaErrorNotSupported when !WeightOnlyGemmSupported; rows == 0 is a no-op.
// `pdl`: programmatic dependent launch (common/pdl.cuh); the first code
// loads are issued before the wait for x.
cudaError_t LaunchWeightOnlyGemm(ScalarType type, const WeightOnlyDeviceWeight& weight,
                                 const WeightOnlyGemmParams& params, const void* x, const void* bias, void* y,
                                 cudaStream_t stream, bool pdl = true);

// w [n, k] row-major (row stride k) in `type`: (code - zero) * scale in fp32,
// rounded once.
cudaError_t LaunchWeightOnlyDequantize(ScalarType type, const WeightOnlyDeviceWeight& weight, void* w,
                                       cudaStream_t stream);

// out [rows, k] (row stride out_row_stride) = x's columns in `order` [k].
cudaError_t LaunchGatherColumns(ScalarType type, int64_t rows, int64_t k, const int32_t* order, const void* x,
                                int64_t x_row_stride, void* out, int64_t out_row_stride, cudaStream_t stream);
#endif

}  // namespace tern::kernels
