// The CUDA backend's paged KV cache: per layer of a KV-cache group
// (KvCacheSpec::group_layers; every layer without groups) a K and a V pool
// of [num_blocks * block_size, num_kv_heads, head_dim] elements (int8 with
// per-token scales, fp8 with per-head scales, or the compute dtype), and the
// device tables of those pools that block copies address. Layer l lives in
// pool LayerSlot(l); fp8 head scales stay per layer. Internal to
// runtime/cuda.
//
// Built only with TERN_WITH_CUDA. Used by the backend's one thread; its
// block copies run on the backend's stream and record their errors as the
// step's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cache/copy_blocks.h"
#include "runtime/backend/backend.h"
#include "runtime/backend/kv_cache_spec.h"
#include "runtime/base/check.h"
#include "runtime/cuda/cuda_device_buffer.h"

namespace tern::runtime {

class CudaKvCache final : public KvCache {
 public:
  // Records an op's error as the step's (CudaBackend::Impl::Record).
  using Recorder = std::function<void(cudaError_t, const char*)>;
  // `element_bytes`: of the compute dtype; a quantized spec stores bytes.
  CudaKvCache(const KvCacheSpec& spec, size_t element_bytes, cudaStream_t stream, Recorder record)
      : spec_(spec), element_bytes_(spec.quantized() ? 1 : element_bytes), stream_(stream),
        record_(std::move(record)) {}
  absl::Status Allocate() {
    const size_t slots = size_t(spec_.num_blocks) * spec_.block_size;
    const size_t per_layer = slots * spec_.num_kv_heads * spec_.head_dim * element_bytes_;
    const size_t scales_per_layer = slots * spec_.num_kv_heads * sizeof(float);
    const bool token_scales = spec_.dtype == KvCacheDtype::kInt8;
    const int32_t num_pools = spec_.group_layers();
    k_.resize(num_pools);
    v_.resize(num_pools);
    if (token_scales) {
      k_scales_.resize(num_pools);
      v_scales_.resize(num_pools);
    }
    std::vector<void*> pools, scale_pools;
    const size_t total = 2 * size_t(num_pools) * (per_layer + (token_scales ? scales_per_layer : 0));
    const std::string what = absl::StrCat("allocating the KV cache (", spec_.num_blocks, " blocks of ",
                                          spec_.block_size, " tokens, ", Mib(total), " in all)");
    const auto reserve = [&](DeviceBuffer& buffer, size_t bytes, std::vector<void*>* table) {
      if (auto s = AllocationStatus(buffer.Reserve(bytes), what, bytes); !s.ok()) return s;
      cudaMemsetAsync(buffer.data(), 0, bytes, stream_);
      table->push_back(buffer.data());
      return absl::OkStatus();
    };
    for (int32_t l = 0; l < num_pools; ++l) {
      if (auto s = reserve(k_[l], per_layer, &pools); !s.ok()) return s;
      if (auto s = reserve(v_[l], per_layer, &pools); !s.ok()) return s;
      if (token_scales) {
        if (auto s = reserve(k_scales_[l], scales_per_layer, &scale_pools); !s.ok()) return s;
        if (auto s = reserve(v_scales_[l], scales_per_layer, &scale_pools); !s.ok()) return s;
      }
    }
    if (spec_.dtype == KvCacheDtype::kFp8E4M3) {
      // [2, num_layers, num_kv_heads]: K's scales, then V's.
      std::vector<float> host;
      for (int side = 0; side < 2; ++side) {
        for (int32_t l = 0; l < spec_.num_layers; ++l) {
          for (int32_t h = 0; h < spec_.num_kv_heads; ++h) host.push_back(spec_.HeadScale(side == 1, l, h));
        }
      }
      if (auto s = AllocationStatus(head_scales_.Reserve(host.size() * sizeof(float)), "allocating the KV cache scales",
                                    host.size() * sizeof(float));
          !s.ok()) {
        return s;
      }
      if (auto s = CudaStatus(cudaMemcpy(head_scales_.data(), host.data(), host.size() * sizeof(float),
                                         cudaMemcpyHostToDevice),
                              "uploading the KV cache scales");
          !s.ok()) {
        return s;
      }
    }
    // The block copies address every pool's K and V (and int8 scales)
    // through these tables.
    if (auto s = UploadTable(pools, &pools_); !s.ok()) return s;
    if (token_scales) return UploadTable(scale_pools, &scale_pools_);
    return absl::OkStatus();
  }
  const KvCacheSpec& spec() const override { return spec_; }
  // One batched kernel for every (pair, pool, K or V); an error becomes the
  // step's first error, so the step these copies precede fails with it.
  void CopyBlocks(const std::vector<int32_t>& src, const std::vector<int32_t>& dst) override {
    CHECK_EQ(src.size(), dst.size());
    kernels::CopyBlocksParams p;
    p.pools = static_cast<void* const*>(pools_.data());
    p.num_pools = 2 * spec_.group_layers();
    p.num_blocks = spec_.num_blocks;
    p.block_bytes = int64_t(spec_.block_size) * spec_.num_kv_heads * spec_.head_dim * int64_t(element_bytes_);
    p.num_pairs = static_cast<int32_t>(src.size());
    p.src = src.data();
    p.dst = dst.data();
    record_(kernels::LaunchCopyBlocks(p, stream_), "copying KV cache blocks");
    if (spec_.dtype == KvCacheDtype::kInt8) {
      // A block's token scales are its slots' rows of the scale pools.
      p.pools = static_cast<void* const*>(scale_pools_.data());
      p.block_bytes = int64_t(spec_.block_size) * spec_.num_kv_heads * int64_t(sizeof(float));
      record_(kernels::LaunchCopyBlocks(p, stream_), "copying KV cache block scales");
    }
  }
  // The pool of `layer`.
  void* k(int32_t layer) const { return k_[spec_.LayerSlot(layer)].data(); }
  void* v(int32_t layer) const { return v_[spec_.LayerSlot(layer)].data(); }
  // int8: [slots, num_kv_heads] token scales of the layer; fp8: [num_kv_heads]
  // head scales of the layer; native: null.
  float* k_scales(int32_t layer) const { return Scales(0, layer); }
  float* v_scales(int32_t layer) const { return Scales(1, layer); }

