// Reading and writing the safetensors format: an 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets}} (plus an
// optional "__metadata__"), then the raw tensor bytes.
//
// Files are memory-mapped read-only; TensorViews borrow from the mapping and
// live as long as the SafetensorsFile / WeightStore that made them. Every
// malformed input (short file, header length past the end, bad JSON, offsets
// outside the data, size not matching dtype x shape, overlaps) is an
// INVALID_ARGUMENT naming the file and tensor, never a crash.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/dtype.h"

namespace tern::runtime {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // borrowed from the mapping
  size_t nbytes = 0;

  int64_t numel() const;
  std::string ShapeString() const;  // "[4096, 11008]"
};

// Parses a whole safetensors file held in memory, [bytes, bytes + size):
// header length, JSON header, every tensor's dtype, shape and data range
// checked against the data section. On success `tensors` (views borrowing
// from `bytes`) and `metadata` are filled; on failure they are left empty or
// partial and the INVALID_ARGUMENT message starts with `path`. SafetensorsFile::Open
// runs this on its mapping; it exists on its own for tests and fuzzing.
absl::Status ParseSafetensors(const std::string& path, const uint8_t* bytes, size_t size,
                              std::map<std::string, TensorView>* tensors,
                              std::map<std::string, std::string>* metadata);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All weights of a model directory: model.safetensors, or the shards listed
// in model.safetensors.index.json.
class WeightStore {
 public:
  static absl::StatusOr<std::unique_ptr<WeightStore>> Open(const std::string& model_dir);
  // The same for <base_name>.safetensors (diffusers:
  // "diffusion_pytorch_model") or <base_name>.safetensors.index.json.
  static absl::StatusOr<std::unique_ptr<WeightStore>> Open(const std::string& model_dir,
                                                           const std::string& base_name);

  // NOT_FOUND naming the tensor when absent.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  // As Get, and INVALID_ARGUMENT unless the shape is exactly `shape`.
  absl::StatusOr<TensorView> GetWithShape(const std::string& name,
                                          const std::vector<int64_t>& shape) const;
  bool Contains(const std::string& name) const { return index_.count(name) > 0; }
  std::vector<std::string> Names() const;
  int64_t TotalParameters() const;
  size_t TotalBytes() const;

 private:
  WeightStore() = default;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// A tensor to write: its bytes are produced by the fill callback into a
// buffer of exactly dtype x shape bytes, one tensor at a time, so models
// larger than memory can be written.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  size_t nbytes() const;
};

using TensorFiller = std::function<void(const TensorSpec& spec, uint8_t* buffer)>;

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                              const TensorFiller& fill,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace tern::runtime
