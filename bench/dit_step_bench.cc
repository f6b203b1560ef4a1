// tern-dit-bench: one denoising step (a DiT forward pass) of a DiT-XL/2-shaped
// model with random weights (hidden 1152, depth 28, 16 heads, patch 2, 4
// latent channels, learn_sigma, 1000 classes) on CudaDitOps, at 256 tokens
// (32x32 latents, 256 px images) and 1024 tokens (64x64, 512 px), for
// several batch sizes. A batch is forward ROWS: with classifier-free
// guidance an image costs 2 rows, so batch 64 is 32 guided images (the
// PyTorch baseline, tools/bench/dit_torch_step.py, times the same rows).
//
// Per shape: ms per step through DitModel::Forward (host input and output
// copies included) with CUDA graphs and eagerly; the eager pass split into
// linear layers, attention and the rest (CUDA events between ops); the
// linear layers' TFLOP/s beside the floor, the same GEMM shapes timed alone
// through cublasGemmEx in the compute dtype (cuBLAS's own heuristic for each
// M): their ratio is the fraction of the library's GEMM rate the layers get.
//
//   tern-dit-bench [--dtype bfloat16] [--batches 1,8,64] [--tokens 256,1024]
//                  [--iters 20] [--dir /tmp/tern-dit-xl2] [--json out.json]
//                  [--weight-scheme auto | w8a8-int8 | w8a8-fp8 | mixed:PLAN]
//                  [--attention-plan FILE | synthetic:STEPS:FRACTION[:cfg] | stretch:FILE:TOKENS]
//                  [--reps 2]
//                  [--gemm-autotune 1|0] [--fp8-fast-accum 0|1] [--fuse-activation-quant 1|0]
//
// --fuse-activation-quant 0 has every W8A8 layer quantize its own input
// instead of the LayerNorm + modulate before qkv and fc1 writing it
// quantized (DitModelOptions::fuse_activation_quantization), to time that.
//
// --fp8-fast-accum 1 runs w8a8-fp8 layers with cuBLASLt's fast accumulation
// (CudaDitOpsOptions::w8a8_fp8_fast_accumulation), to time what the fp32
// promotion every 128 inputs costs.
//
// --gemm-autotune 0 keeps cuBLASLt's heuristic first algorithm for every
// layer shape instead of the fastest timed one (CudaDitOpsOptions); the
// report names how many shapes the timing changed and what it saved.
//
// --attention-plan times whole generations under a DiTFastAttn plan beside
// exact attention instead of the step table (bench/dit_attention_plan_bench.h);
// --reps generations are averaged after a warm-up one.
//
// --weight-scheme quantizes the blocks' linear layers at load as ternd's
// model config does (runtime/dit/dit_linear_plan.h); the cuBLAS floor stays
// the dense GEMMs in the compute dtype, so the ratio column reads as the
// speed of the quantized layers against dense ones.
//
// The random checkpoint (1.35 GB in bf16, no pos_embed: the table is
// computed) is written to --dir once and reused.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "bench/dit_attention_plan_bench.h"
#include "runtime/dit/cuda_dit_ops.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/model/dtype.h"
#include "runtime/model/weight_scheme.h"
#include "tools/common/tool_flags.h"