 private:
  float* Scales(int side, int32_t layer) const {
    if (spec_.dtype == KvCacheDtype::kInt8) {
      return static_cast<float*>((side == 0 ? k_scales_ : v_scales_)[spec_.LayerSlot(layer)].data());
    }
    if (spec_.dtype == KvCacheDtype::kFp8E4M3) {
      return static_cast<float*>(head_scales_.data()) + (size_t(side) * spec_.num_layers + layer) * spec_.num_kv_heads;
    }
    return nullptr;
  }
  static absl::Status UploadTable(const std::vector<void*>& table, DeviceBuffer* buffer) {
    const size_t bytes = table.size() * sizeof(void*);
    if (auto s = AllocationStatus(buffer->Reserve(bytes), "allocating the KV cache tables", bytes); !s.ok()) return s;
    return CudaStatus(cudaMemcpy(buffer->data(), table.data(), bytes, cudaMemcpyHostToDevice),
                      "allocating the KV cache");
  }
  KvCacheSpec spec_;
  size_t element_bytes_;  // of one stored element
  cudaStream_t stream_;
  Recorder record_;
  std::vector<DeviceBuffer> k_, v_;
  std::vector<DeviceBuffer> k_scales_, v_scales_;  // int8: per pool [slots, num_kv_heads]
  DeviceBuffer head_scales_;                       // fp8: [2, num_layers, num_kv_heads]
  DeviceBuffer pools_;        // [2 * group_layers] device pointers: pool i's K at 2i, its V at 2i + 1
  DeviceBuffer scale_pools_;  // int8: the same for the token scales
};

}  // namespace tern::runtime
