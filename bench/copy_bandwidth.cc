#include "bench/copy_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#if defined(TERN_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace tern::bench {

double HostCopyBandwidth(size_t bytes, int repeats) {
  std::vector<char> a(bytes, 1), b(bytes, 2);
  double best = 0;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * double(bytes) / seconds);
    std::swap(a, b);
  }
  return best;
}

#if defined(TERN_WITH_CUDA)
double DeviceCopyBandwidth(size_t bytes, int repeats) {
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    (void)cudaGetLastError();
    return 0;
  }
  cudaMemset(a, 1, bytes);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  double best = 0;
  for (int i = 0; i <= repeats; ++i) {
    cudaEventRecord(start);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i > 0 && ms > 0) best = std::max(best, 2.0 * double(bytes) / (double(ms) * 1e-3));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  return best;
}
#endif

}  // namespace tern::bench
