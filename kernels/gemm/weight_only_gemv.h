// Weight-only GEMV for decode: W4A16 / W8A16 linear layers at 1..16 rows
// (y[m, n] = sum_i x[m, i] * W[n, i] + bias[n], quant_gemm.h's arithmetic),
// reading the packed layout of weight_only_pack.h as it is (the same bytes
// the tensor-core GEMM of weight_only_gemm.h reads for larger row counts).
//
// The layer's 16-row tiles are cut into `slices` contiguous ranges of
// chunks; one warp streams one (tile, slice) with 16-byte loads that bypass
// L1, two batches of four chunks in flight per lane, and runs each chunk's
// k16 steps on the tensor cores (m16n8k16: the 16 weight rows as A, each 8
// rows of x as B, fp32 accumulation). A block of 8 warps holds
// 8 / slices tiles times `slices` slices. x is staged once per block in
// shared memory, each chunk's columns ordered so that lane (g, t) reads its
// B fragments for the whole chunk with one or two 16-byte loads
// (WeightOnlyGemvSharedSlot); the block's scales and zero codes are staged
// beside it. The group scale multiplies each group's fp32 partial sum (as
// the tensor-core GEMM does); the slices of a tile meet in shared memory,
// the bias is added and each output rounded once. No workspace, no atomics:
// the result does not depend on the launch plan beyond fp32 summation order.
//
// PlanWeightOnlyGemv (host only, no CUDA) chooses the slices from the
// number of tiles and SMs: as few as keep at least
// kWeightOnlyGemvMinBlocksPerSm blocks per SM (fewer slices: longer streams
// and x staged once for more tiles), at most 8. x (rows x k) and the staged
// scales go in kWeightOnlyGemvSharedBudget when they fit (two blocks share
// an SM); otherwise in the device's per-block maximum when that holds them
// (one block an SM: 16 rows of a 4096-wide x take 131 KB); otherwise lanes
// read x's B fragments from global memory (x_shared false), which costs
// about twice the time at 16 rows.
//
// SelectWeightOnlyKernel is the CUDA backend's choice between the GEMV, the
// tensor-core GEMM and dequantize + dense GEMM.
#pragma once

#include <cstdint>

#include "kernels/gemm/weight_only_gemm.h"
#include "kernels/gemm/weight_only_pack.h"

#if defined(__CUDACC__)
#define TERN_GEMV_HD __host__ __device__ __forceinline__
#else
#define TERN_GEMV_HD inline
#endif

