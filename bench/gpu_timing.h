// Timing the GPU benchmarks share.
#pragma once

#include <cuda_runtime.h>

namespace tern::bench {

// Mean milliseconds per call of `run` (which launches work on the default
// stream): one warm-up call, then `reps` calls launched back to back between
// two CUDA events, so the launch overhead overlaps the work as it does in a
// model's step.
template <typename F>
float MeanLaunchMs(F&& run, int reps) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  run();
  cudaEventRecord(start);
  for (int i = 0; i < reps; ++i) run();
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / reps;
}

}  // namespace tern::bench
