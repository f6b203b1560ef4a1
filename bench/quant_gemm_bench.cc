// tern-quant-bench: the weight-only kernels (W4A16 at group sizes 128, 64
// and 32, symmetric and asymmetric; W8A16 per channel and g128) on
// Llama-2-7B's linear shapes at 1, 2, 4, 8, 16, 32 and 64 rows, side by side
// with the dense path of the same shape (what the CUDA backend runs: the
// skinny kernel up to 8 rows or cuBLAS GemmEx, the faster shown) and with
// each scheme's byte floor: the bytes the kernel must read (packed codes,
// scales, zeros) over the device's copy bandwidth measured in the same run
// (cudaMemcpy device to device, read + write). Columns: the decode GEMV
// (weight_only_gemv.h, rows <= 16), the tensor-core GEMM (weight_only_gemm.h),
// and the large-M path (dequantize + cuBLAS); "of floor" and "vs dense" are
// those of the kernel the backend picks at that row count
// (SelectWeightOnlyKernel). Activations fp16 or bf16 (--dtype), fp32
// accumulation; launches with programmatic dependent launch as the backend
// runs them (--pdl 0 for plain stream order). --sweep-slices also times the
// GEMV at each slice count (1, 2, 4, 8 warps per tile) beside the plan's
// choice. Whole-model tokens/s: tools/device/quant_bench.sh (tern-run on
// random-weight Llama-2-7B quantized by tern-quantize).
//
//   tern-quant-bench [--json out.json] [--reps 50] [--dtype float16|bfloat16] [--pdl 1] [--sweep-slices]
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "bench/copy_bandwidth.h"
#include "bench/gpu_timing.h"
#include "kernels/gemm/skinny_gemm.h"
#include "kernels/gemm/weight_only_gemm.h"
#include "kernels/gemm/weight_only_gemv.h"
#include "nlohmann/json.hpp"

