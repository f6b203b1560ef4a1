// Prefill attention kernel time: the tensor-core prefill kernel
// (LaunchFlashPrefillAttention) next to the per-row paged kernel
// (LaunchPagedAttention) on the same inputs, for one layer.
//
//   tern-prefill-attention-bench [--dtype=float16|bfloat16] [--kv-dtype=auto|fp8|int8|all] [--iters=N]
//                                [--json=PATH]
//
// Shapes: Llama-2-7B (32 heads, 32 KV heads, head_dim 128) and a GQA-8 shape
// (32 heads, 4 KV heads, head_dim 128), each as one 2048-token causal prompt
// and as 8 prompts of 512. Inputs are N(0, 1) with a fixed seed, the pages of
// 16 tokens shuffled. --kv-dtype picks the KV cache (a model config's
// kv_cache_dtype): auto, the compute dtype (the default); fp8 or int8, the
// same values quantized by the reference append (kernels/attention/kv_quant.h;
// fp8 with a head scale of 4.5 / 448, int8 with its per-token scales); all,
// the three in turn. Each kernel runs once to warm up, then N times between
// CUDA events; the table prints the median. Causal FLOPs are
// 4 * head_dim * heads * sum over query rows of attended keys (QK^T and PV).
// The last column is the largest normwise difference between the two
// kernels' outputs.
//
//   tern-prefill-attention-bench --moa-plan=PLAN [--context=16384] [--dtype=...] [--kv-dtype=auto|fp8|int8]
//                                [--iters=N] [--json=PATH]
//
// instead times one prompt of --context tokens at the Llama-3-8B shape (32
// heads, 8 KV heads, head_dim 128) through every layer of an MoA plan
// (runtime/model/moa_plan.h; 32 query heads a layer): the flash kernel with
// each layer's spans beside the same kernel dense, the whole model's
// attention as the sum over layers (dense: one layer's median times the
// layers). FLOPs count the keys each (row, head) attends
// (kernels/attention/attention_spans.h). The difference column compares the
// first layer's MoA output with the per-row kernel under the same spans (one
// launch).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention_spans.h"
#include "kernels/attention/flash_prefill_attention.h"
#include "kernels/attention/kv_quant.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/elementwise/elementwise.h"
#include "nlohmann/json.hpp"
#include "runtime/model/moa_plan.h"

