// tern-gemm-bench: decode-sized GEMMs (1-8 rows) of Llama-2-7B's layer shapes
// and LM head, tern's skinny kernel beside cuBLAS (GemmEx, fp32 accumulate,
// the same call the CUDA backend makes for larger batches), as weight bytes
// read per second and as a fraction of the device's measured copy bandwidth.
//
//   tern-gemm-bench [--json out.json]
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
#include "nlohmann/json.hpp"

using tern::kernels::ScalarType;

int main(int argc, char** argv) {
  std::string json_path;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--json") json_path = argv[i + 1];
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "tern-gemm-bench: no CUDA device\n");
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
  const Shape shapes[] = {{"qkv", 12288, 4096}, {"o", 4096, 4096}, {"gate_up", 22016, 4096},
                          {"down", 4096, 11008}, {"lm_head", 32000, 4096}};
  // Several weight copies so that consecutive calls miss the 50 MB L2.
  constexpr int kCopies = 8;
  std::printf("%s, copy bandwidth %.0f GB/s (read + write), fp16\n", prop.name, bandwidth / 1e9);
  std::printf("%-8s %6s %5s %14s %8s %14s %8s\n", "shape", "n", "rows", "skinny GB/s", "of copy", "cuBLAS GB/s",
              "of copy");
  nlohmann::json results = nlohmann::json::array();
  for (const Shape& s : shapes) {
    const size_t weight_bytes = size_t(s.n) * s.k * sizeof(__half);
    std::vector<void*> weights(kCopies);
    for (auto& w : weights) {
      cudaMalloc(&w, weight_bytes);
      cudaMemset(w, 0, weight_bytes);
    }
    void *x = nullptr, *y = nullptr;
    cudaMalloc(&x, size_t(8) * s.k * sizeof(__half));
    cudaMalloc(&y, size_t(8) * s.n * sizeof(__half));
    cudaMemset(x, 0, size_t(8) * s.k * sizeof(__half));
    for (int64_t rows : {1, 2, 4, 8}) {
      int copy = 0;
      const tern::kernels::SkinnyGemmParams p{rows, s.n, s.k, s.k, s.n};
      const float skinny_ms = tern::bench::MeanLaunchMs(
          [&] {
            tern::kernels::LaunchSkinnyGemm(ScalarType::kF16, p, x, weights[copy++ % kCopies], y, nullptr);
          },
          50);
      const float alpha = 1.0f, beta = 0.0f;
      const float blas_ms = tern::bench::MeanLaunchMs(
          [&] {
            cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(rows), int(s.k), &alpha,
                         weights[copy++ % kCopies], CUDA_R_16F, int(s.k), x, CUDA_R_16F, int(s.k), &beta, y,
                         CUDA_R_16F, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
          },
          50);
      const double skinny_bw = weight_bytes / (skinny_ms * 1e-3), blas_bw = weight_bytes / (blas_ms * 1e-3);
      std::printf("%-8s %6lld %5lld %14.0f %8.2f %14.0f %8.2f\n", s.name, (long long)s.n, (long long)rows,
                  skinny_bw / 1e9, skinny_bw / bandwidth, blas_bw / 1e9, blas_bw / bandwidth);
      results.push_back({{"shape", s.name}, {"n", s.n}, {"k", s.k}, {"rows", rows}, {"skinny_us", skinny_ms * 1e3},
                         {"cublas_us", blas_ms * 1e3}, {"skinny_bytes_per_s", skinny_bw},
                         {"cublas_bytes_per_s", blas_bw}});
    }
    for (auto* w : weights) cudaFree(w);
    cudaFree(x);
    cudaFree(y);
  }
  if (cudaGetLastError() != cudaSuccess) {
    std::fprintf(stderr, "tern-gemm-bench: a CUDA call failed\n");
    return 1;
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << nlohmann::json{{"device", prop.name}, {"copy_bytes_per_s", bandwidth},
                                               {"results", results}}
                                    .dump(2)
                             << "\n";
  }
  cublasDestroy(blas);
  return 0;
}