namespace {

using tern::kernels::ScalarType;
using tern::kernels::WeightOnlyDeviceWeight;
using tern::kernels::WeightOnlyLayout;


// Enough copies of a weight that consecutive calls miss the L2 (50 MB on an H100).
int CopiesFor(size_t bytes) { return int(std::max<size_t>(2, (size_t(256) << 20) / std::max<size_t>(bytes, 1) + 1)); }

void* DeviceFill(size_t bytes, int value) {
  void* p = nullptr;
  cudaMalloc(&p, std::max<size_t>(bytes, 16));
  cudaMemset(p, value, std::max<size_t>(bytes, 16));
  return p;
}

// A packed layer with arbitrary codes (timing does not depend on them):
// fp16 scales of a small positive value (bytes 0x14), zeros when asymmetric.
struct PackedCopy {
  WeightOnlyDeviceWeight weight;
  std::vector<void*> owned;
};

PackedCopy MakePacked(const WeightOnlyLayout& layout, bool asymmetric) {
  PackedCopy p;
  p.weight.layout = layout;
  p.weight.codes = DeviceFill(layout.code_bytes(), 0x5a);
  p.weight.scales = DeviceFill(layout.group_entries() * 2, 0x14);
  p.weight.half_scales = true;
  p.owned = {const_cast<void*>(p.weight.codes), const_cast<void*>(p.weight.scales)};
  if (asymmetric) {
    p.weight.zeros = static_cast<const uint8_t*>(DeviceFill(layout.group_entries(), 0x07));
    p.owned.push_back(const_cast<uint8_t*>(p.weight.zeros));
  }
  return p;
}

size_t PackedBytes(const WeightOnlyLayout& layout, bool asymmetric) {
  return layout.code_bytes() + layout.group_entries() * 2 + (asymmetric ? layout.group_entries() : 0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, dtype = "float16";
  int reps = 50;
  bool pdl = true, sweep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--sweep-slices") {
      sweep = true;
      continue;
    }
    if (i + 1 >= argc) break;
    if (arg == "--json") json_path = argv[i + 1];
    if (arg == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
    if (arg == "--dtype") dtype = argv[i + 1];
    if (arg == "--pdl") pdl = std::atoi(argv[i + 1]) != 0;
  }
  if (dtype != "float16" && dtype != "bfloat16") {
    std::fprintf(stderr, "tern-quant-bench: --dtype is float16 or bfloat16, not %s\n", dtype.c_str());
    return 1;
  }
  const ScalarType type = dtype == "float16" ? ScalarType::kF16 : ScalarType::kBF16;
  const cudaDataType blas_type = dtype == "float16" ? CUDA_R_16F : CUDA_R_16BF;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "tern-quant-bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const double bandwidth = tern::bench::DeviceCopyBandwidth();
  cublasHandle_t blas;
  cublasCreate(&blas);
  void* workspace = nullptr;
  cudaMalloc(&workspace, size_t(32) << 20);
  cublasSetWorkspace(blas, workspace, size_t(32) << 20);

  struct Shape {
    const char* name;
    int64_t n, k;
  };
  // Llama-2-7B: q/k/v fused, o, gate/up fused (and up alone), down.
  const Shape shapes[] = {
      {"qkv", 12288, 4096}, {"o", 4096, 4096}, {"up", 11008, 4096}, {"gate_up", 22016, 4096}, {"down", 4096, 11008}};
  struct Scheme {
    const char* name;
    int32_t bits;
    int64_t group;  // 0: per channel
    bool asymmetric;
  };
  const Scheme schemes[] = {{"w4a16-g128", 4, 128, false}, {"w4a16-g128-asym", 4, 128, true},
                            {"w4a16-g64", 4, 64, false},   {"w4a16-g32-asym", 4, 32, true},
                            {"w8a16", 8, 0, false},        {"w8a16-g128", 8, 128, false}};
  const int64_t row_counts[] = {1, 2, 4, 8, 16, 32, 64};

  std::printf("%s, %d SMs, copy bandwidth %.0f GB/s (read + write); %s activations, fp32 accumulation, PDL %s\n",
              prop.name, prop.multiProcessorCount, bandwidth / 1e9, dtype.c_str(), pdl ? "on" : "off");
  std::printf("%-8s %-16s %4s %10s %10s %10s %10s %10s %8s %9s %10s\n", "shape", "scheme", "rows", "dense us",
              "gemv us", "gemm us", "deq+blas", "floor us", "of floor", "vs dense", "slices");
  nlohmann::json results = nlohmann::json::array();
  for (const Shape& s : shapes) {
    const size_t dense_bytes = size_t(s.n) * s.k * 2;
    const int dense_copies = CopiesFor(dense_bytes);
    std::vector<void*> dense(dense_copies);
    for (auto& w : dense) w = DeviceFill(dense_bytes, 0);
    void* x = DeviceFill(size_t(64) * s.k * 2, 0);
    void* y = DeviceFill(size_t(64) * s.n * 2, 0);
    void* dequant = DeviceFill(dense_bytes, 0);
    const float alpha = 1.0f, beta = 0.0f;
    // The fp16 path at each row count: best of the skinny kernel (rows <= 8) and cuBLAS.
    std::vector<double> fp16_us;
    for (int64_t rows : row_counts) {
      int copy = 0;
      const auto blas_call = [&](const void* w, int64_t r) {
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(r), int(s.k), &alpha, w, blas_type, int(s.k), x,
                     blas_type, int(s.k), &beta, y, blas_type, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      };
      const float blas_ms = tern::bench::MeanLaunchMs([&] { blas_call(dense[copy++ % dense_copies], rows); }, reps);
      float best = blas_ms;
      if (rows <= tern::kernels::kSkinnyGemmMaxRows) {
        const tern::kernels::SkinnyGemmParams p{rows, s.n, s.k, s.k, s.n};
        best = std::min(best, tern::bench::MeanLaunchMs(
                                  [&] {
                                    tern::kernels::LaunchSkinnyGemm(type, p, x, dense[copy++ % dense_copies], y,
                                                                    nullptr, pdl);
                                  },
                                  reps));
      }
      fp16_us.push_back(best * 1e3);
    }
    for (const Scheme& q : schemes) {
      WeightOnlyLayout layout;
      layout.bits = q.bits;
      layout.n = s.n;
      layout.k = s.k;
      layout.group_size = q.group > 0 ? q.group : s.k;
      layout.groups = s.k / layout.group_size;
      const size_t bytes = PackedBytes(layout, q.asymmetric);
      const int copies = CopiesFor(bytes);
      std::vector<PackedCopy> packed;
      for (int i = 0; i < copies; ++i) packed.push_back(MakePacked(layout, q.asymmetric));
      const double floor_us = double(bytes) / bandwidth * 1e6;
      for (size_t ri = 0; ri < std::size(row_counts); ++ri) {
        const int64_t rows = row_counts[ri];
        int copy = 0;
        const tern::kernels::WeightOnlyGemmParams p{rows, s.k, s.n};
        cudaError_t error = cudaSuccess;
        const auto note = [&](cudaError_t e) {
          if (e != cudaSuccess) error = e;
        };
        const float gemm_ms = tern::bench::MeanLaunchMs(
            [&] {
              note(tern::kernels::LaunchWeightOnlyGemm(type, packed[copy++ % copies].weight, p, x, nullptr, y, nullptr,
                                                       pdl));
            },
            reps);
        // The decode GEMV (rows <= 16): the plan's slices, and each slice count when sweeping.
        const bool gemv_ok =
            rows <= tern::kernels::kWeightOnlyGemvMaxRows &&
            tern::kernels::WeightOnlyGemvSupported(type, packed[0].weight, p, x);
        // max_shared 0: the device's shared memory per block (x in shared at
        // one block an SM when it misses the two-block budget).
        const auto gemv_time = [&](int32_t slices, int64_t max_shared) {
          return tern::bench::MeanLaunchMs(
              [&] {
                note(tern::kernels::LaunchWeightOnlyGemv(type, packed[copy++ % copies].weight, p, x, nullptr, y,
                                                         nullptr, pdl, slices, max_shared));
              },
              reps);
        };
        const float gemv_ms = gemv_ok ? gemv_time(0, 0) : 0.0f;
        std::string slices_text = "-";
        nlohmann::json sweep_json = nlohmann::json::object();
        float gemv_two_block_ms = 0.0f;  // capped at the two-block budget, when the plan took more
        if (gemv_ok) {
          const int64_t device_shared = tern::kernels::WeightOnlyGemvDeviceSharedBytes();
          const auto plan = tern::kernels::PlanWeightOnlyGemv(layout, rows, true, q.asymmetric,
                                                              prop.multiProcessorCount, 0, device_shared);
          // "xl": x in shared memory at one block an SM; "xg": x from global memory.
          slices_text = std::to_string(plan.slices) + (!plan.x_shared ? " xg"
                                                       : plan.shared_limit > tern::kernels::kWeightOnlyGemvSharedBudget
                                                           ? " xl"
                                                           : "");
          if (plan.shared_limit > tern::kernels::kWeightOnlyGemvSharedBudget) {
            gemv_two_block_ms = gemv_time(0, tern::kernels::kWeightOnlyGemvSharedBudget);
            char text[48];
            std::snprintf(text, sizeof(text), " (two-block plan %.1f us)", gemv_two_block_ms * 1e3);
            slices_text += text;
          }
          if (sweep) {
            for (int32_t slices : {1, 2, 4, 8}) {
              // A forced count whose block would stage more scales than the
              // shared budget has no plan (the launch declines it).
              if (!tern::kernels::PlanWeightOnlyGemv(layout, rows, true, q.asymmetric, prop.multiProcessorCount,
                                                     slices, device_shared)
                       .ok()) {
                slices_text += " " + std::to_string(slices) + ":-";
                continue;
              }
              const double us = gemv_time(slices, 0) * 1e3;
              sweep_json[std::to_string(slices)] = us;
              char text[32];
              std::snprintf(text, sizeof(text), " %d:%.1f", slices, us);
              slices_text += text;
            }
          }
        }
        // The large-M path: dequantize into one scratch, then cuBLAS.
        const float deq_ms = tern::bench::MeanLaunchMs(
            [&] {
              tern::kernels::LaunchWeightOnlyDequantize(type, packed[copy++ % copies].weight, dequant, nullptr);
              cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(rows), int(s.k), &alpha, dequant, blas_type,
                           int(s.k), x, blas_type, int(s.k), &beta, y, blas_type, int(s.n), CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT);
            },
            std::max(1, reps / 5));
        if (error != cudaSuccess) {
          std::fprintf(stderr, "tern-quant-bench: %s %s rows %lld: %s\n", s.name, q.name, (long long)rows,
                       cudaGetErrorString(error));
          return 1;
        }
        // What the backend runs at this row count.
        const auto pick = tern::kernels::SelectWeightOnlyKernel(rows, gemv_ok, true);
        const double chosen_us = (pick == tern::kernels::WeightOnlyKernel::kGemv   ? gemv_ms
                                  : pick == tern::kernels::WeightOnlyKernel::kGemm ? gemm_ms
                                                                                   : deq_ms) *
                                 1e3;
        char gemv_text[16] = "-";
        if (gemv_ok) std::snprintf(gemv_text, sizeof(gemv_text), "%.1f", gemv_ms * 1e3);
        std::printf("%-8s %-16s %4lld %10.1f %10s %10.1f %10.1f %10.1f %8.2f %8.2fx %s\n", s.name, q.name,
                    (long long)rows, fp16_us[ri], gemv_text, gemm_ms * 1e3, deq_ms * 1e3, floor_us,
                    floor_us / chosen_us, fp16_us[ri] / chosen_us, slices_text.c_str());
        std::fflush(stdout);
        nlohmann::json row = {{"shape", s.name},
                              {"n", s.n},
                              {"k", s.k},
                              {"scheme", q.name},
                              {"rows", rows},
                              {"dense_us", fp16_us[ri]},
                              {"gemm_us", gemm_ms * 1e3},
                              {"dequant_cublas_us", deq_ms * 1e3},
                              {"chosen_us", chosen_us},
                              {"packed_bytes", bytes},
                              {"floor_us", floor_us},
                              {"fraction_of_floor", floor_us / chosen_us},
                              {"speedup_vs_dense", fp16_us[ri] / chosen_us}};
        if (gemv_ok) {
          row["gemv_us"] = gemv_ms * 1e3;
          row["gemv_fraction_of_floor"] = floor_us / (gemv_ms * 1e3);
          row["gemv_slices"] = slices_text;
          if (sweep) row["gemv_us_by_slices"] = sweep_json;
          if (gemv_two_block_ms > 0.0f) row["gemv_two_block_plan_us"] = gemv_two_block_ms * 1e3;
        }
        results.push_back(row);
      }
      for (auto& c : packed) {
        for (void* ptr : c.owned) cudaFree(ptr);
      }
    }
    for (auto* w : dense) cudaFree(w);
    cudaFree(x);
    cudaFree(y);
    cudaFree(dequant);
  }
  if (cudaGetLastError() != cudaSuccess) {
    std::fprintf(stderr, "tern-quant-bench: a CUDA call failed\n");
    return 1;
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << nlohmann::json{{"device", prop.name},
                                               {"copy_bytes_per_s", bandwidth},
                                               {"activations", dtype},
                                               {"pdl", pdl},
                                               {"results", results}}
                                    .dump(2)
                             << "\n";
  }
  cublasDestroy(blas);
  cudaFree(workspace);
  return 0;
}
