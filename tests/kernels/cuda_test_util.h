// Helpers for GPU kernel tests: device detection, typed device arrays filled
// from host floats (rounded to the element type, so the CPU reference sees
// exactly the values the GPU sees), and per-type tolerances.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/common/scalar_type.h"
#include "runtime/model/dtype.h"

namespace tern::kernels::testing {

inline bool HaveGpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

inline size_t ElementBytes(ScalarType type) { return type == ScalarType::kF32 ? 4 : 2; }

inline const char* Name(ScalarType type) {
  return type == ScalarType::kF32 ? "f32" : type == ScalarType::kF16 ? "f16" : "bf16";
}

// Relative tolerance of a result computed in `type` with fp32 accumulation.
inline float Tolerance(ScalarType type) {
  return type == ScalarType::kF32 ? 2e-5f : type == ScalarType::kF16 ? 4e-3f : 2e-2f;
}

// What rounding dequantized cache values (x' = code * scale, fp8/int8 KV)
// to `type` before a tensor-core product may add to a kernel's normwise
// error: two unit roundoffs of `type` (fp16 2^-11, bf16 2^-8; fp32 none).
inline float DequantizedRoundingTolerance(ScalarType type) {
  return type == ScalarType::kF32 ? 0.0f : type == ScalarType::kF16 ? 1e-3f : 8e-3f;
}

// Rounds v to `type` and back.
inline float Round(ScalarType type, float v) {
  switch (type) {
    case ScalarType::kF16: return runtime::HalfToFloat(runtime::FloatToHalf(v));
    case ScalarType::kBF16: return runtime::BFloat16ToFloat(runtime::FloatToBFloat16(v));
    case ScalarType::kF32: return v;
  }
  return v;
}

// A device array of `type` elements.
class DeviceArray {
 public:
  DeviceArray(ScalarType type, size_t count) : type_(type), count_(count) {
    cudaMalloc(&data_, std::max<size_t>(count, 1) * ElementBytes(type));
  }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  // Rounds `values` in place to the type and uploads them.
  void Upload(std::vector<float>& values) {
    std::vector<uint8_t> bytes(values.size() * ElementBytes(type_));
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = Round(type_, values[i]);
      if (type_ == ScalarType::kF32) {
        std::memcpy(&bytes[4 * i], &values[i], 4);
      } else {
        const uint16_t h = type_ == ScalarType::kF16 ? runtime::FloatToHalf(values[i])
                                                     : runtime::FloatToBFloat16(values[i]);
        std::memcpy(&bytes[2 * i], &h, 2);
      }
    }
    cudaMemcpy(data_, bytes.data(), bytes.size(), cudaMemcpyHostToDevice);
  }
  std::vector<float> Download() const {
    std::vector<uint8_t> bytes(count_ * ElementBytes(type_));
    cudaMemcpy(bytes.data(), data_, bytes.size(), cudaMemcpyDeviceToHost);
    std::vector<float> out(count_);
    runtime::DType dtype = type_ == ScalarType::kF32   ? runtime::DType::kF32
                           : type_ == ScalarType::kF16 ? runtime::DType::kF16
                                                       : runtime::DType::kBF16;
    runtime::ConvertToFloat(dtype, bytes.data(), count_, out.data());
    return out;
  }
  void* data() { return data_; }

 private:
  ScalarType type_;
  size_t count_;
  void* data_ = nullptr;
};

// A device copy of host int32 or float values.
template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& values) : count_(values.size()) {
    cudaMalloc(&data_, std::max<size_t>(count_, 1) * sizeof(T));
    if (count_ > 0) cudaMemcpy(data_, values.data(), count_ * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~DeviceVector() { cudaFree(data_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  const T* data() const { return data_; }
  T* mutable_data() { return data_; }
  std::vector<T> Download() const {
    std::vector<T> out(count_);
    if (count_ > 0) cudaMemcpy(out.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost);
    return out;
  }

 private:
  size_t count_;
  T* data_ = nullptr;
};

// The CSR block tables of a paged-attention batch. Sequence s computes
// seqs[s].first new tokens and has seqs[s].second tokens in the cache after
// the step; its blocks come from a shuffled pool (three spare blocks), so
// tables are scattered as a real cache's are.
struct ScatteredBatch {
  std::vector<int32_t> query_start{0}, context_lens, block_indptr{0}, block_ids, row_seq;
  int32_t num_blocks = 0;
  int32_t rows() const { return query_start.back(); }
};

inline ScatteredBatch MakeScatteredBatch(const std::vector<std::pair<int32_t, int32_t>>& seqs, int32_t block_size,
                                         std::mt19937& rng) {
  ScatteredBatch b;
  const auto blocks_of = [&](int32_t context) { return (context + block_size - 1) / block_size; };
  for (const auto& [n, context] : seqs) b.num_blocks += blocks_of(context);
  b.num_blocks += 3;
  std::vector<int32_t> pool(b.num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  for (int32_t s = 0; s < int32_t(seqs.size()); ++s) {
    const auto [n, context] = seqs[s];
    b.query_start.push_back(b.query_start.back() + n);
    b.context_lens.push_back(context);
    for (int32_t i = 0; i < blocks_of(context); ++i) {
      b.block_ids.push_back(pool.back());
      pool.pop_back();
    }
    b.block_indptr.push_back(int32_t(b.block_ids.size()));
    for (int32_t i = 0; i < n; ++i) b.row_seq.push_back(s);
  }
  return b;
}

// max |got - want| / max(1, max |want|): a normwise error for one tensor.
// A [rows, n] result in buffers of row stride `stride` >= n: the n columns
// of every row of `got` and `want`, in order, and where `got` differs from
// `want` in a padding column (n .. stride, which a kernel must not write and
// `want` holds at their initial values), or "" when nowhere.
struct OutputRegion {
  std::vector<float> got, want;
  std::string padding_written;
};
inline OutputRegion SplitOutputRegion(const std::vector<float>& got, const std::vector<float>& want, int64_t rows,
                                      int64_t n, int64_t stride) {
  OutputRegion region;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t col = 0; col < stride; ++col) {
      const size_t at = size_t(r * stride + col);
      if (col < n) {
        region.got.push_back(got[at]);
        region.want.push_back(want[at]);
      } else if (got[at] != want[at] && region.padding_written.empty()) {
        region.padding_written = "wrote padding column " + std::to_string(col) + " of row " + std::to_string(r);
      }
    }
  }
  return region;
}

inline float RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  float diff = 0.0f, scale = 1.0f;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / scale;
}

}  // namespace tern::kernels::testing
