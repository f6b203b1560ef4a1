// The experts' linear layers of a MoE step on rows sorted by expert
// (moe_routing.h), for decode-sized steps: y[r, n] = sum_k x[r, k] *
// W_e[n, k] for every row r in expert e's block [offsets[e], offsets[e+1]).
// The offsets are read on the device, so the host never waits for the
// routing and the step can be captured in a CUDA graph.
//
// Each (8 output features, expert) block reads offsets[e]; an expert without
// rows reads no weight byte, and an active one streams its weight rows once
// per 8 of its rows (skinny_gemm_warp.cuh: fp32 accumulation, each output
// rounded once). The total rows (tokens x top_k) are known on the host; how
// they split among experts is not, so a step whose rows could all land on
// one expert re-reads that expert's weights (from L2) once per 8 rows:
// MoeExpertGemmMaxRows bounds the rows for which this kernel is the better
// choice than a grouped GEMM sized on the host.
#pragma once

#include <cstdint>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/common/scalar_type.h"
#endif

namespace tern::kernels {

struct MoeExpertGemmParams {
  int64_t rows = 0;         // all experts' rows (tokens x top_k); expert_offsets[num_experts] == rows
  int32_t num_experts = 0;  // 1 .. kMoeMaxExperts
  int64_t n = 0;            // output features of every expert
  int64_t k = 0;            // input features
  int64_t x_row_stride = 0;
  int64_t y_row_stride = 0;
};

// The most rows (tokens x top_k) for which the MoE layer runs this kernel:
// on average at most 32 rows an expert (four passes over its weights).
int64_t MoeExpertGemmMaxRows(int32_t num_experts);

// fp32 reference (double accumulation). weights[e] is expert e's [n, k].
void MoeExpertGemmReference(const MoeExpertGemmParams& params, const int32_t* expert_offsets, const float* x,
                            const float* const* weights, float* y);

#if defined(TERN_WITH_CUDA)
// Whether LaunchMoeExpertGemm runs this: fp16 or bf16, k and the strides
// multiples of 8 elements, x 16-byte aligned, y_row_stride >= n. Every
// expert's weight must be 16-byte aligned (the caller's, at upload).
bool MoeExpertGemmSupported(ScalarType type, const MoeExpertGemmParams& params, const void* x);

// `weights`: a device array of num_experts device pointers, each expert's
// [n, k] row-major weight; `expert_offsets`: device, num_experts + 1
// entries, from LaunchMoeRoute. cudaErrorNotSupported when
// !MoeExpertGemmSupported; rows == 0 is a no-op. Launched with PDL when
// `pdl`: the wait for the routing comes before the offsets are read.
cudaError_t LaunchMoeExpertGemm(ScalarType type, const MoeExpertGemmParams& params, const void* x,
                                const void* const* weights, const int32_t* expert_offsets, void* y,
                                cudaStream_t stream, bool pdl = true);
#endif

}  // namespace tern::kernels