namespace tern::kernels {

// Two MMA row tiles; x's B fragments of rows 9..16 cost one more MMA and
// one or two more shared loads per k16 step or chunk, not more weight bytes.
inline constexpr int64_t kWeightOnlyGemvMaxRows = 16;
inline constexpr int32_t kWeightOnlyGemvWarps = 8;  // per block
// Dynamic shared memory a GEMV block may use for x and the staged scales and
// zeros (at least two blocks fit an H100 SM).
inline constexpr int64_t kWeightOnlyGemvSharedBudget = 100 * 1024;
// 2: on an H100 the qkv layer (768 tiles) streamed at 12.0 us a step with
// 4 slices (2.9 blocks per SM) against 15.6 us with 8 (5.8 per SM) and
// 14.7 us with 2 (1.5 per SM), at 1 row; at 8 rows 22.2 us against 32.9.
inline constexpr int32_t kWeightOnlyGemvMinBlocksPerSm = 2;

// Where x's column `col` (0 .. chunk columns) of a chunk sits among the
// chunk's x values in shared memory, in 16-bit elements from the chunk's
// start. A chunk has `steps` k16 steps (4 for 4 bits, 2 for 8 bits); the
// MMA's B fragment of step j gives lane (g, t) the pairs at columns
// 16 j + 2 t + {0, 1} (b0) and 16 j + 2 t + 8 + {0, 1} (b1), and they are
// stored at t * 4 steps + 4 j + {0, 1} and + {2, 3}: lane t's values for the
// whole chunk are 4 steps consecutive elements (32 or 16 bytes).
TERN_GEMV_HD int32_t WeightOnlyGemvSharedSlot(int32_t bits, int32_t col) {
  const int32_t steps = bits == 4 ? 4 : 2;
  const int32_t j = col / 16, w = col % 16;
  return (w % 8) / 2 * 4 * steps + 4 * j + 2 * (w / 8) + w % 2;
}

struct WeightOnlyGemvPlan {
  int32_t slices = 0;           // warps per tile: 1, 2, 4 or 8 (0: the GEMV cannot run this)
  int32_t tiles_per_block = 0;  // kWeightOnlyGemvWarps / slices
  int32_t slice_chunks = 0;     // chunks per slice; the last slices may be shorter or empty
  int64_t blocks = 0;           // ceil(n_tiles / tiles_per_block)
  bool x_shared = false;        // x staged in shared memory
  int64_t x_row_elements = 0;   // shared row stride of x in 16-bit elements (x_shared)
  int64_t x_bytes = 0;          // rows * x_row_elements * 2 (x_shared), else 0
  int64_t staged_bytes = 0;     // the block's scales, then zero codes (if any)
  int64_t shared_bytes = 0;     // x_bytes + staged_bytes: the launch's dynamic shared memory
  // The shared memory the plan kept within: kWeightOnlyGemvSharedBudget, or
  // the device's per-block maximum when x needed it (one block an SM).
  int64_t shared_limit = 0;
  bool ok() const { return slices > 0; }
};

// Whether the kernels take this layout at all: 4 or 8 bits, k even, groups
// covering k with a group size that is a multiple of 16 (or one group),
// n and k within int32.
bool WeightOnlyLayoutSupported(const WeightOnlyLayout& layout);

// The launch plan for `rows` (1..kWeightOnlyGemvMaxRows) rows on `sms` SMs;
// not ok() for other row counts, unsupported layouts, and layers whose
// scales and zeros for one tile exceed the shared budget. `slices` other
// than 0 asks for that many slices (1, 2, 4 or 8; not ok() if the block's
// staged scales then exceed the budget), for tests and benchmarks.
// `max_shared_bytes`: the device's dynamic shared memory per block (opt-in
// maximum); at most kWeightOnlyGemvSharedBudget (the default) keeps every
// plan at two blocks an SM.
WeightOnlyGemvPlan PlanWeightOnlyGemv(const WeightOnlyLayout& layout, int64_t rows, bool half_scales, bool has_zeros,
                                      int32_t sms, int32_t slices = 0,
                                      int64_t max_shared_bytes = kWeightOnlyGemvSharedBudget);

enum class WeightOnlyKernel {
  kGemv,            // LaunchWeightOnlyGemv
  kGemm,            // LaunchWeightOnlyGemm (tensor cores)
  kDequantizeGemm,  // LaunchWeightOnlyDequantize, then a dense GEMM
};

// The CUDA backend's choice for `rows` rows, given what the two packed-weight
// kernels accept (their *Supported functions): the GEMV up to
// kWeightOnlyGemvMaxRows rows, the tensor-core GEMM up to
// kWeightOnlyGemmFastRows, dequantize + dense GEMM otherwise.
WeightOnlyKernel SelectWeightOnlyKernel(int64_t rows, bool gemv_supported, bool gemm_supported);

#if defined(TERN_WITH_CUDA)
// Whether LaunchWeightOnlyGemv runs this: fp16 or bf16, rows 0..16, a
// supported layout whose plan is ok(), scales and zeros 16-byte aligned, x
// 4-byte aligned with an even row stride >= k, y_row_stride >= n.
bool WeightOnlyGemvSupported(ScalarType type, const WeightOnlyDeviceWeight& weight, const WeightOnlyGemmParams& params,
                             const void* x);

// The dynamic shared memory a GEMV block may use on the current device (its
// per-block opt-in maximum less the kernel's static partial sums): the
// `max_shared_bytes` LaunchWeightOnlyGemv plans with. 0 when it cannot be read.
int64_t WeightOnlyGemvDeviceSharedBytes();

// cudaErrorNotSupported when !WeightOnlyGemvSupported; rows == 0 is a no-op.
// The plan follows from the layout, the rows and the current device's SM
// count and per-block shared memory (read with cudaDeviceGetAttribute;
// nothing waits for the device); `max_shared_bytes` other than 0 caps the
// latter (benchmarks compare x from global memory with x in shared).
// `pdl`: programmatic dependent launch (common/pdl.cuh); the first two
// batches of code loads and the scale staging are issued before the wait
// for x. `slices` other than 0 overrides the plan's (tests, benchmarks);
// cudaErrorNotSupported if that plan is not ok().
cudaError_t LaunchWeightOnlyGemv(ScalarType type, const WeightOnlyDeviceWeight& weight,
                                 const WeightOnlyGemmParams& params, const void* x, const void* bias, void* y,
                                 cudaStream_t stream, bool pdl = true, int32_t slices = 0,
                                 int64_t max_shared_bytes = 0);
#endif

}  // namespace tern::kernels
