#include "runtime/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

// Headers beyond this are refused (the format's reference reader uses 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status Malformed(const std::string& path, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": malformed safetensors: ", why));
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::ShapeString() const {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&out, i ? ", " : "", shape[i]);
  return out + "]";
}

size_t TensorSpec::nbytes() const {
  size_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

absl::Status ParseSafetensors(const std::string& path, const uint8_t* bytes, size_t size,
                              std::map<std::string, TensorView>* tensors,
                              std::map<std::string, std::string>* metadata) {
  tensors->clear();
  metadata->clear();
  if (size < 8) {
    return Malformed(path, absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return Malformed(path, absl::StrCat("header length ", header_len, " exceeds the file (", size,
                                        " bytes) or the 100 MB limit"));
  }
  const std::string header(reinterpret_cast<const char*>(bytes + 8), header_len);
  const json doc = json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return Malformed(path, "header is not a JSON object");
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : doc.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Malformed(path, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (value.is_string()) (*metadata)[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor \"", name, "\"");
    if (!entry.is_object()) return Malformed(path, where + " is not an object");
    TensorView view;
    view.name = name;
    const auto dtype = entry.find("dtype");
    if (dtype == entry.end() || !dtype->is_string() ||
        !ParseSafetensorsDType(dtype->get<std::string>(), &view.dtype)) {
      return Malformed(path, where + " has a missing or unknown dtype");
    }
    const auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array()) return Malformed(path, where + " has no shape");
    uint64_t expected = DTypeSize(view.dtype);
    for (const auto& dim : *shape) {
      if (!dim.is_number_unsigned() && !(dim.is_number_integer() && dim.get<int64_t>() >= 0)) {
        return Malformed(path, where + " has a negative or non-integer dimension");
      }
      const uint64_t d = dim.get<uint64_t>();
      if (MulOverflows(expected, d, &expected)) return Malformed(path, where + " shape overflows");
      view.shape.push_back(static_cast<int64_t>(d));
    }
    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return Malformed(path, where + " needs data_offsets [begin, end]");
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>();
    const uint64_t end = (*offsets)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return Malformed(path, absl::StrCat(where, " data_offsets [", begin, ", ", end,
                                          "] fall outside the ", data_size, "-byte data section"));
    }
    if (end - begin != expected) {
      return Malformed(path, absl::StrCat(where, " holds ", end - begin, " bytes but ",
                                          dtype->get<std::string>(), " ", view.ShapeString(), " needs ",
                                          expected));
    }
    view.data = data + begin;
    view.nbytes = end - begin;
    if (view.nbytes > 0) ranges.emplace_back(begin, end);
    (*tensors)[name] = std::move(view);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) return Malformed(path, "tensors overlap");
  }
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, " cannot be opened"));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat failed"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    close(fd);
    return Malformed(path, absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
  }
  void* mapping = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (mapping == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap failed"));
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = mapping;
  file->mapping_size_ = size;

  RETURN_IF_ERROR(ParseSafetensors(path, static_cast<const uint8_t*>(mapping), size, &file->tensors_,
                                   &file->metadata_));
  return file;
}

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::Open(const std::string& model_dir) {
  return Open(model_dir, "model");
}

absl::StatusOr<std::unique_ptr<WeightStore>> WeightStore::Open(const std::string& model_dir,
                                                              const std::string& base_name) {
  namespace fs = std::filesystem;
  std::unique_ptr<WeightStore> store(new WeightStore());
  const fs::path dir(model_dir);
  const std::string single = base_name + ".safetensors";
  const fs::path index_path = dir / (single + ".index.json");
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> expected_shard;  // tensor -> shard per the index
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    std::ifstream in(index_path);
    std::stringstream text;
    text << in.rdbuf();
    const json index = json::parse(text.str(), nullptr, false);
    if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") ||
        !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": not a safetensors index (no weight_map object)"));
    }
    std::set<std::string> shards;
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": weight_map[\"", tensor,
                                                       "\"] is not a file name"));
      }
      const std::string shard_name = shard.get<std::string>();
      if (shard_name.find('/') != std::string::npos || shard_name == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": shard \"", shard_name, "\" is not a plain file name"));
      }
      shards.insert(shard_name);
      expected_shard[tensor] = shard_name;
    }
    shard_names.assign(shards.begin(), shards.end());
  } else if (fs::exists(dir / single, ec)) {
    shard_names.push_back(single);
  } else {
    const std::string pickle = fs::exists(dir / (base_name + ".bin"), ec)
                                   ? absl::StrCat(" (", base_name, ".bin is there: tern reads safetensors only)")
                                   : "";
    return absl::NotFoundError(
        absl::StrCat(model_dir, ": no ", single, " or ", single, ".index.json", pickle));
  }
  for (const auto& shard : shard_names) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open((dir / shard).string()));
    for (const auto& [name, view] : file->tensors()) {
      if (!store->index_.emplace(name, &view).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(model_dir, ": tensor \"", name, "\" appears in more than one shard"));
      }
      const auto it = expected_shard.find(name);
      if (!expected_shard.empty() && (it == expected_shard.end() || it->second != shard)) {
        return absl::InvalidArgumentError(absl::StrCat(model_dir, ": tensor \"", name, "\" is in ", shard,
                                                       " but the index does not say so"));
      }
    }
    store->files_.push_back(std::move(file));
  }
  for (const auto& [tensor, shard] : expected_shard) {
    if (!store->index_.count(tensor)) {
      return absl::InvalidArgumentError(absl::StrCat(model_dir, ": the index lists \"", tensor,
                                                     "\" in ", shard, " but that shard lacks it"));
    }
  }
  return store;
}

absl::StatusOr<TensorView> WeightStore::Get(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return absl::NotFoundError(absl::StrCat("missing tensor \"", name, "\""));
  return *it->second;
}

absl::StatusOr<TensorView> WeightStore::GetWithShape(const std::string& name,
                                                     const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(TensorView view, Get(name));
  if (view.shape != shape) {
    TensorView want;
    want.shape = shape;
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ", view.ShapeString(),
                                                   ", expected ", want.ShapeString()));
  }
  return view;
}

std::vector<std::string> WeightStore::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, view] : index_) names.push_back(name);
  return names;
}

int64_t WeightStore::TotalParameters() const {
  int64_t total = 0;
  for (const auto& [name, view] : index_) total += view->numel();
  return total;
}

size_t WeightStore::TotalBytes() const {
  size_t total = 0;
  for (const auto& [name, view] : index_) total += view->nbytes;
  return total;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                              const TensorFiller& fill,
                              const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& spec : tensors) {
    const uint64_t n = spec.nbytes();
    header[spec.name] = {{"dtype", DTypeSafetensorsName(spec.dtype)},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // align data to 8 bytes
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::FailedPreconditionError(absl::StrCat("cannot write ", path));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t(text.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<uint8_t> buffer;
  for (const auto& spec : tensors) {
    buffer.assign(spec.nbytes(), 0);
    fill(spec, buffer.data());
    out.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", path, " failed (disk full?)"));
  return absl::OkStatus();
}

}  // namespace tern::runtime