namespace {

using tern::kernels::KvElement;
using tern::kernels::PagedAttentionParams;
using tern::kernels::ScalarType;

#define BENCH_CUDA(expr)                                                                     \
  do {                                                                                       \
    const cudaError_t bench_error_ = (expr);                                                 \
    if (bench_error_ != cudaSuccess) {                                                       \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr,                     \
                   cudaGetErrorString(bench_error_));                                        \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

struct Case {
  std::string name;
  int32_t num_heads, num_kv_heads, head_dim;
  int32_t num_seqs, prompt;  // num_seqs prompts of `prompt` tokens, no prior context
};

// A device buffer of `count` elements of `type`, filled with N(0, 1).
void* RandomDevice(ScalarType type, size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> host(count);
  for (float& x : host) x = normal(rng);
  float* staging = nullptr;
  void* out = nullptr;
  BENCH_CUDA(cudaMalloc(&staging, count * sizeof(float)));
  BENCH_CUDA(cudaMalloc(&out, count * 2));
  BENCH_CUDA(cudaMemcpy(staging, host.data(), count * sizeof(float), cudaMemcpyHostToDevice));
  BENCH_CUDA(tern::kernels::LaunchFromFloat(type, int64_t(count), staging, out, nullptr));
  BENCH_CUDA(cudaDeviceSynchronize());
  BENCH_CUDA(cudaFree(staging));
  return out;
}

template <typename T>
T* CopyToDevice(const std::vector<T>& values) {
  T* out = nullptr;
  BENCH_CUDA(cudaMalloc(&out, std::max<size_t>(values.size(), 1) * sizeof(T)));
  BENCH_CUDA(cudaMemcpy(out, values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice));
  return out;
}

// fp8's head scale: N(0, 1) values past 4.5 sigma saturate.
constexpr float kFp8HeadScale = 4.5f / 448.0f;

// The name of a cache of `kv` in tables and JSON: the compute dtype's for native caches.
const char* KvName(KvElement kv, ScalarType type) {
  if (kv != KvElement::kNative) return tern::kernels::KvElementName(kv);
  return type == ScalarType::kF16 ? "float16" : "bfloat16";
}

// One layer's K and V cache of `slots` slots on the device: N(0, 1) values of
// the compute type, or (fp8, int8) those values quantized by the reference
// append, with their scales.
class LayerCache {
 public:
  LayerCache(ScalarType type, KvElement kv, int64_t slots, int32_t num_kv_heads, int32_t head_dim, std::mt19937& rng)
      : kv_(kv) {
    const size_t count = size_t(slots) * num_kv_heads * head_dim;
    if (kv == KvElement::kNative) {
      k_ = RandomDevice(type, count, rng);
      v_ = RandomDevice(type, count, rng);
      return;
    }
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> k(count), v(count);
    for (float& x : k) x = normal(rng);
    for (float& x : v) x = normal(rng);
    std::vector<uint8_t> k_codes(count), v_codes(count);
    const size_t scale_count = kv == KvElement::kInt8 ? size_t(slots) * num_kv_heads : size_t(num_kv_heads);
    std::vector<float> k_scales(scale_count, kFp8HeadScale), v_scales(scale_count, kFp8HeadScale);
    std::vector<int32_t> all(static_cast<size_t>(slots));
    std::iota(all.begin(), all.end(), 0);
    tern::kernels::KvWriteQuantParams wp;
    wp.element = kv;
    wp.num_tokens = slots;
    wp.num_kv_heads = num_kv_heads;
    wp.head_dim = head_dim;
    wp.k_row_stride = int64_t(num_kv_heads) * head_dim;
    wp.v_row_stride = wp.k_row_stride;
    tern::kernels::WriteKvQuantizedReference(wp, k.data(), v.data(), all.data(), k_codes.data(), v_codes.data(),
                                             k_scales.data(), v_scales.data());
    k_ = CopyToDevice(k_codes);
    v_ = CopyToDevice(v_codes);
    k_scales_ = CopyToDevice(k_scales);
    v_scales_ = CopyToDevice(v_scales);
  }
  ~LayerCache() {
    for (void* ptr : {k_, v_, static_cast<void*>(k_scales_), static_cast<void*>(v_scales_)}) cudaFree(ptr);
  }
  LayerCache(const LayerCache&) = delete;
  LayerCache& operator=(const LayerCache&) = delete;

  const void* k() const { return k_; }
  const void* v() const { return v_; }
  // Points `p` at this cache's element type and scales.
  void Describe(PagedAttentionParams* p) const {
    p->kv_element = kv_;
    p->k_scales = k_scales_;
    p->v_scales = v_scales_;
  }

 private:
  KvElement kv_;
  void *k_ = nullptr, *v_ = nullptr;
  float *k_scales_ = nullptr, *v_scales_ = nullptr;
};

int32_t* ToDevice(const std::vector<int32_t>& values) {
  int32_t* out = nullptr;
  BENCH_CUDA(cudaMalloc(&out, std::max<size_t>(values.size(), 1) * sizeof(int32_t)));
  BENCH_CUDA(cudaMemcpy(out, values.data(), values.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  return out;
}

template <typename Launch>
double MedianMs(int iters, Launch launch) {
  BENCH_CUDA(launch());
  BENCH_CUDA(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  BENCH_CUDA(cudaEventCreate(&start));
  BENCH_CUDA(cudaEventCreate(&stop));
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) {
    BENCH_CUDA(cudaEventRecord(start));
    BENCH_CUDA(launch());
    BENCH_CUDA(cudaEventRecord(stop));
    BENCH_CUDA(cudaEventSynchronize(stop));
    BENCH_CUDA(cudaEventElapsedTime(&ms[i], start, stop));
  }
  BENCH_CUDA(cudaEventDestroy(start));
  BENCH_CUDA(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<float> ToHost(ScalarType type, const void* x, int64_t rows, int64_t cols) {
  float* device = nullptr;
  BENCH_CUDA(cudaMalloc(&device, size_t(rows * cols) * sizeof(float)));
  BENCH_CUDA(tern::kernels::LaunchToFloat(type, rows, cols, x, cols, device, nullptr));
  std::vector<float> host(size_t(rows * cols));
  BENCH_CUDA(cudaMemcpy(host.data(), device, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
  BENCH_CUDA(cudaFree(device));
  return host;
}

// Largest normwise difference between two outputs on the host.
double NormwiseDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float diff = 0.0f, scale = 1.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::isfinite(a[i]) ? std::max(diff, std::abs(a[i] - b[i])) : INFINITY;
    scale = std::max(scale, std::abs(b[i]));
  }
  return diff / scale;
}

// One layer's MoA rules in device memory.
struct DeviceSpans {
  int32_t* bucket_max_length = nullptr;
  int32_t* sinks = nullptr;
  double *alphas = nullptr, *betas = nullptr;
  tern::kernels::AttentionSpanRules rules;
  std::vector<int32_t> host_sinks;
  std::vector<double> host_alphas, host_betas;

  DeviceSpans(const tern::runtime::MoaPlan& plan, int32_t layer) {
    const int32_t heads = plan.num_heads;
    host_sinks.assign(plan.sinks.begin() + size_t(layer) * heads, plan.sinks.begin() + size_t(layer + 1) * heads);
    for (int32_t b = 0; b < plan.num_buckets(); ++b) {
      const size_t base = (size_t(b) * plan.num_layers + layer) * heads;
      host_alphas.insert(host_alphas.end(), plan.alphas.begin() + base, plan.alphas.begin() + base + heads);
      host_betas.insert(host_betas.end(), plan.betas.begin() + base, plan.betas.begin() + base + heads);
    }
    bucket_max_length = ToDevice(plan.bucket_max_length);
    sinks = ToDevice(host_sinks);
    BENCH_CUDA(cudaMalloc(&alphas, host_alphas.size() * sizeof(double)));
    BENCH_CUDA(cudaMalloc(&betas, host_betas.size() * sizeof(double)));
    BENCH_CUDA(cudaMemcpy(alphas, host_alphas.data(), host_alphas.size() * sizeof(double), cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(betas, host_betas.data(), host_betas.size() * sizeof(double), cudaMemcpyHostToDevice));
    rules = {plan.num_buckets(), bucket_max_length, sinks, alphas, betas};
  }
  ~DeviceSpans() {
    cudaFree(bucket_max_length);
    cudaFree(sinks);
    cudaFree(alphas);
    cudaFree(betas);
  }
  // Keys the (row, head) pairs of one causal prompt of `prompt` tokens attend.
  double AttendedKeys(const tern::runtime::MoaPlan& plan, int32_t prompt) const {
    const tern::kernels::AttentionSpanRules host{plan.num_buckets(), plan.bucket_max_length.data(),
                                                 host_sinks.data(), host_alphas.data(), host_betas.data()};
    double keys = 0;
    for (int32_t h = 0; h < plan.num_heads; ++h) {
      for (int32_t n = 1; n <= prompt; ++n) {
        const int32_t sink = host.SinkEnd(h, n);
        keys += sink + (n - std::max(sink, host.BandStart(plan.num_heads, h, n)));
      }
    }
    return keys;
  }
};

// --moa-plan: one prompt of `context` tokens at the Llama-3-8B shape through
// every layer of the plan, MoA beside dense. Returns the process status.
int RunMoaPrefill(ScalarType type, const char* dtype_name, KvElement kv, const std::string& plan_path,
                  int32_t context, int iters, const std::string& json_path, const cudaDeviceProp& prop) {
  auto plan = tern::runtime::LoadMoaPlan(plan_path);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", std::string(plan.status().message()).c_str());
    return 1;
  }
  constexpr int32_t kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlockSize = 16;
  if (plan->num_heads != kHeads) {
    std::fprintf(stderr, "MoA plan %s: %d query heads a layer; the Llama-3-8B shape has %d\n", plan_path.c_str(),
                 plan->num_heads, kHeads);
    return 1;
  }
  std::mt19937 rng(1234);
  const int32_t blocks = (context + kBlockSize - 1) / kBlockSize;
  std::vector<int32_t> pool(blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int32_t> row_seq(size_t(context), 0);
  const int64_t width = int64_t(kHeads) * kHeadDim;
  void* q = RandomDevice(type, size_t(context) * width, rng);
  const LayerCache kv_cache(type, kv, int64_t(blocks) * kBlockSize, kKvHeads, kHeadDim, rng);
  const void* k = kv_cache.k();
  const void* v = kv_cache.v();
  void *out_flash = nullptr, *out_paged = nullptr;
  BENCH_CUDA(cudaMalloc(&out_flash, size_t(context) * width * 2));
  BENCH_CUDA(cudaMalloc(&out_paged, size_t(context) * width * 2));
  int32_t* d_query_start = ToDevice({0, context});
  int32_t* d_context = ToDevice({context});
  int32_t* d_indptr = ToDevice({0, blocks});
  int32_t* d_blocks = ToDevice(pool);
  int32_t* d_row_seq = ToDevice(row_seq);
  PagedAttentionParams p;
  p.num_seqs = 1;
  p.num_heads = kHeads;
  p.num_kv_heads = kKvHeads;
  p.head_dim = kHeadDim;
  p.block_size = kBlockSize;
  p.scale = 1.0f / std::sqrt(float(kHeadDim));
  p.query_start = d_query_start;
  p.context_lens = d_context;
  p.block_indptr = d_indptr;
  p.block_ids = d_blocks;
  p.q_row_stride = width;
  p.out_row_stride = width;
  kv_cache.Describe(&p);
  const auto flash = [&] { return tern::kernels::LaunchFlashPrefillAttention(type, p, context, q, k, v, out_flash, nullptr); };

  std::printf("prefill attention, Llama-3-8B shape (%d / %d / %d), 1 x %d tokens, %s, %s, KV cache %s, median of %d, "
              "plan %s\n\n",
              kHeads, kKvHeads, kHeadDim, context, prop.name, dtype_name, KvName(kv, type), iters, plan_path.c_str());
  const double dense_ms = MedianMs(iters, flash);
  const double dense_keys = double(kHeads) * context * (context + 1) / 2.0;
  double moa_ms = 0, moa_keys = 0, diff = 0;
  std::printf("%5s %10s %10s %10s %9s\n", "layer", "ms", "TF/s", "density", "vs_dense");
  nlohmann::json layers = nlohmann::json::array();
  for (int32_t layer = 0; layer < plan->num_layers; ++layer) {
    DeviceSpans spans(*plan, layer);
    p.spans = spans.rules;
    const double ms = MedianMs(iters, flash);
    const double keys = spans.AttendedKeys(*plan, context);
    const double tflops = 4.0 * keys * kHeadDim / (ms * 1e-3) / 1e12;
    std::printf("%5d %10.3f %10.1f %10.3f %8.2fx\n", layer, ms, tflops, keys / dense_keys, dense_ms / ms);
    layers.push_back({{"layer", layer}, {"ms", ms}, {"tflops", tflops}, {"density", keys / dense_keys}});
    moa_ms += ms;
    moa_keys += keys;
    if (layer == 0) {
      BENCH_CUDA(flash());
      BENCH_CUDA(tern::kernels::LaunchPagedAttention(type, p, context, d_row_seq, q, k, v, out_paged, nullptr));
      BENCH_CUDA(cudaDeviceSynchronize());
      diff = NormwiseDiff(ToHost(type, out_flash, context, width), ToHost(type, out_paged, context, width));
    }
    p.spans = {};
  }
  const double all_dense_ms = dense_ms * plan->num_layers;
  const double dense_tflops = 4.0 * dense_keys * kHeadDim / (dense_ms * 1e-3) / 1e12;
  const double moa_tflops = 4.0 * moa_keys * kHeadDim / (moa_ms * 1e-3) / 1e12;
  std::printf("\n%-34s %10s %10s %10s\n", "whole model (all layers)", "ms", "TF/s", "density");
  std::printf("%-34s %10.2f %10.1f %10.3f\n", "dense flash", all_dense_ms, dense_tflops, 1.0);
  std::printf("%-34s %10.2f %10.1f %10.3f\n", "MoA flash", moa_ms, moa_tflops, moa_keys / (dense_keys * plan->num_layers));
  std::printf("MoA attention time / dense: %.3f (%.2fx faster); layer 0 against the per-row kernel: %.2e\n",
              moa_ms / all_dense_ms, all_dense_ms / moa_ms, diff);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"bench", "prefill_attention_moa"}, {"device", prop.name}, {"dtype", dtype_name},
                          {"kv_cache_dtype", KvName(kv, type)}, {"iters", iters}, {"plan", plan_path},
                          {"context", context},
                          {"num_heads", kHeads}, {"num_kv_heads", kKvHeads}, {"head_dim", kHeadDim},
                          {"dense_layer_ms", dense_ms}, {"dense_ms", all_dense_ms}, {"dense_tflops", dense_tflops},
                          {"moa_ms", moa_ms}, {"moa_tflops", moa_tflops},
                          {"moa_density", moa_keys / (dense_keys * plan->num_layers)},
                          {"moa_vs_dense_time", moa_ms / all_dense_ms},
                          {"layer0_max_normwise_diff_vs_paged", diff}, {"layers", layers}}
               .dump(2)
        << "\n";
  }
  for (void* ptr : {q, out_flash, out_paged}) BENCH_CUDA(cudaFree(ptr));
  for (int32_t* ptr : {d_query_start, d_context, d_indptr, d_blocks, d_row_seq}) BENCH_CUDA(cudaFree(ptr));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 20;
  std::string json_path;
  ScalarType type = ScalarType::kF16;
  std::string moa_plan;
  int32_t context = 16384;
  std::string kv_dtype = "auto";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--kv-dtype=", 0) == 0) {
      kv_dtype = arg.substr(11);
    } else if (arg == "--kv-dtype" && i + 1 < argc) {
      kv_dtype = argv[++i];
    } else if (arg.rfind("--moa-plan=", 0) == 0) {
      moa_plan = arg.substr(11);
    } else if (arg.rfind("--context=", 0) == 0) {
      context = std::atoi(arg.c_str() + 10);
      if (context < 1 || context > (1 << 20)) {
        std::fprintf(stderr, "--context: \"%s\" is not a token count in [1, 1048576]\n", arg.c_str() + 10);
        return 2;
      }
    } else if (arg.rfind("--iters=", 0) == 0) {
      iters = std::max(1, std::atoi(arg.c_str() + 8));
    } else if (arg.rfind("--json=", 0) == 0) {
      json_path = arg.substr(7);
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (arg == "--dtype=float16") {
      type = ScalarType::kF16;
    } else if (arg == "--dtype=bfloat16") {
      type = ScalarType::kBF16;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--dtype=float16|bfloat16] [--kv-dtype=auto|fp8|int8|all] [--iters=N] [--json=PATH] "
                   "[--moa-plan=PLAN [--context=N]]\n",
                   argv[0]);
      return 2;
    }
  }
  std::vector<KvElement> kv_types;
  if (kv_dtype == "auto") {
    kv_types = {KvElement::kNative};
  } else if (kv_dtype == "fp8") {
    kv_types = {KvElement::kFp8E4M3};
  } else if (kv_dtype == "int8") {
    kv_types = {KvElement::kInt8};
  } else if (kv_dtype == "all") {
    kv_types = {KvElement::kNative, KvElement::kFp8E4M3, KvElement::kInt8};
  } else {
    std::fprintf(stderr, "--kv-dtype: \"%s\" is not one of auto, fp8, int8, all\n", kv_dtype.c_str());
    return 2;
  }
  if (!moa_plan.empty() && kv_types.size() != 1) {
    std::fprintf(stderr, "--kv-dtype=all: --moa-plan times one KV cache type a run (auto, fp8 or int8)\n");
    return 2;
  }
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    cudaGetLastError();
    std::printf("no CUDA device is visible: nothing to time\n");
    return 0;  // like the gpu tests, a machine without a GPU skips rather than fails
  }
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  const char* dtype_name = type == ScalarType::kF16 ? "float16" : "bfloat16";
  if (!moa_plan.empty()) {
    return RunMoaPrefill(type, dtype_name, kv_types[0], moa_plan, context, iters, json_path, prop);
  }
  std::printf("prefill attention, one layer, %s, %s, median of %d\n\n", prop.name, dtype_name, iters);
  std::printf("%-22s %5s %5s %4s %8s %10s %10s %10s %10s %8s %9s\n", "shape", "heads", "kv", "d", "kv_cache",
              "flash_ms", "flash_TF/s", "paged_ms", "paged_TF/s", "speedup", "max_diff");

