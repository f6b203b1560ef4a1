// GPU sampling (runtime/cuda/cuda_sampling: kernels/sampling, only ids and
// logprobs read back) against the path it replaces (logits converted to fp32,
// copied to the host, sampled row by row with the host Sampler), per step.
//
//   tern-gpu-sampling-bench [--iters=N] [--host-iters=N] [--json=PATH]
//
// For batch 1/64/256 x vocab 32000/128256 x {greedy, top_p=0.9 + t=0.8}, on
// bf16 logits (N(0, 2.5), fixed seed) already on the device:
//   gpu_us      device time of the sampling step (CUDA events around the
//               parameter upload, the kernel and the read-back), median
//   gpu_wall_us host wall time of the whole step (packing, upload, kernel,
//               read-back, synchronization, decoding), median
//   host_us     today's path: device fp32 conversion + copy to pageable host
//               memory + host Sampler over every row, wall time, median
// Each step samples a new position of every sequence. Prints a table and
// writes JSON to PATH when given.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench/host_info.h"
#include "kernels/elementwise/elementwise.h"
#include "nlohmann/json.hpp"
#include "runtime/cuda/cuda_sampling.h"
#include "runtime/model/dtype.h"
#include "runtime/sampling/sampler.h"

namespace {

using tern::kernels::ScalarType;
using tern::runtime::CudaSampling;
using tern::runtime::SampledToken;
using tern::runtime::Sampler;
using tern::runtime::SampleRequest;
using tern::runtime::SamplingParams;
using tern::runtime::SequenceSamplingState;
using tern::runtime::Tensor;

#define CHECK_CUDA(expr)                                                                      \
  do {                                                                                        \
    const cudaError_t e = (expr);                                                             \
    if (e != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 50, host_iters = 5;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--iters=", 0) == 0) {
      iters = std::max(1, std::atoi(arg.c_str() + 8));
    } else if (arg.rfind("--host-iters=", 0) == 0) {
      host_iters = std::max(1, std::atoi(arg.c_str() + 13));
    } else if (arg.rfind("--json=", 0) == 0) {
      json_path = arg.substr(7);
    } else {
      std::fprintf(stderr, "usage: %s [--iters=N] [--host-iters=N] [--json=PATH]\n", argv[0]);
      return 2;
    }
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const std::string cpu = tern::bench::CpuModelName();
  std::printf("tern-gpu-sampling-bench on %s (host %s), bf16 logits, %d GPU steps, %d host steps\n\n", prop.name,
              cpu.c_str(), iters, host_iters);
  std::printf("%-22s %6s %8s %10s %12s %12s %9s\n", "config", "batch", "vocab", "gpu_us", "gpu_wall_us", "host_us",
              "speedup");

  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t begin, end;
  CHECK_CUDA(cudaEventCreate(&begin));
  CHECK_CUDA(cudaEventCreate(&end));
  nlohmann::json results = nlohmann::json::array();

  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SamplingParams nucleus;
  nucleus.temperature = 0.8f;
  nucleus.top_p = 0.9f;
  const std::pair<const char*, SamplingParams> configs[] = {{"greedy", greedy}, {"top_p=0.9,t=0.8", nucleus}};

  for (int64_t vocab : {int64_t{32000}, int64_t{128256}}) {
    for (int batch : {1, 64, 256}) {
      // Device logits, bf16.
      std::mt19937 rng(uint32_t(vocab + batch));
      std::normal_distribution<float> normal(0.0f, 2.5f);
      std::vector<uint16_t> host_bf16(size_t(batch) * vocab);
      for (uint16_t& x : host_bf16) x = tern::runtime::FloatToBFloat16(normal(rng));
      void* logits = nullptr;
      CHECK_CUDA(cudaMalloc(&logits, host_bf16.size() * 2));
      CHECK_CUDA(cudaMemcpy(logits, host_bf16.data(), host_bf16.size() * 2, cudaMemcpyHostToDevice));
      float* device_f32 = nullptr;
      CHECK_CUDA(cudaMalloc(&device_f32, host_bf16.size() * sizeof(float)));
      std::vector<float> host_f32(host_bf16.size());
      const Tensor tensor{logits, tern::runtime::DType::kBF16, batch, vocab, vocab};

      for (const auto& [name, params] : configs) {
        std::vector<SequenceSamplingState> states;
        for (int r = 0; r < batch; ++r) states.emplace_back(1000 + r, 0, std::vector<int32_t>{1, 2, 3});
        std::vector<SampleRequest> requests;
        for (int r = 0; r < batch; ++r) requests.push_back({&params, &states[r]});
        std::vector<absl::StatusOr<SampledToken>> tokens;

        CudaSampling sampling;
        std::vector<double> gpu_us, wall_us;
        for (int i = 0; i < iters + 5; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          if (auto s = sampling.Prepare(tensor, requests); !s.ok()) {
            std::fprintf(stderr, "%s\n", s.ToString().c_str());
            return 1;
          }
          CHECK_CUDA(cudaEventRecord(begin, stream));
          CHECK_CUDA(sampling.Enqueue(ScalarType::kBF16, tensor, stream));
          CHECK_CUDA(cudaEventRecord(end, stream));
          CHECK_CUDA(cudaStreamSynchronize(stream));
          sampling.Collect(requests, &tokens);
          for (int r = 0; r < batch; ++r) {
            if (!tokens[r].ok()) {
              std::fprintf(stderr, "%s\n", tokens[r].status().ToString().c_str());
              return 1;
            }
            states[r].AppendOutputToken(tokens[r]->token_id);
          }
          const auto t1 = std::chrono::steady_clock::now();
          float ms = 0.0f;
          CHECK_CUDA(cudaEventElapsedTime(&ms, begin, end));
          if (i >= 5) {
            gpu_us.push_back(ms * 1e3);
            wall_us.push_back(Seconds(t0, t1) * 1e6);
          }
        }

        Sampler sampler;
        std::vector<double> host_us;
        for (int i = 0; i < host_iters + 1; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          CHECK_CUDA(tern::kernels::LaunchToFloat(ScalarType::kBF16, batch, vocab, logits, vocab, device_f32, stream));
          CHECK_CUDA(cudaMemcpyAsync(host_f32.data(), device_f32, host_f32.size() * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
          CHECK_CUDA(cudaStreamSynchronize(stream));
          for (int r = 0; r < batch; ++r) {
            auto token = sampler.Sample(absl::MakeConstSpan(&host_f32[size_t(r) * vocab], vocab), params, states[r]);
            if (!token.ok()) {
              std::fprintf(stderr, "%s\n", token.status().ToString().c_str());
              return 1;
            }
            states[r].AppendOutputToken(token->token_id);
          }
          const auto t1 = std::chrono::steady_clock::now();
          if (i >= 1) host_us.push_back(Seconds(t0, t1) * 1e6);
        }
        const double g = Median(gpu_us), w = Median(wall_us), h = Median(host_us);
        std::printf("%-22s %6d %8lld %10.1f %12.1f %12.1f %8.1fx\n", name, batch, static_cast<long long>(vocab), g, w,
                    h, h / w);
        std::fflush(stdout);
        results.push_back({{"config", name}, {"batch", batch}, {"vocab", vocab}, {"gpu_us", g}, {"gpu_wall_us", w},
                           {"host_us", h}});
      }
      CHECK_CUDA(cudaFree(logits));
      CHECK_CUDA(cudaFree(device_f32));
    }
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"bench", "gpu_sampling"}, {"device", prop.name}, {"host", cpu}, {"iters", iters},
                          {"host_iters", host_iters}, {"results", results}}
               .dump(2)
        << "\n";
  }
  return 0;
}
