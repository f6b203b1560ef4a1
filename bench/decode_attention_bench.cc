// Decode attention alone: the split-context GQA kernel
// (LaunchPagedDecodeAttention) beside the per-(row, head) kernel
// (LaunchPagedAttention) on the same inputs, timed with CUDA events. Reports
// K+V bytes read per second against this run's own device-to-device copy
// bandwidth (cudaMemcpy of 1 GiB, bytes read + written, best of 5).
//
//   tern-decode-attention-bench [--iters N] [--kv-dtype all|fp16|fp8|int8] [--moa-density 0.25,0.5,0.75]
//                               [--json PATH]
//
// Cases: fp16 queries, 16-token blocks scattered over the cache, every
// sequence at the full context; Llama-2-7B heads (32 / 32 kv / 128) and
// Llama-3-8B heads (32 / 8 kv / 128), batch 64 at 4096 tokens and batch 256
// at 1024; each with an fp16 cache and (--kv-dtype all, the default) fp8 and
// int8 caches (kernels/attention/kv_quant.h), whose rows report their speedup
// over the fp16 cache's split kernel and their bytes (codes, plus int8's
// token scales) against the copy bandwidth. The per-(row, head) kernel runs
// on fp16 caches only.
//
// --moa-density adds, per case and cache type, rows with MoA per-head spans
// (kernels/attention/attention_spans.h) at each average density d at the
// case's context: every head a 64-token sink and a band growing at beta =
// d - s or d + s (alternating heads, s = min(d, 1 - d) / 2), alpha = -64, so
// heads of one GQA group differ and the mean density is d. Their tables map
// only the blocks some head reads (the rest -1, as the scheduler frees them).
// They report decode tokens/s (sequences / step time), the KV bytes read, and
// the KV bytes the cache holds for them against full attention's.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention_spans.h"
#include "kernels/attention/kv_quant.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/common/float8.h"
#include "kernels/attention/paged_decode_attention.h"
#include "bench/copy_bandwidth.h"
#include "nlohmann/json.hpp"
#include "runtime/model/dtype.h"

