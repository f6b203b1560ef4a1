// The models this daemon serves, by name. Filled once at startup from the
// config and --model flags, then read-only, so any thread may look up.
//
// A model whose directory is missing or malformed (config.json, any tensor of
// the architecture's layout missing or misshapen, a broken tokenizer) stops
// startup with a clear error: serving a subset of what the operator asked
// for would hide it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/hf_config.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tern/v1/config.pb.h"
#include "tern/v1/models.pb.h"

namespace tern::server {

struct ServedModel {
  tern::v1::ModelConfig config;
  runtime::HfConfig hf_config;
  tern::v1::ModelInfo info;
  // Null for a model directory without tokenizer files (token ids only).
  std::unique_ptr<runtime::Tokenizer> tokenizer;
};

class ModelRegistry {
 public:
  // Loads every model in `config.models()`. The first failure is returned,
  // prefixed with the model's name and path.
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Create(const tern::v1::ServerConfig& config);

  // NOT_FOUND naming the served models when `name` is unknown.
  absl::StatusOr<const ServedModel*> Find(const std::string& name) const;

  std::vector<tern::v1::ModelInfo> List() const;
  size_t size() const { return models_.size(); }

 private:
  ModelRegistry() = default;
  std::map<std::string, std::unique_ptr<ServedModel>> models_;
};

}  // namespace tern::server
