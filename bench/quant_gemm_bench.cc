// tern-quant-bench: the weight-only GEMM kernels (W4A16 g128, W8A16 per
// channel and g128) on Llama-2-7B's linear shapes at 1, 4, 8, 16, 32 and 64 rows,
// side by side with the fp16 path of the same shape (what the CUDA backend
// runs: the skinny kernel for 1-2 rows, cuBLAS GemmEx above, both shown) and
// with each scheme's byte floor: the bytes the kernel must read (packed
// codes, scales, zeros) over the device's copy bandwidth measured in the
// same run (cudaMemcpy device to device, read + write). Also the large-M
// path (dequantize + cuBLAS) at each row count, for the crossover. fp16
// activations, fp32 accumulation. Whole-model tokens/s: tools/device/
// quant_bench.sh (tern-run on random-weight Llama-2-7B quantized by
// tern-quantize).
//
//   tern-quant-bench [--json out.json] [--reps 50]
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench/copy_bandwidth.h"
#include "bench/gpu_timing.h"
#include "kernels/gemm/skinny_gemm.h"
#include "kernels/gemm/weight_only_gemm.h"
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
  std::string json_path;
  int reps = 50;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--json") json_path = argv[i + 1];
    if (std::string(argv[i]) == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
  }
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
  const Scheme schemes[] = {{"w4a16-g128", 4, 128, false},
                            {"w4a16-g128-asym", 4, 128, true},
                            {"w8a16", 8, 0, false},
                            {"w8a16-g128", 8, 128, false}};
  const int64_t row_counts[] = {1, 4, 8, 16, 32, 64};

  std::printf("%s, copy bandwidth %.0f GB/s (read + write); fp16 activations, fp32 accumulation\n", prop.name,
              bandwidth / 1e9);
  std::printf("%-8s %-16s %4s %10s %10s %10s %8s %10s %10s\n", "shape", "scheme", "rows", "fp16 us", "quant us",
              "floor us", "of floor", "vs fp16", "deq+blas us");
  nlohmann::json results = nlohmann::json::array();
  for (const Shape& s : shapes) {
    const size_t dense_bytes = size_t(s.n) * s.k * sizeof(__half);
    const int dense_copies = CopiesFor(dense_bytes);
    std::vector<void*> dense(dense_copies);
    for (auto& w : dense) w = DeviceFill(dense_bytes, 0);
    void* x = DeviceFill(size_t(64) * s.k * sizeof(__half), 0);
    void* y = DeviceFill(size_t(64) * s.n * sizeof(__half), 0);
    void* dequant = DeviceFill(dense_bytes, 0);
    const float alpha = 1.0f, beta = 0.0f;
    // The fp16 path at each row count: best of the skinny kernel (rows <= 8) and cuBLAS.
    std::vector<double> fp16_us;
    for (int64_t rows : row_counts) {
      int copy = 0;
      const auto blas_call = [&](const void* w, int64_t r) {
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(r), int(s.k), &alpha, w, CUDA_R_16F, int(s.k), x,
                     CUDA_R_16F, int(s.k), &beta, y, CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      };
      const float blas_ms = tern::bench::MeanLaunchMs([&] { blas_call(dense[copy++ % dense_copies], rows); }, reps);
      float best = blas_ms;
      if (rows <= tern::kernels::kSkinnyGemmMaxRows) {
        const tern::kernels::SkinnyGemmParams p{rows, s.n, s.k, s.k, s.n};
        best = std::min(best, tern::bench::MeanLaunchMs(
                                  [&] {
                                    tern::kernels::LaunchSkinnyGemm(ScalarType::kF16, p, x,
                                                                    dense[copy++ % dense_copies], y, nullptr);
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
        const float quant_ms = tern::bench::MeanLaunchMs(
            [&] {
              const cudaError_t e = tern::kernels::LaunchWeightOnlyGemm(
                  ScalarType::kF16, packed[copy++ % copies].weight, p, x, nullptr, y, nullptr, false);
              if (e != cudaSuccess) error = e;
            },
            reps);
        // The large-M path: dequantize into one scratch, then cuBLAS.
        const float deq_ms = tern::bench::MeanLaunchMs(
            [&] {
              tern::kernels::LaunchWeightOnlyDequantize(ScalarType::kF16, packed[copy++ % copies].weight, dequant,
                                                        nullptr);
              cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(rows), int(s.k), &alpha, dequant, CUDA_R_16F,
                           int(s.k), x, CUDA_R_16F, int(s.k), &beta, y, CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT);
            },
            std::max(1, reps / 5));
        if (error != cudaSuccess) {
          std::fprintf(stderr, "tern-quant-bench: %s %s rows %lld: %s\n", s.name, q.name, (long long)rows,
                       cudaGetErrorString(error));
          return 1;
        }
        const double quant_us = quant_ms * 1e3;
        std::printf("%-8s %-16s %4lld %10.1f %10.1f %10.1f %8.2f %9.2fx %10.1f\n", s.name, q.name, (long long)rows,
                    fp16_us[ri], quant_us, floor_us, floor_us / quant_us, fp16_us[ri] / quant_us, deq_ms * 1e3);
        results.push_back({{"shape", s.name},
                           {"n", s.n},
                           {"k", s.k},
                           {"scheme", q.name},
                           {"rows", rows},
                           {"fp16_us", fp16_us[ri]},
                           {"quant_us", quant_us},
                           {"dequant_cublas_us", deq_ms * 1e3},
                           {"packed_bytes", bytes},
                           {"floor_us", floor_us},
                           {"fraction_of_floor", floor_us / quant_us},
                           {"speedup_vs_fp16", fp16_us[ri] / quant_us}});
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
                                               {"activations", "fp16"},
                                               {"results", results}}
                                    .dump(2)
                             << "\n";
  }
  cublasDestroy(blas);
  cudaFree(workspace);
  return 0;
}