  const std::vector<Case> cases = {
      {"llama-2-7b 1x2048", 32, 32, 128, 1, 2048}, {"llama-2-7b 8x512", 32, 32, 128, 8, 512},
      {"gqa-8 1x2048", 32, 4, 128, 1, 2048},       {"gqa-8 8x512", 32, 4, 128, 8, 512},
  };
  nlohmann::json results = nlohmann::json::array();
  constexpr int32_t kBlockSize = 16;
  for (const KvElement kv : kv_types) {
    for (const Case& c : cases) {
      std::mt19937 rng(1234);
      const int32_t rows = c.num_seqs * c.prompt;
      const int32_t blocks_per_seq = (c.prompt + kBlockSize - 1) / kBlockSize;
      const int32_t num_blocks = c.num_seqs * blocks_per_seq;
      std::vector<int32_t> pool(num_blocks);
      std::iota(pool.begin(), pool.end(), 0);
      std::shuffle(pool.begin(), pool.end(), rng);
      std::vector<int32_t> query_start = {0}, context_lens, block_indptr = {0}, row_seq;
      for (int32_t s = 0; s < c.num_seqs; ++s) {
        query_start.push_back(query_start.back() + c.prompt);
        context_lens.push_back(c.prompt);
        block_indptr.push_back(block_indptr.back() + blocks_per_seq);
        for (int32_t r = 0; r < c.prompt; ++r) row_seq.push_back(s);
      }
      const int64_t width = int64_t(c.num_heads) * c.head_dim;
      void* q = RandomDevice(type, size_t(rows) * width, rng);
      const LayerCache kv_cache(type, kv, int64_t(num_blocks) * kBlockSize, c.num_kv_heads, c.head_dim, rng);
      const void* k = kv_cache.k();
      const void* v = kv_cache.v();
      void *out_flash = nullptr, *out_paged = nullptr;
      BENCH_CUDA(cudaMalloc(&out_flash, size_t(rows) * width * 2));
      BENCH_CUDA(cudaMalloc(&out_paged, size_t(rows) * width * 2));
      int32_t* d_query_start = ToDevice(query_start);
      int32_t* d_context = ToDevice(context_lens);
      int32_t* d_indptr = ToDevice(block_indptr);
      int32_t* d_blocks = ToDevice(pool);
      int32_t* d_row_seq = ToDevice(row_seq);

      PagedAttentionParams p;
      p.num_seqs = c.num_seqs;
      p.num_heads = c.num_heads;
      p.num_kv_heads = c.num_kv_heads;
      p.head_dim = c.head_dim;
      p.block_size = kBlockSize;
      p.scale = 1.0f / std::sqrt(float(c.head_dim));
      p.query_start = d_query_start;
      p.context_lens = d_context;
      p.block_indptr = d_indptr;
      p.block_ids = d_blocks;
      p.q_row_stride = width;
      p.out_row_stride = width;
      kv_cache.Describe(&p);

      const double flash_ms = MedianMs(iters, [&] {
        return tern::kernels::LaunchFlashPrefillAttention(type, p, rows, q, k, v, out_flash, nullptr);
      });
      const double paged_ms = MedianMs(iters, [&] {
        return tern::kernels::LaunchPagedAttention(type, p, rows, d_row_seq, q, k, v, out_paged, nullptr);
      });
      BENCH_CUDA(cudaDeviceSynchronize());
      const std::vector<float> a = ToHost(type, out_flash, rows, width);
      const std::vector<float> b = ToHost(type, out_paged, rows, width);
      float diff = 0.0f, scale = 1.0f;
      for (size_t i = 0; i < a.size(); ++i) {
        diff = std::isfinite(a[i]) ? std::max(diff, std::abs(a[i] - b[i])) : INFINITY;
        scale = std::max(scale, std::abs(b[i]));
      }
      // Row i of a causal prompt attends i + 1 keys.
      const double attended = double(c.num_seqs) * c.prompt * (c.prompt + 1) / 2.0;
      const double flops = 4.0 * attended * c.head_dim * c.num_heads;
      const double flash_tflops = flops / (flash_ms * 1e-3) / 1e12;
      const double paged_tflops = flops / (paged_ms * 1e-3) / 1e12;
      std::printf("%-22s %5d %5d %4d %8s %10.3f %10.1f %10.3f %10.1f %7.1fx %9.2e\n", c.name.c_str(), c.num_heads,
                  c.num_kv_heads, c.head_dim, KvName(kv, type), flash_ms, flash_tflops, paged_ms, paged_tflops,
                  paged_ms / flash_ms, diff / scale);
      results.push_back({{"shape", c.name},
                         {"kv_cache_dtype", KvName(kv, type)},
                         {"num_heads", c.num_heads},
                         {"num_kv_heads", c.num_kv_heads},
                         {"head_dim", c.head_dim},
                         {"num_seqs", c.num_seqs},
                         {"prompt_tokens", c.prompt},
                         {"flops", flops},
                         {"flash_ms", flash_ms},
                         {"flash_tflops", flash_tflops},
                         {"paged_ms", paged_ms},
                         {"paged_tflops", paged_tflops},
                         {"max_normwise_diff", diff / scale}});
      for (void* ptr : {q, out_flash, out_paged}) BENCH_CUDA(cudaFree(ptr));
      for (int32_t* ptr : {d_query_start, d_context, d_indptr, d_blocks, d_row_seq}) BENCH_CUDA(cudaFree(ptr));
    }
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << nlohmann::json{{"bench", "prefill_attention"}, {"device", prop.name}, {"dtype", dtype_name},
                          {"iters", iters}, {"results", results}}
               .dump(2)
        << "\n";
  }
  return 0;
}
