// Decode attention alone: the split-context GQA kernel
// (LaunchPagedDecodeAttention) beside the per-(row, head) kernel
// (LaunchPagedAttention) on the same inputs, timed with CUDA events. Reports
// K+V bytes read per second against this run's own device-to-device copy
// bandwidth (cudaMemcpy of 1 GiB, bytes read + written, best of 5).
//
//   tern-decode-attention-bench [--iters N] [--json PATH]
//
// Cases: fp16, 16-token blocks scattered over the cache, every sequence at
// the full context; Llama-2-7B heads (32 / 32 kv / 128) and Llama-3-8B
// heads (32 / 8 kv / 128), batch 64 at 4096 tokens and batch 256 at 1024.
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

#include "kernels/attention/paged_attention.h"
#include "kernels/attention/paged_decode_attention.h"
#include "bench/copy_bandwidth.h"
#include "nlohmann/json.hpp"
#include "runtime/model/dtype.h"

namespace {

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
  double kv_bytes, new_ms, old_ms, max_diff;
};


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

Row Run(const Case& c, int iters) {
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
  void *q, *k, *v, *out_new, *out_old, *workspace = nullptr;
  int32_t *d_query_start, *d_row_seq, *d_context, *d_indptr, *d_blocks;
  BENCH_CUDA(cudaMalloc(&q, q_elems * 2));
  BENCH_CUDA(cudaMalloc(&out_new, q_elems * 2));
  BENCH_CUDA(cudaMalloc(&out_old, q_elems * 2));
  BENCH_CUDA(cudaMalloc(&k, cache_elems * 2));
  BENCH_CUDA(cudaMalloc(&v, cache_elems * 2));
  const auto upload = [](int32_t** dst, const std::vector<int32_t>& src) {
    BENCH_CUDA(cudaMalloc(dst, src.size() * 4));
    BENCH_CUDA(cudaMemcpy(*dst, src.data(), src.size() * 4, cudaMemcpyHostToDevice));
  };
  upload(&d_query_start, query_start);
  upload(&d_row_seq, row_seq);
  upload(&d_context, context_lens);
  upload(&d_indptr, block_indptr);
  upload(&d_blocks, pool);
  FillHalf(q, q_elems, rng);
  FillHalf(k, cache_elems, rng);
  FillHalf(v, cache_elems, rng);
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

  Row row{c, 2.0 * double(c.batch) * c.context * c.num_kv_heads * c.head_dim * 2, 0, 0, 0};
  row.new_ms = TimeMs(iters, [&] {
    BENCH_CUDA(tern::kernels::LaunchPagedDecodeAttention(ScalarType::kF16, p, c.context, q, k, v, out_new, workspace,
                                                         workspace_bytes, nullptr));
  });
  row.old_ms = TimeMs(std::max(1, iters / 4), [&] {
    BENCH_CUDA(tern::kernels::LaunchPagedAttention(ScalarType::kF16, p, c.batch, d_row_seq, q, k, v, out_old, nullptr));
  });
  const std::vector<float> a = ToFloats(out_new, q_elems), b = ToFloats(out_old, q_elems);
  for (size_t i = 0; i < q_elems; ++i) row.max_diff = std::max(row.max_diff, double(std::abs(a[i] - b[i])));

  for (void* ptr : {q, k, v, out_new, out_old, workspace}) cudaFree(ptr);
  for (int32_t* ptr : {d_query_start, d_row_seq, d_context, d_indptr, d_blocks}) cudaFree(ptr);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 20;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--iters" && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--iters N] [--json PATH]\n", argv[0]);
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
  for (const Case& c : cases) rows.push_back(Run(c, iters));

  std::printf("decode attention, fp16, 16-token blocks, %s, copy bandwidth %.0f GB/s (read + write)\n", prop.name,
              copy / 1e9);
  std::printf("%-11s %9s %6s %6s %9s %10s %8s %10s %8s %8s %9s\n", "model", "heads", "batch", "ctx", "KV MB",
              "split ms", "GB/s", "of copy", "old ms", "speedup", "max diff");
  for (const Row& r : rows) {
    const std::string heads = std::to_string(r.c.num_heads) + "/" + std::to_string(r.c.num_kv_heads);
    std::printf("%-11s %9s %6d %6d %9.0f %10.3f %8.0f %10.2f %8.3f %8.1f %9.1e\n", r.c.model.c_str(), heads.c_str(),
                r.c.batch, r.c.context, r.kv_bytes / 1e6, r.new_ms, r.kv_bytes / (r.new_ms * 1e-3) / 1e9,
                r.kv_bytes / (r.new_ms * 1e-3) / copy, r.old_ms, r.old_ms / r.new_ms, r.max_diff);
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