namespace {

using tern::kernels::KvElement;
using tern::kernels::PagedAttentionParams;
using tern::kernels::ScalarType;

#define BENCH_CUDA(expr)                                                                        \
  do {                                                                                          \
    const cudaError_t bench_error_ = (expr);                                                    \
    if (bench_error_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(bench_error_));                 \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

struct Case {
  std::string model;
  int32_t num_heads, num_kv_heads, head_dim, batch, context;
};

struct Row {
  Case c;
  KvElement kv;
  double kv_bytes, new_ms, old_ms, max_diff;  // old_ms, max_diff: fp16 caches only
  double density = 0;         // MoA rows: the plan's mean density; 0: full attention
  double held_fraction = 1;   // KV blocks held (mapped) / full attention's
};

// The MoA plan of --moa-density for one layer of `heads` heads at density d.
struct SpanTables {
  std::vector<int32_t> max_length = {INT32_MAX};
  std::vector<int32_t> sinks;
  std::vector<double> alphas, betas;
  SpanTables(int32_t heads, double d) {
    const double s = std::min(d, 1.0 - d) / 2;
    for (int32_t h = 0; h < heads; ++h) {
      sinks.push_back(64);
      alphas.push_back(-64.0);
      betas.push_back(h % 2 == 0 ? d - s : d + s);
    }
  }
  tern::kernels::AttentionSpanRules Host() const {
    return {1, max_length.data(), sinks.data(), alphas.data(), betas.data()};
  }
};

const char* KvName(KvElement kv) { return kv == KvElement::kNative ? "fp16" : tern::kernels::KvElementName(kv); }

// Fills `count` bytes of quantized codes (valid e4m3 values, or int8 in
// [-127, 127]) by tiling a 16M-byte pattern.
void FillCodes(KvElement kv, void* dst, size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint8_t> pattern(std::min<size_t>(count, size_t(1) << 24));
  for (auto& b : pattern) {
    const float x = normal(rng);
    b = kv == KvElement::kInt8 ? uint8_t(int8_t(std::max(-127.0f, std::min(127.0f, std::nearbyint(40.0f * x)))))
                               : tern::kernels::FloatToFp8E4M3(x);
  }
  for (size_t done = 0; done < count; done += pattern.size()) {
    const size_t n = std::min(pattern.size(), count - done);
    BENCH_CUDA(cudaMemcpy(static_cast<uint8_t*>(dst) + done, pattern.data(), n, cudaMemcpyHostToDevice));
  }
}


// Fills `count` fp16 elements with normal values by tiling a 16M-element pattern.
void FillHalf(void* dst, size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> pattern(std::min<size_t>(count, size_t(1) << 24));
  for (auto& h : pattern) h = tern::runtime::FloatToHalf(normal(rng));
  for (size_t done = 0; done < count; done += pattern.size()) {
    const size_t n = std::min(pattern.size(), count - done);
    BENCH_CUDA(cudaMemcpy(static_cast<uint16_t*>(dst) + done, pattern.data(), n * 2, cudaMemcpyHostToDevice));
  }
}

template <typename F>
double TimeMs(int iters, F&& launch) {
  for (int i = 0; i < 3; ++i) launch();
  BENCH_CUDA(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start);
  for (int i = 0; i < iters; ++i) launch();
  cudaEventRecord(stop);
  BENCH_CUDA(cudaEventSynchronize(stop));
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iters;
}

std::vector<float> ToFloats(const void* device, size_t count) {
  std::vector<uint16_t> h(count);
  BENCH_CUDA(cudaMemcpy(h.data(), device, count * 2, cudaMemcpyDeviceToHost));
  std::vector<float> f(count);
  for (size_t i = 0; i < count; ++i) f[i] = tern::runtime::HalfToFloat(h[i]);
  return f;
}

Row Run(const Case& c, KvElement kv, int iters, double density) {
  constexpr int32_t kBlock = 16;
  std::mt19937 rng(1);
  const int32_t blocks_per_seq = (c.context + kBlock - 1) / kBlock;
  const int32_t num_blocks = c.batch * blocks_per_seq;
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int32_t> query_start(c.batch + 1), row_seq(c.batch), context_lens(c.batch, c.context),
      block_indptr(c.batch + 1);
  std::iota(query_start.begin(), query_start.end(), 0);
  std::iota(row_seq.begin(), row_seq.end(), 0);
  for (int32_t s = 0; s <= c.batch; ++s) block_indptr[s] = s * blocks_per_seq;

  const size_t q_elems = size_t(c.batch) * c.num_heads * c.head_dim;
  const size_t cache_elems = size_t(num_blocks) * kBlock * c.num_kv_heads * c.head_dim;
  const bool quantized = kv != KvElement::kNative;
  const size_t elem_bytes = quantized ? 1 : 2;
  // int8: [slots, kv heads] token scales; fp8: [kv heads] head scales.
  const size_t scale_count = kv == KvElement::kInt8 ? size_t(num_blocks) * kBlock * c.num_kv_heads : c.num_kv_heads;
  void *q, *k, *v, *out_new, *out_old, *workspace = nullptr;
  float *k_scales = nullptr, *v_scales = nullptr;
  int32_t *d_query_start, *d_row_seq, *d_context, *d_indptr, *d_blocks;
  BENCH_CUDA(cudaMalloc(&q, q_elems * 2));
  BENCH_CUDA(cudaMalloc(&out_new, q_elems * 2));
  BENCH_CUDA(cudaMalloc(&out_old, q_elems * 2));
  BENCH_CUDA(cudaMalloc(&k, cache_elems * elem_bytes));
  BENCH_CUDA(cudaMalloc(&v, cache_elems * elem_bytes));
  if (quantized) {
    const std::vector<float> scales(scale_count, kv == KvElement::kInt8 ? 1.0f / 40.0f : 1.0f);
    for (float** dst : {&k_scales, &v_scales}) {
      BENCH_CUDA(cudaMalloc(dst, scale_count * 4));
      BENCH_CUDA(cudaMemcpy(*dst, scales.data(), scale_count * 4, cudaMemcpyHostToDevice));
    }
  }
  const auto upload = [](int32_t** dst, const std::vector<int32_t>& src) {
    BENCH_CUDA(cudaMalloc(dst, src.size() * 4));
    BENCH_CUDA(cudaMemcpy(*dst, src.data(), src.size() * 4, cudaMemcpyHostToDevice));
  };
  upload(&d_query_start, query_start);
  upload(&d_row_seq, row_seq);
  upload(&d_context, context_lens);
  upload(&d_indptr, block_indptr);
  // MoA: spans on the device, and the blocks no head reads unmapped.
  const SpanTables tables(c.num_heads, density);
  tern::kernels::AttentionSpanRules spans;
  int32_t *d_max_length = nullptr, *d_sinks = nullptr;
  double *d_alphas = nullptr, *d_betas = nullptr;
  double held_fraction = 1.0, read_fraction = 1.0;
  if (density > 0) {
    const tern::kernels::AttentionSpanRules host = tables.Host();
    int32_t sink = 0, band = c.context;
    double read = 0;
    for (int32_t h = 0; h < c.num_heads; ++h) {
      sink = std::max(sink, host.SinkEnd(h, c.context));
      band = std::min(band, host.BandStart(c.num_heads, h, c.context));
    }
    // Bytes read: each kv head reads the union of its group's ranges once.
    const int32_t group = c.num_heads / c.num_kv_heads;
    for (int32_t kvh = 0; kvh < c.num_kv_heads; ++kvh) {
      int32_t gs = 0, gb = c.context;
      for (int32_t g = 0; g < group; ++g) {
        gs = std::max(gs, host.SinkEnd(kvh * group + g, c.context));
        gb = std::min(gb, host.BandStart(c.num_heads, kvh * group + g, c.context));
      }
      read += gs + c.context - std::max(gs, gb);
    }
    read_fraction = read / (double(c.num_kv_heads) * c.context);
    int32_t held = 0;
    for (int32_t s = 0; s < c.batch; ++s) {
      for (int32_t i = 0; i < blocks_per_seq; ++i) {
        const bool kept = i * kBlock < sink || (i + 1) * kBlock > band;
        if (!kept) pool[size_t(s) * blocks_per_seq + i] = -1;
        held += kept ? 1 : 0;
      }
    }
    held_fraction = double(held) / double(num_blocks);
    BENCH_CUDA(cudaMalloc(&d_max_length, 4));
    BENCH_CUDA(cudaMemcpy(d_max_length, tables.max_length.data(), 4, cudaMemcpyHostToDevice));
    upload(&d_sinks, tables.sinks);
    for (auto [dst, src] : {std::pair{&d_alphas, &tables.alphas}, std::pair{&d_betas, &tables.betas}}) {
      BENCH_CUDA(cudaMalloc(dst, src->size() * 8));
      BENCH_CUDA(cudaMemcpy(*dst, src->data(), src->size() * 8, cudaMemcpyHostToDevice));
    }
    spans = {1, d_max_length, d_sinks, d_alphas, d_betas};
  }
  upload(&d_blocks, pool);
  FillHalf(q, q_elems, rng);
  if (quantized) {
    FillCodes(kv, k, cache_elems, rng);
    FillCodes(kv, v, cache_elems, rng);
  } else {
    FillHalf(k, cache_elems, rng);
    FillHalf(v, cache_elems, rng);
  }
  PagedAttentionParams p;
  p.num_seqs = c.batch;
  p.num_heads = c.num_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  const size_t workspace_bytes = tern::kernels::PagedDecodeAttentionWorkspaceBytes(p, c.context);
  if (workspace_bytes > 0) BENCH_CUDA(cudaMalloc(&workspace, workspace_bytes));
  p.block_size = kBlock;
  p.scale = 1.0f / std::sqrt(float(c.head_dim));
  p.query_start = d_query_start;
  p.context_lens = d_context;
  p.block_indptr = d_indptr;
  p.block_ids = d_blocks;
  p.q_row_stride = int64_t(c.num_heads) * c.head_dim;
  p.out_row_stride = p.q_row_stride;
  p.kv_element = kv;
  p.k_scales = k_scales;
  p.v_scales = v_scales;
  p.spans = spans;
  // Bytes read: K and V codes, and int8's token scales.
  const double tokens = double(c.batch) * c.context * c.num_kv_heads * read_fraction;
  Row row{c, kv, 2.0 * tokens * (c.head_dim * double(elem_bytes) + (kv == KvElement::kInt8 ? 4 : 0)), 0, 0, 0,
          density, held_fraction};
  row.new_ms = TimeMs(iters, [&] {
    BENCH_CUDA(tern::kernels::LaunchPagedDecodeAttention(ScalarType::kF16, p, c.context, q, k, v, out_new, workspace,
                                                         workspace_bytes, nullptr));
  });
  if (!quantized) {  // MoA rows too: the general kernel over the same spans
    row.old_ms = TimeMs(std::max(1, iters / 4), [&] {
      BENCH_CUDA(
          tern::kernels::LaunchPagedAttention(ScalarType::kF16, p, c.batch, d_row_seq, q, k, v, out_old, nullptr));
    });
    const std::vector<float> a = ToFloats(out_new, q_elems), b = ToFloats(out_old, q_elems);
    for (size_t i = 0; i < q_elems; ++i) row.max_diff = std::max(row.max_diff, double(std::abs(a[i] - b[i])));
  }
  for (void* ptr : {q, k, v, out_new, out_old, workspace}) cudaFree(ptr);
  for (float* ptr : {k_scales, v_scales}) cudaFree(ptr);
  for (int32_t* ptr : {d_query_start, d_row_seq, d_context, d_indptr, d_blocks, d_max_length, d_sinks}) cudaFree(ptr);
  for (double* ptr : {d_alphas, d_betas}) cudaFree(ptr);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 20;
  std::string json_path;
  std::vector<KvElement> kv_types = {KvElement::kNative, KvElement::kFp8E4M3, KvElement::kInt8};
  std::vector<double> densities;  // MoA rows beside the full-attention ones
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--iters" && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if ((arg == "--kv-dtype" || arg == "--kv_dtype") && i + 1 < argc) {
      const std::string kv = argv[++i];
      if (kv == "fp16") {
        kv_types = {KvElement::kNative};
      } else if (kv == "fp8") {
        kv_types = {KvElement::kNative, KvElement::kFp8E4M3};  // fp16 stays: the speedup's baseline
      } else if (kv == "int8") {
        kv_types = {KvElement::kNative, KvElement::kInt8};
      } else if (kv != "all") {
        std::fprintf(stderr, "--kv-dtype: \"%s\" is not one of all, fp16, fp8, int8\n", kv.c_str());
        return 2;
      }
    } else if ((arg == "--moa-density" || arg == "--moa_density") && i + 1 < argc) {
      std::string list = argv[++i];
      for (size_t pos = 0; pos <= list.size();) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        const double d = std::atof(list.substr(pos, comma - pos).c_str());
        if (!(d > 0.0 && d <= 1.0)) {
          std::fprintf(stderr, "--moa-density: \"%s\" is not a list of densities in (0, 1]\n", list.c_str());
          return 2;
        }
        densities.push_back(d);
        pos = comma + 1;
      }
    } else {
      std::fprintf(stderr, "usage: %s [--iters N] [--kv-dtype all|fp16|fp8|int8] [--moa-density D,...] [--json PATH]\n",
                   argv[0]);
      return 2;
    }
  }
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double copy = tern::bench::DeviceCopyBandwidth();
  const std::vector<Case> cases = {
      {"llama-2-7b", 32, 32, 128, 64, 4096},
      {"llama-2-7b", 32, 32, 128, 256, 1024},
      {"llama-3-8b", 32, 8, 128, 64, 4096},
      {"llama-3-8b", 32, 8, 128, 256, 1024},
  };
  std::vector<Row> rows;
  std::vector<double> fp16_ms;  // per case, the fp16 cache's split kernel over the full context
  std::vector<double> row_densities = {0.0};
  row_densities.insert(row_densities.end(), densities.begin(), densities.end());
  const size_t rows_per_case = kv_types.size() * row_densities.size();
  for (const Case& c : cases) {
    for (double d : row_densities) {
      for (KvElement kv : kv_types) {
        rows.push_back(Run(c, kv, iters, d));
        if (kv == KvElement::kNative && d == 0.0) fp16_ms.push_back(rows.back().new_ms);
      }
    }
  }
  std::printf("decode attention, fp16 queries, 16-token blocks, %s, copy bandwidth %.0f GB/s (read + write)\n",
              prop.name, copy / 1e9);
  std::printf("%-11s %9s %6s %6s %5s %5s %9s %10s %8s %10s %8s %8s %9s %8s %10s %7s\n", "model", "heads", "batch",
              "ctx", "kv", "moa", "KV MB", "split ms", "GB/s", "of copy", "old ms", "speedup", "max diff",
              "vs fp16", "tokens/s", "KV held");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const double base = fp16_ms[i / rows_per_case];
    const std::string heads = std::to_string(r.c.num_heads) + "/" + std::to_string(r.c.num_kv_heads);
    const std::string moa = r.density > 0 ? std::to_string(int(r.density * 100 + 0.5)) + "%" : "-";
    std::printf("%-11s %9s %6d %6d %5s %5s %9.0f %10.3f %8.0f %10.2f %8.3f %8.1f %9.1e %8.2f %10.0f %7.2f\n",
                r.c.model.c_str(), heads.c_str(), r.c.batch, r.c.context, KvName(r.kv), moa.c_str(), r.kv_bytes / 1e6,
                r.new_ms, r.kv_bytes / (r.new_ms * 1e-3) / 1e9, r.kv_bytes / (r.new_ms * 1e-3) / copy, r.old_ms,
                r.old_ms > 0 ? r.old_ms / r.new_ms : 0.0, r.max_diff, base / r.new_ms,
                r.c.batch / (r.new_ms * 1e-3), r.held_fraction);
  }
  if (!json_path.empty()) {
    nlohmann::json doc;
    doc["device"] = prop.name;
    doc["copy_bandwidth_bytes_per_s"] = copy;
    doc["iters"] = iters;
    for (const Row& r : rows) {
      doc["cases"].push_back({{"model", r.c.model},
                              {"num_heads", r.c.num_heads},
                              {"num_kv_heads", r.c.num_kv_heads},
                              {"head_dim", r.c.head_dim},
                              {"batch", r.c.batch},
                              {"context", r.c.context},
                              {"kv_cache_dtype", KvName(r.kv)},
                              {"moa_density", r.density},
                              {"kv_held_fraction", r.held_fraction},
                              {"attention_tokens_per_s", r.c.batch / (r.new_ms * 1e-3)},
                              {"kv_bytes", r.kv_bytes},
                              {"split_ms", r.new_ms},
                              {"split_bytes_per_s", r.kv_bytes / (r.new_ms * 1e-3)},
                              {"split_fraction_of_copy", r.kv_bytes / (r.new_ms * 1e-3) / copy},
                              {"old_ms", r.old_ms},
                              {"old_bytes_per_s", r.kv_bytes / (r.old_ms * 1e-3)},
                              {"max_abs_diff", r.max_diff}});
    }
    std::ofstream(json_path) << doc.dump(2) << "\n";
  }
  return 0;
}