namespace {

using namespace tern::runtime;

DitConfig XL2(int32_t latent_size) {
  DitConfig c;
  c.image_size = latent_size;
  c.in_channels = 4;
  c.patch_size = 2;
  c.hidden_size = 1152;
  c.depth = 28;
  c.num_heads = 16;
  c.mlp_ratio = 4.0;
  c.num_classes = 1000;
  c.null_class = 1000;
  c.learn_sigma = true;
  c.noise_schedule.num_train_timesteps = 1000;
  return c;
}

uint64_t Next(uint64_t& s) {
  s += 0x9e3779b97f4a7c15ULL;
  uint64_t z = s;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Writes the random checkpoint unless it is there: bf16 values uniform in
// +-0.02 (weights) so activations stay finite through 28 blocks.
bool WriteCheckpoint(const std::string& dir) {
  const std::string path = dir + "/model.safetensors";
  if (std::filesystem::exists(path)) return true;
  std::filesystem::create_directories(dir);
  std::vector<TensorSpec> specs;
  for (const DitTensorSpec& t : DitTensorLayout(XL2(32), DitNaming::kTern)) {
    if (t.optional) continue;  // pos_embed: computed
    specs.push_back({t.name, DType::kBF16, t.shape});
  }
  uint64_t state = 1;
  const absl::Status s = WriteSafetensors(path, specs, [&](const TensorSpec& spec, uint8_t* out) {
    uint16_t* v = reinterpret_cast<uint16_t*>(out);
    const size_t n = spec.nbytes() / 2;
    for (size_t i = 0; i < n; ++i) {
      const float u = float(Next(state) >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      v[i] = FloatToBFloat16((u * 2.0f - 1.0f) * 0.02f);
    }
  });
  if (!s.ok()) std::fprintf(stderr, "tern-dit-bench: writing %s: %s\n", path.c_str(), std::string(s.message()).c_str());
  return s.ok();
}

struct GemmShape {
  int64_t m, n, k;
};

// The linear layers of one forward pass of `batch` rows.
std::vector<GemmShape> PassGemms(const DitConfig& c, int64_t batch) {
  const int64_t r = batch * c.num_tokens(), d = c.hidden_size;
  std::vector<GemmShape> g = {{r, d, c.patch_features()}, {batch, d, c.frequency_embedding_size}, {batch, d, d}};
  for (int i = 0; i < c.depth; ++i) {
    g.insert(g.end(), {{batch, 6 * d, d}, {r, 3 * d, d}, {r, d, d}, {r, c.mlp_hidden(), d}, {r, d, c.mlp_hidden()}});
  }
  g.push_back({batch, 2 * d, d});
  g.push_back({r, int64_t(c.patch_size) * c.patch_size * c.out_channels(), d});
  return g;
}

double Flops(const std::vector<GemmShape>& g) {
  double f = 0;
  for (const GemmShape& s : g) f += 2.0 * double(s.m) * double(s.n) * double(s.k);
  return f;
}

// Waits for the device and exits naming `where` if any work so far failed,
// so a fault is pinned on the configuration and phase that caused it (a
// kernel's fault otherwise surfaces at some later, unrelated call).
void CheckDevice(const std::string& where) {
  cudaError_t error = cudaDeviceSynchronize();
  if (error == cudaSuccess) error = cudaGetLastError();
  if (error != cudaSuccess) {
    std::fprintf(stderr, "tern-dit-bench: %s: %s (%s)\n", where.c_str(), cudaGetErrorName(error),
                 cudaGetErrorString(error));
    std::exit(1);
  }
}

// The floor: each shape alone through cublasGemmEx (compute dtype in and
// out, fp32 accumulation, cuBLAS's heuristic), summed over the pass.
double CublasFloorMs(const std::vector<GemmShape>& gemms, cudaDataType type, size_t element) {
  cublasHandle_t blas;
  cublasCreate(&blas);
  void* workspace = nullptr;
  cudaMalloc(&workspace, 32 << 20);
  cublasSetWorkspace(blas, workspace, 32 << 20);
  int64_t max_a = 0, max_b = 0, max_c = 0;
  for (const GemmShape& s : gemms) {
    max_a = std::max(max_a, s.m * s.k);
    max_b = std::max(max_b, s.n * s.k);
    max_c = std::max(max_c, s.m * s.n);
  }
  void *a = nullptr, *b = nullptr, *c = nullptr;
  if (cudaMalloc(&a, max_a * element) != cudaSuccess || cudaMalloc(&b, max_b * element) != cudaSuccess ||
      cudaMalloc(&c, max_c * element) != cudaSuccess) {
    CheckDevice("cuBLAS floor: allocating operands");
  }
  cudaMemset(a, 0, max_a * element);
  cudaMemset(b, 0, max_b * element);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  const float alpha = 1.0f, beta = 0.0f;
  const auto run = [&](const GemmShape& s) {
    const cublasStatus_t status =
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(s.n), int(s.m), int(s.k), &alpha, b, type, int(s.k), a,
                     type, int(s.k), &beta, c, type, int(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (status != CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "tern-dit-bench: cublasGemmEx %lld x %lld x %lld: status %d\n", (long long)s.m,
                   (long long)s.n, (long long)s.k, int(status));
      std::exit(1);
    }
  };
  for (const GemmShape& s : gemms) run(s);  // warm-up
  constexpr int kReps = 5;
  cudaEventRecord(start);
  for (int i = 0; i < kReps; ++i) {
    for (const GemmShape& s : gemms) run(s);
  }
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cudaFree(workspace);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cublasDestroy(blas);
  return ms / kReps;
}


}  // namespace

int main(int argc, char** argv) {
  std::string dtype_name = "bfloat16", dir = "/tmp/tern-dit-xl2", json_path, weight_scheme = "auto", attention_plan;
  int generation_reps = 2;
  std::vector<int64_t> batches = {1, 8, 64}, token_counts = {256, 1024};
  int iters = 20;
  bool gemm_autotune = true;
  bool fp8_fast_accum = false;
  bool fuse_activation_quant = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--dtype") dtype_name = value;
    else if (flag == "--dir") dir = value;
    else if (flag == "--json") json_path = value;
    else if (flag == "--batches" || flag == "--tokens") {
      const auto list = tern::tools::ParsePositiveList(value);
      if (!list.has_value()) {
        std::fprintf(stderr, "tern-dit-bench: %s: \"%s\" is not a list of positive integers\n", flag.c_str(),
                     value.c_str());
        return 2;
      }
      (flag == "--batches" ? batches : token_counts) = *list;
    }
    else if (flag == "--iters") iters = std::max(1, std::atoi(value.c_str()));
    else if (flag == "--weight-scheme") weight_scheme = value;
    else if (flag == "--attention-plan") attention_plan = value;
    else if (flag == "--reps") generation_reps = std::max(1, std::atoi(value.c_str()));
    else if (flag == "--gemm-autotune" && (value == "0" || value == "1")) gemm_autotune = value == "1";
    else if (flag == "--fp8-fast-accum" && (value == "0" || value == "1")) fp8_fast_accum = value == "1";
    else if (flag == "--fuse-activation-quant" && (value == "0" || value == "1")) fuse_activation_quant = value == "1";
    else {
      std::fprintf(stderr, "tern-dit-bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  DType dtype;
  if (!ParseTorchDType(dtype_name, &dtype)) {
    std::fprintf(stderr, "tern-dit-bench: --dtype must be float32, bfloat16 or float16\n");
    return 2;
  }
  DitModelOptions model_options;
  model_options.fuse_activation_quantization = fuse_activation_quant;
  if (auto request = ParseWeightSchemeRequest(weight_scheme); request.ok()) {
    model_options.weight_scheme = *request;
  } else {
    std::fprintf(stderr, "tern-dit-bench: --weight-scheme: %s\n", std::string(request.status().message()).c_str());
    return 2;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "tern-dit-bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  if (!WriteCheckpoint(dir)) return 1;
  auto store = WeightStore::Open(dir);
  if (!store.ok()) {
    std::fprintf(stderr, "tern-dit-bench: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  const cudaDataType blas_type = dtype == DType::kF32 ? CUDA_R_32F : dtype == DType::kF16 ? CUDA_R_16F : CUDA_R_16BF;
  const size_t element = DTypeSize(dtype);

  nlohmann::json report = {{"bench", "tern-dit-bench"},
                           {"device", prop.name},
                           {"dtype", dtype_name},
                           {"weight_scheme", model_options.weight_scheme.ToString()},
                           {"gemm_autotune", gemm_autotune},
                           {"fp8_fast_accumulation", fp8_fast_accum},
                           {"fuse_activation_quantization", fuse_activation_quant},
                           {"model", "DiT-XL/2 shape, random weights"},
                           {"rows_note", "batch = forward rows (CFG: 2 per image)"},
                           {"results", nlohmann::json::array()}};
  std::printf("tern-dit-bench on %s, %s, weight_scheme %s, gemm autotune %s, fp8 fast accumulation %s, activation "
              "quantization %s, DiT-XL/2 shape; batch = forward rows (2 per guided image)\n",
              prop.name, dtype_name.c_str(), model_options.weight_scheme.ToString().c_str(),
              gemm_autotune ? "on" : "off", fp8_fast_accum ? "on" : "off",
              fuse_activation_quant ? "in the producers" : "in each layer");
  std::printf("%6s %5s | %9s %9s | %9s %9s %9s | %9s %9s %9s %6s\n", "tokens", "batch", "graph ms", "eager ms",
              "linear ms", "attn ms", "other ms", "lin TF/s", "cuBLAS ms", "cuBLAS TF", "ratio");
  for (int64_t tokens : token_counts) {
    int32_t side = 1;
    while (int64_t(side) * side < tokens) ++side;
    const DitConfig config = XL2(side * 2);
    if (config.num_tokens() != tokens) {
      std::fprintf(stderr, "tern-dit-bench: %lld tokens is not a square grid\n", (long long)tokens);
      return 2;
    }
    if (!attention_plan.empty()) {
      if (!report.contains("generations")) report["generations"] = nlohmann::json::array();
      const absl::Status s = tern::bench::RunAttentionPlanBench(config, **store, dtype, model_options, attention_plan, batches,
                                                                generation_reps, &report["generations"]);
      if (!s.ok()) {
        std::fprintf(stderr, "tern-dit-bench: --attention-plan: %s\n", std::string(s.message()).c_str());
        return 1;
      }
      continue;
    }
    // Two ops: graphs (the serving path) and profiled eager passes.
    CudaDitOpsOptions graph_options, profile_options;
    graph_options.compute_dtype = profile_options.compute_dtype = dtype;
    profile_options.profile = true;
    graph_options.gemm_autotune = profile_options.gemm_autotune = gemm_autotune;
    graph_options.w8a8_fp8_fast_accumulation = profile_options.w8a8_fp8_fast_accumulation = fp8_fast_accum;
    auto graph_ops = CudaDitOps::Create(graph_options);
    auto profile_ops = CudaDitOps::Create(profile_options);
    if (!graph_ops.ok() || !profile_ops.ok()) {
      std::fprintf(stderr, "tern-dit-bench: %s\n",
                   std::string((graph_ops.ok() ? profile_ops.status() : graph_ops.status()).message()).c_str());
      return 1;
    }
    auto graph_model = DitModel::Create(config, **store, graph_ops->get(), model_options);
    auto profile_model = DitModel::Create(config, **store, profile_ops->get(), model_options);
    if (!graph_model.ok() || !profile_model.ok()) {
      std::fprintf(stderr, "tern-dit-bench: loading: %s\n",
                   std::string((graph_model.ok() ? profile_model.status() : graph_model.status()).message()).c_str());
      return 1;
    }
    for (int64_t batch : batches) {
      const int64_t pixels = config.sample_elements();
      const std::vector<float> x = GaussianNoise(7, size_t(batch * pixels));
      std::vector<float> t(batch), eps(batch * pixels);
      std::vector<int32_t> y(batch);
      for (int64_t b = 0; b < batch; ++b) {
        t[b] = float((b * 37) % 1000);
        y[b] = b % 2 == 0 ? int32_t(b % 1000) : config.null_class;  // conditional, unconditional
      }
      const DitBatch input{x, t, y, {}};
      const std::string where = std::to_string(tokens) + " tokens, batch " + std::to_string(batch);
      CheckDevice(where + ": before the first pass");
      const auto time_ms = [&](DitModel& model, int reps, CudaDitOps* profiled, CudaDitOps::OpTimes* sum) {
        const std::string mode = where + (profiled != nullptr ? ", profiled eager" : ", graphs");
        const auto forward = [&](int pass) {
          if (const absl::Status s = model.Forward(input, absl::MakeSpan(eps)); !s.ok()) {
            std::fprintf(stderr, "tern-dit-bench: %s, pass %d: forward: %s\n", mode.c_str(), pass,
                         std::string(s.message()).c_str());
            std::exit(1);
          }
        };
        for (int i = 0; i < 3; ++i) {  // eager, capture, first replay
          forward(i);
          CheckDevice(mode + ", pass " + std::to_string(i));
        }
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) {
          forward(3 + i);
          if (profiled != nullptr) {
            const auto o = profiled->op_times();
            sum->linear_ms += o.linear_ms / reps;
            sum->attention_ms += o.attention_ms / reps;
            sum->other_ms += o.other_ms / reps;
          }
        }
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / reps;
      };
      const double graph_ms = time_ms(**graph_model, iters, nullptr, nullptr);
      CudaDitOps::OpTimes parts;
      const double eager_ms = time_ms(**profile_model, iters, profile_ops->get(), &parts);
      const std::vector<GemmShape> gemms = PassGemms(config, batch);
      const double flops = Flops(gemms);
      const double floor_ms = CublasFloorMs(gemms, blas_type, element);
      CheckDevice(where + ", cuBLAS floor");
      const double linear_tflops = flops / (parts.linear_ms * 1e-3) / 1e12;
      const double floor_tflops = flops / (floor_ms * 1e-3) / 1e12;
      std::printf("%6lld %5lld | %9.3f %9.3f | %9.3f %9.3f %9.3f | %9.1f %9.3f %9.1f %6.2f\n", (long long)tokens,
                  (long long)batch, graph_ms, eager_ms, parts.linear_ms, parts.attention_ms, parts.other_ms,
                  linear_tflops, floor_ms, floor_tflops, floor_ms / parts.linear_ms);
      // Buffers only grow and the batches run in the order given: with
      // ascending batches this is what a batch of this many rows needs.
      const size_t workspace = (*graph_ops)->workspace_bytes();
      std::printf("  activations and workspaces after batch %lld: %.1f MiB\n", (long long)batch,
                  double(workspace) / double(1 << 20));
      report["results"].push_back({{"tokens", tokens},
                                   {"batch_rows", batch},
                                   {"workspace_bytes", workspace},
                                   {"step_ms_graphs", graph_ms},
                                   {"step_ms_eager", eager_ms},
                                   {"linear_ms", parts.linear_ms},
                                   {"attention_ms", parts.attention_ms},
                                   {"other_ms", parts.other_ms},
                                   {"linear_gflop", flops / 1e9},
                                   {"linear_tflops", linear_tflops},
                                   {"cublas_floor_ms", floor_ms},
                                   {"cublas_floor_tflops", floor_tflops},
                                   {"fraction_of_cublas_rate", floor_ms / parts.linear_ms},
                                   {"graph_stats",
                                    {{"captured", (*graph_ops)->graph_stats().captured},
                                     {"replayed", (*graph_ops)->graph_stats().replayed}}}});
    }
    const CudaDitOps::GemmTuning tuning = (*graph_ops)->gemm_tuning();
    if (tuning.shapes_timed > 0) {
      std::printf("  gemm autotune (%lld tokens): %lld shapes timed, %lld changed; heuristic %.3f ms -> kept %.3f ms "
                  "(one GEMM of each at the tuning rows)\n",
                  (long long)tokens, (long long)tuning.shapes_timed, (long long)tuning.changed, tuning.heuristic_ms,
                  tuning.chosen_ms);
      report["gemm_tuning"].push_back({{"tokens", tokens},
                                       {"shapes_timed", tuning.shapes_timed},
                                       {"changed", tuning.changed},
                                       {"heuristic_ms", tuning.heuristic_ms},
                                       {"chosen_ms", tuning.chosen_ms}});
    }
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << report.dump(2) << "\n";
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
