// The Llama-family model definition against golden outputs of Hugging Face
// transformers (tests/data/golden, made by tools/device/hf_reference.py on the
// same tern-mkmodel weights, float32). Built twice: on the CPU backend, and
// with TERN_TEST_CUDA_BACKEND on the CUDA backend computing in fp32 (label
// gpu; skipped without a device). The runner test drives LlmModelRunner
// (ForwardLogits + Backend::SampleRows); on the CUDA build it also checks the
// device sampler's tokens and logprobs against the CPU runner's.
#include "runtime/model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <utility>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/cpu_backend.h"
#if defined(TERN_TEST_CUDA_BACKEND)
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"
#endif
#include "tests/runtime/test_backend.h"
#include "runtime/model/safetensors.h"
#include "runtime/runner/llm_model_runner.h"

namespace tern::runtime {
namespace {

namespace fs = std::filesystem;

using testing::MakeTestBackend;

struct Golden {
  std::string architecture;
  std::string sha256;
  std::vector<std::vector<int32_t>> token_ids;
  std::vector<std::vector<std::vector<float>>> logits;  // case -> position -> vocab
  std::vector<int32_t> greedy_prompt, greedy_continuation;
  std::vector<std::vector<float>> greedy_logits;  // decode step -> vocab
};

Golden LoadGolden(const std::string& name) {
  std::ifstream in(std::string(TERN_TEST_DATA_DIR) + "/golden/" + name + ".json");
  std::stringstream text;
  text << in.rdbuf();
  const auto doc = nlohmann::json::parse(text.str());
  Golden g;
  g.architecture = doc["architecture"];
  g.sha256 = doc["weights_sha256"];
  for (const auto& c : doc["cases"]) {
    g.token_ids.push_back(c["token_ids"].get<std::vector<int32_t>>());
    g.logits.push_back(c["logits"].get<std::vector<std::vector<float>>>());
  }
  g.greedy_prompt = doc["greedy"]["prompt"].get<std::vector<int32_t>>();
  g.greedy_continuation = doc["greedy"]["continuation"].get<std::vector<int32_t>>();
  g.greedy_logits = doc["greedy"]["logits"].get<std::vector<std::vector<float>>>();
  return g;
}

std::string RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  pclose(pipe);
  return output;
}

// Regenerates the golden model with tern-mkmodel (deterministic bytes) into
// a temp dir once per test binary run.
std::string MakeModel(const std::string& arch, const std::string& dtype) {
  const std::string dir = (fs::temp_directory_path() / ("tern-golden-" + arch + "-" + dtype + "-" +
                                                         std::to_string(getpid()))).string();
  if (!fs::exists(dir + "/config.json")) {
    // $TERN_BIN_DIR wins, so a relocated bundle (tools/device/bundle.sh) finds its tools.
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch " + arch +
                            " --preset tiny --vocab-size 512 --seed 7 --dtype " + dtype + " --out " + dir +
                            " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  return dir;
}

std::string Sha256OfWeights(const std::string& dir) {
  return RunCommand("cat " + dir + "/*.safetensors | sha256sum | cut -d' ' -f1").substr(0, 64);
}

// Hands out KV blocks in a scrambled order so block tables are not contiguous.
class ScatteredBlocks {
 public:
  explicit ScatteredBlocks(int32_t num_blocks) : free_(num_blocks) {
    std::iota(free_.begin(), free_.end(), 0);
    std::shuffle(free_.begin(), free_.end(), std::mt19937(99));
  }
  int32_t Take() {
    const int32_t b = free_.back();
    free_.pop_back();
    return b;
  }

 private:
  std::vector<int32_t> free_;
};

// One sequence's cache state in a test.
struct TestSequence {
  explicit TestSequence(std::vector<int32_t> all_tokens) : tokens(std::move(all_tokens)) {}
  std::vector<int32_t> tokens;  // all tokens so far
  std::vector<int32_t> blocks;
  int32_t cached = 0;  // tokens already in the cache
};

// Appends a step for `seq` computing tokens [cached, cached + n) to `batch`.
void AddToBatch(TestSequence& seq, int32_t n, int32_t block_size, ScatteredBlocks& pool, bool all_logits,
                ForwardBatch* batch) {
  const int32_t begin = seq.cached;
  const int32_t end = begin + n;
  while (int32_t(seq.blocks.size()) * block_size < end) seq.blocks.push_back(pool.Take());
  if (batch->query_start.empty()) batch->query_start.push_back(0);
  if (batch->block_indptr.empty()) batch->block_indptr.push_back(0);
  const int32_t row0 = batch->num_tokens();
  for (int32_t p = begin; p < end; ++p) {
    batch->token_ids.push_back(seq.tokens[p]);
    batch->positions.push_back(p);
    batch->slots.push_back(seq.blocks[p / block_size] * block_size + p % block_size);
  }
  batch->query_start.push_back(batch->num_tokens());
  batch->context_lens.push_back(end);
  batch->block_ids.insert(batch->block_ids.end(), seq.blocks.begin(), seq.blocks.end());
  batch->block_indptr.push_back(int32_t(batch->block_ids.size()));
  if (all_logits) {
    for (int32_t r = row0; r < batch->num_tokens(); ++r) batch->logits_rows.push_back(r);
  } else {
    batch->logits_rows.push_back(batch->num_tokens() - 1);
  }
  seq.cached = end;
}

// Relative error of a logits row: max |got - want| / max |want| (the
// normwise measure; elementwise ratios are meaningless for logits near 0).
void ExpectLogitsNear(const float* got, const std::vector<float>& want, const std::string& where) {
  double max_diff = 0, max_ref = 0;
  for (size_t v = 0; v < want.size(); ++v) {
    max_diff = std::max(max_diff, std::abs(double(got[v]) - want[v]));
    max_ref = std::max(max_ref, std::abs(double(want[v])));
  }
  EXPECT_LT(max_diff / max_ref, 1e-4) << where << ": max abs diff " << max_diff << " of max " << max_ref;
}

class LlamaModelGoldenTest : public ::testing::TestWithParam<std::pair<std::string, std::string>> {
 protected:
  void SetUp() override {
    backend_ = MakeTestBackend();
    if (backend_ == nullptr) GTEST_SKIP() << "no CUDA device";
    const auto& [arch, dtype] = GetParam();
    golden_ = LoadGolden(dtype == "float32" ? "tiny-" + arch : "tiny-" + arch + "-bf16");
    dir_ = MakeModel(arch, dtype);
    ASSERT_EQ(Sha256OfWeights(dir_), golden_.sha256) << "tern-mkmodel no longer writes the golden weights";
    auto model = LlamaModel::Load(dir_, backend_.get(), {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto cache = backend_->AllocateKvCache(model_->CacheSpec(64, kBlockSize));
    ASSERT_TRUE(cache.ok());
    cache_ = std::move(*cache);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  static constexpr int32_t kBlockSize = 4;
  std::unique_ptr<Backend> backend_;
  Golden golden_;
  std::string dir_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvCache> cache_;
};

TEST_P(LlamaModelGoldenTest, PrefillLogitsMatchTransformersAtEveryPosition) {
  EXPECT_EQ(model_->config().architecture, golden_.architecture);
  ScatteredBlocks pool(64);
  for (size_t c = 0; c < golden_.token_ids.size(); ++c) {
    TestSequence seq{golden_.token_ids[c]};
    ForwardBatch batch;
    AddToBatch(seq, int32_t(seq.tokens.size()), kBlockSize, pool, /*all_logits=*/true, &batch);
    ASSERT_TRUE(batch.Validate(cache_->spec(), model_->config().vocab_size).ok());
    std::vector<float> logits;
    ASSERT_TRUE(model_->Forward(batch, *cache_, &logits).ok());
    const size_t vocab = model_->config().vocab_size;
    for (size_t p = 0; p < seq.tokens.size(); ++p) {
      ExpectLogitsNear(&logits[p * vocab], golden_.logits[c][p], "case " + std::to_string(c) + " pos " + std::to_string(p));
    }
  }
}

TEST_P(LlamaModelGoldenTest, ChunkedPrefillThenDecodeOverScatteredBlocksMatches) {
  ScatteredBlocks pool(64);
  const size_t c = golden_.token_ids.size() - 1;  // the 40-token case
  TestSequence seq{golden_.token_ids[c]};
  const size_t vocab = model_->config().vocab_size;
  std::vector<int32_t> chunks = {13, 7};
  while (std::accumulate(chunks.begin(), chunks.end(), 0) < int32_t(seq.tokens.size())) chunks.push_back(1);
  for (int32_t n : chunks) {
    ForwardBatch batch;
    const int32_t first = seq.cached;
    AddToBatch(seq, n, kBlockSize, pool, /*all_logits=*/true, &batch);
    std::vector<float> logits;
    ASSERT_TRUE(model_->Forward(batch, *cache_, &logits).ok());
    for (int32_t i = 0; i < n; ++i) {
      ExpectLogitsNear(&logits[i * vocab], golden_.logits[c][first + i], "position " + std::to_string(first + i));
    }
  }
}

TEST_P(LlamaModelGoldenTest, MixedBatchOfPrefillsMatchesEachSequence) {
  ScatteredBlocks pool(64);
  std::vector<TestSequence> seqs;
  for (const auto& ids : golden_.token_ids) seqs.emplace_back(ids);
  ForwardBatch batch;
  for (auto& seq : seqs) AddToBatch(seq, int32_t(seq.tokens.size()), kBlockSize, pool, false, &batch);
  std::vector<float> logits;
  ASSERT_TRUE(model_->Forward(batch, *cache_, &logits).ok());
  const size_t vocab = model_->config().vocab_size;
  for (size_t s = 0; s < seqs.size(); ++s) {
    ExpectLogitsNear(&logits[s * vocab], golden_.logits[s].back(), "sequence " + std::to_string(s));
  }
}

TEST_P(LlamaModelGoldenTest, SixteenGreedyDecodeStepsEqualTransformers) {
  ScatteredBlocks pool(64);
  TestSequence seq{golden_.greedy_prompt};
  const size_t vocab = model_->config().vocab_size;
  std::vector<int32_t> generated;
  int32_t n = int32_t(seq.tokens.size());
  for (size_t step = 0; step < golden_.greedy_continuation.size(); ++step) {
    ForwardBatch batch;
    AddToBatch(seq, n, kBlockSize, pool, false, &batch);
    std::vector<float> logits;
    ASSERT_TRUE(model_->Forward(batch, *cache_, &logits).ok());
    ExpectLogitsNear(logits.data(), golden_.greedy_logits[step], "greedy step " + std::to_string(step));
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
    generated.push_back(next);
    seq.tokens.push_back(next);
    n = 1;
  }
  EXPECT_EQ(generated, golden_.greedy_continuation);
}

INSTANTIATE_TEST_SUITE_P(Architectures, LlamaModelGoldenTest,
                         ::testing::Values(std::pair{"llama", "float32"}, std::pair{"mistral", "float32"},
                                           std::pair{"qwen2", "float32"}, std::pair{"mixtral", "float32"},
                                           std::pair{"llama", "bfloat16"}),
                         [](const auto& info) { return info.param.first + "_" + info.param.second; });

TEST(LlamaModelLoadTest, MissingAndMisshapenTensorsAreClearErrors) {
  auto backend = MakeTestBackend();
  if (backend == nullptr) GTEST_SKIP() << "no CUDA device";
  const std::string dir = MakeModel("llama", "float32");
  auto store = WeightStore::Open(dir);
  ASSERT_TRUE(store.ok());
  // Rewrite the checkpoint without one tensor, then with one wrong shape.
  std::vector<TensorSpec> specs;
  for (const auto& name : (*store)->Names()) {
    const TensorView view = *(*store)->Get(name);
    if (name == "model.layers.1.mlp.up_proj.weight") continue;
    specs.push_back({name, view.dtype, view.shape});
  }
  const std::string broken = dir + "-broken";
  fs::create_directories(broken);
  fs::copy_file(dir + "/config.json", broken + "/config.json");
  const auto fill = [&](const TensorSpec& spec, uint8_t* out) {
    const TensorView view = *(*store)->Get(spec.name);
    std::memcpy(out, view.data, std::min(view.nbytes, spec.nbytes()));
  };
  ASSERT_TRUE(WriteSafetensors(broken + "/model.safetensors", specs, fill).ok());
  auto missing = LlamaModel::Load(broken, backend.get(), {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("model.layers.1.mlp.up_proj.weight"), std::string::npos)
      << missing.status();

  specs.push_back({"model.layers.1.mlp.up_proj.weight", DType::kF32, {7, 3}});
  ASSERT_TRUE(WriteSafetensors(broken + "/model.safetensors", specs, fill).ok());
  auto misshapen = LlamaModel::Load(broken, backend.get(), {});
  EXPECT_EQ(misshapen.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(misshapen.status().message().find("[7, 3]"), std::string::npos) << misshapen.status();
  fs::remove_all(broken);
  fs::remove_all(dir);
}

// Expert-pruned Mixtral checkpoints (fewer experts a layer than the original,
// as expert pruning leaves them) load and run. With one expert left and top
// 1 every token goes to it with weight 1, so the model is the Llama whose
// MLP is that expert (w1 gate, w3 up, w2 down): the same logits. Three
// experts (an odd count) with top 2 load and give finite logits.
TEST(PrunedExpertsTest, OneExpertLeftIsTheLlamaOfThatExpert) {
  auto backend = MakeTestBackend();
  if (backend == nullptr) GTEST_SKIP() << "no CUDA device";
  const std::string moe = (fs::temp_directory_path() / ("tern-pruned-moe-" + std::to_string(getpid()))).string();
  const std::string dense = moe + "-llama";
  const std::string bin = std::getenv("TERN_BIN_DIR") != nullptr && *std::getenv("TERN_BIN_DIR") != '\0'
                              ? std::getenv("TERN_BIN_DIR")
                              : TERN_BIN_DIR;
  const std::string cmd = bin + "/tern-mkmodel --arch mixtral --preset tiny --vocab-size 512 --seed 9 --dtype float32 "
                                "--experts 1 --experts-per-token 1 --out " + moe + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  // The same weights as a Llama checkpoint.
  auto store = WeightStore::Open(moe);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<TensorSpec> specs;
  std::map<std::string, std::string> source;  // llama name -> mixtral name
  for (const std::string& name : (*store)->Names()) {
    std::string renamed = name;
    if (name.find(".block_sparse_moe.gate.") != std::string::npos) continue;  // the router
    for (const auto& [from, to] : {std::pair{".block_sparse_moe.experts.0.w1.", ".mlp.gate_proj."},
                                   std::pair{".block_sparse_moe.experts.0.w3.", ".mlp.up_proj."},
                                   std::pair{".block_sparse_moe.experts.0.w2.", ".mlp.down_proj."}}) {
      if (const size_t at = name.find(from); at != std::string::npos) {
        renamed = name.substr(0, at) + to + name.substr(at + std::string(from).size());
      }
    }
    const TensorView view = *(*store)->Get(name);
    specs.push_back({renamed, view.dtype, view.shape});
    source[renamed] = name;
  }
  fs::create_directories(dense);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(moe + "/config.json"));
  config["architectures"] = {"LlamaForCausalLM"};
  config["model_type"] = "llama";
  for (const char* key : {"num_local_experts", "num_experts_per_tok", "output_router_logits", "router_aux_loss_coef"}) {
    config.erase(key);
  }
  std::ofstream(dense + "/config.json") << config.dump(2);
  const auto fill = [&](const TensorSpec& spec, uint8_t* out) {
    const TensorView view = *(*store)->Get(source.at(spec.name));
    std::memcpy(out, view.data, std::min(view.nbytes, spec.nbytes()));
  };
  ASSERT_TRUE(WriteSafetensors(dense + "/model.safetensors", specs, fill).ok());

  const Golden golden = LoadGolden("tiny-mixtral");
  const auto prefill_logits = [&](const std::string& dir) {
    auto model = LlamaModel::Load(dir, backend.get(), {});
    EXPECT_TRUE(model.ok()) << model.status();
    auto cache = backend->AllocateKvCache((*model)->CacheSpec(32, 4));
    EXPECT_TRUE(cache.ok()) << cache.status();
    ScatteredBlocks pool(32);
    TestSequence seq(golden.token_ids[3]);
    ForwardBatch batch;
    AddToBatch(seq, int32_t(seq.tokens.size()), 4, pool, /*all_logits=*/true, &batch);
    std::vector<float> logits;
    EXPECT_TRUE((*model)->Forward(batch, **cache, &logits).ok());
    return logits;
  };
  const std::vector<float> from_moe = prefill_logits(moe);
  const std::vector<float> from_llama = prefill_logits(dense);
  ASSERT_EQ(from_moe.size(), from_llama.size());
  ASSERT_FALSE(from_moe.empty());
  const size_t vocab = 512;
  for (size_t row = 0; row < from_moe.size() / vocab; ++row) {
    ExpectLogitsNear(&from_moe[row * vocab], std::vector<float>(from_llama.begin() + row * vocab,
                                                                from_llama.begin() + (row + 1) * vocab),
                     "position " + std::to_string(row));
  }

  // Three experts, top 2: loads and decodes.
  fs::remove_all(moe);
  const std::string three = bin + "/tern-mkmodel --arch mixtral --preset tiny --vocab-size 512 --seed 9 "
                                  "--dtype float32 --experts 3 --out " + moe + " >/dev/null";
  ASSERT_EQ(std::system(three.c_str()), 0) << three;
  const std::vector<float> from_three = prefill_logits(moe);
  ASSERT_EQ(from_three.size(), from_moe.size());
  for (float v : from_three) ASSERT_TRUE(std::isfinite(v));
  // An unusable pair is refused by the tool, naming the field.
  const std::string bad = bin + "/tern-mkmodel --arch mixtral --preset tiny --vocab-size 512 --experts 1 --out " +
                          moe + "-bad 2>&1";
  EXPECT_NE(RunCommand(bad).find("num_experts_per_tok"), std::string::npos);
  fs::remove_all(moe);
  fs::remove_all(dense);
}

#if defined(TERN_TEST_CUDA_BACKEND)
// Decode steps replayed as CUDA graphs (a batch of 3 padded to 4) give the
// logits of the same steps run op by op, and the graphs are really replayed.
// Without programmatic dependent launch (CudaBackendOptions::pdl) the
// kernels run in plain stream order and give the same bits. For a mixture
// of experts in bf16 the experts' GEMMs read the routing on the device
// (Backend::MoeDeviceMaxTokens), so its decode steps are graphs too.
void ExpectReplayedDecodeStepsEqualEagerSteps(const std::string& arch, const std::string& dtype) {
  const std::string dir = MakeModel(arch, dtype);
  const Golden golden = LoadGolden("tiny-" + arch);
  struct Run {
    std::unique_ptr<CudaBackend> backend;
    std::unique_ptr<LlamaModel> model;
    std::unique_ptr<KvCache> cache;
    std::vector<std::vector<float>> logits;  // step -> rows x vocab (real rows only)
  };
  const auto run = [&](bool graphs, bool pdl = true) {
    Run r;
    CudaBackendOptions options;
    options.compute_dtype = dtype == "float32" ? DType::kF32 : DType::kBF16;
    options.cuda_graphs = graphs;
    options.pdl = pdl;
    r.backend = std::move(*CudaBackend::Create(options));
    r.model = std::move(*LlamaModel::Load(dir, r.backend.get(), {}));
    r.cache = std::move(*r.backend->AllocateKvCache(r.model->CacheSpec(96, 4)));
    ScatteredBlocks pool(96);
    std::vector<TestSequence> seqs;
    for (size_t i = 0; i < 3; ++i) seqs.emplace_back(golden.token_ids[i]);
    ForwardBatch prefill;
    for (auto& seq : seqs) AddToBatch(seq, int32_t(seq.tokens.size()), 4, pool, false, &prefill);
    std::vector<float> logits;
    EXPECT_TRUE(r.model->Forward(prefill, *r.cache, &logits).ok());
    const size_t vocab = r.model->config().vocab_size;
    for (int step = 0; step < 12; ++step) {
      ForwardBatch batch;
      for (size_t s = 0; s < seqs.size(); ++s) {
        seqs[s].tokens.push_back(int32_t(std::max_element(logits.begin() + s * vocab,
                                                          logits.begin() + (s + 1) * vocab) -
                                         (logits.begin() + s * vocab)));
        AddToBatch(seqs[s], 1, 4, pool, false, &batch);
      }
      EXPECT_TRUE(batch.Validate(r.cache->spec(), int64_t(vocab)).ok());
      const int32_t padded = r.backend->DecodeGraphBatchSize(batch.num_seqs());
      if (graphs) {
        EXPECT_EQ(padded, 4);
        PadDecodeBatch(padded, &batch);
      } else {
        EXPECT_EQ(padded, 0);
      }
      EXPECT_TRUE(r.model->Forward(batch, *r.cache, &logits).ok());
      r.logits.emplace_back(logits.begin(), logits.begin() + seqs.size() * vocab);
    }
    return r;
  };
  ASSERT_GE(golden.token_ids.size(), 3u);
  Run graphed = run(true);
  Run eager = run(false);
  ASSERT_EQ(graphed.logits.size(), eager.logits.size());
  for (size_t step = 0; step < eager.logits.size(); ++step) {
    ExpectLogitsNear(graphed.logits[step].data(), eager.logits[step], "step " + std::to_string(step));
  }
  const auto stats = graphed.backend->graph_stats();
  EXPECT_EQ(stats.captured, 1);
  EXPECT_EQ(stats.replayed, 10);  // step 1 sizes the buffers, step 2 records, the rest replay
  EXPECT_EQ(eager.backend->graph_stats().replayed, 0);
  for (const bool graphs : {true, false}) {
    Run plain = run(graphs, /*pdl=*/false);
    const Run& with_pdl = graphs ? graphed : eager;
    ASSERT_EQ(plain.logits.size(), with_pdl.logits.size());
    for (size_t step = 0; step < plain.logits.size(); ++step) {
      EXPECT_EQ(plain.logits[step], with_pdl.logits[step]) << "graphs " << graphs << ", step " << step;
    }
    EXPECT_EQ(plain.backend->graph_stats().replayed, graphs ? 10 : 0);
  }
  fs::remove_all(dir);
}

TEST(CudaGraphTest, ReplayedDecodeStepsEqualEagerSteps) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  ExpectReplayedDecodeStepsEqualEagerSteps("llama", "float32");
}

TEST(CudaGraphTest, MixtureOfExpertsDecodeStepsReplayAsGraphs) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  ExpectReplayedDecodeStepsEqualEagerSteps("mixtral", "bfloat16");
}

// The tiny Mixtral's MoE layers at up to 64 tokens (4 experts, top 2) run the
// expert GEMM over offsets read on the device; past that, the grouped cuBLAS
// GEMM sized on the host. The golden's 40-token prompt gives the same logits
// alone (expert GEMM) as in one step with the other three prompts (65
// tokens: grouped GEMM), within bf16 rounding.
TEST(CudaMoeTest, ExpertGemmStepsMatchGroupedGemmSteps) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  const std::string dir = MakeModel("mixtral", "bfloat16");
  const Golden golden = LoadGolden("tiny-mixtral");
  ASSERT_EQ(golden.token_ids.size(), 4u);
  CudaBackendOptions options;
  options.compute_dtype = DType::kBF16;
  options.cuda_graphs = false;
  auto backend = std::move(*CudaBackend::Create(options));
  auto model = std::move(*LlamaModel::Load(dir, backend.get(), {}));
  auto cache = std::move(*backend->AllocateKvCache(model->CacheSpec(96, 4)));
  // Two rows a token (top 2), at most 32 rows an expert on average.
  ASSERT_TRUE(model->CanRunAsGraph(64));
  ASSERT_FALSE(model->CanRunAsGraph(65));
  const int64_t vocab = model->config().vocab_size;
  const auto prefill = [&](const std::vector<size_t>& cases) {
    ScatteredBlocks pool(96);
    std::vector<TestSequence> seqs;
    for (size_t c : cases) seqs.emplace_back(golden.token_ids[c]);
    ForwardBatch batch;
    for (auto& seq : seqs) AddToBatch(seq, int32_t(seq.tokens.size()), 4, pool, /*all_logits=*/true, &batch);
    std::vector<float> logits;
    EXPECT_TRUE(model->Forward(batch, *cache, &logits).ok());
    return logits;
  };
  const std::vector<float> alone = prefill({3});
  const std::vector<float> together = prefill({0, 1, 2, 3});
  const size_t rows = golden.token_ids[3].size();
  const size_t first = together.size() / size_t(vocab) - rows;  // case 3's rows come last
  ASSERT_EQ(alone.size(), rows * size_t(vocab));
  for (size_t r = 0; r < rows; ++r) {
    double max_diff = 0, max_ref = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      const float want = together[(first + r) * size_t(vocab) + size_t(v)];
      max_diff = std::max(max_diff, std::abs(double(alone[r * size_t(vocab) + size_t(v)]) - want));
      max_ref = std::max(max_ref, std::abs(double(want)));
    }
    EXPECT_LT(max_diff / max_ref, 3e-2) << "position " << r << ": max abs diff " << max_diff << " of " << max_ref;
  }
  fs::remove_all(dir);
}
#endif

TEST(ForwardBatchTest, PadDecodeBatchAddsInertRows) {
  ForwardBatch batch;
  batch.token_ids = {5, 6};
  batch.positions = {3, 9};
  batch.slots = {3, 25};
  batch.query_start = {0, 1, 2};
  batch.context_lens = {4, 10};
  batch.block_indptr = {0, 1, 3};
  batch.block_ids = {0, 1, 2};
  batch.logits_rows = {0, 1};
  ASSERT_TRUE(batch.IsDecodeOnly());
  PadDecodeBatch(4, &batch);
  EXPECT_EQ(batch.num_seqs(), 4);
  EXPECT_EQ(batch.token_ids, (std::vector<int32_t>{5, 6, 0, 0}));
  EXPECT_EQ(batch.slots, (std::vector<int32_t>{3, 25, -1, -1}));
  EXPECT_EQ(batch.query_start, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(batch.context_lens, (std::vector<int32_t>{4, 10, 1, 1}));
  EXPECT_EQ(batch.block_indptr, (std::vector<int32_t>{0, 1, 3, 4, 5}));
  EXPECT_EQ(batch.logits_rows, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_TRUE(batch.IsDecodeOnly());
  ForwardBatch prefill = batch;
  prefill.logits_rows.pop_back();
  EXPECT_FALSE(prefill.IsDecodeOnly());
}

// Greedy decoding of the golden prompt through LlmModelRunner::Execute, one
// step per token, over scattered KV blocks; the sampled tokens with logprobs.
// `warmup_tokens`: the runner's start-up warm-up (LlmModelRunnerOptions).
// The golden greedy continuation through `runner` (blocks of 4 tokens out of
// `num_blocks`), step by step as the engine drives it.
std::vector<SampledToken> RunGreedyOn(LlmModelRunner& runner, const Golden& golden, int32_t num_blocks) {
  constexpr int32_t kBlockSize = 4;
  SamplingParams params;
  params.temperature = 0.0f;
  params.logprobs = 3;
  SequenceSamplingState state(1, 0, golden.greedy_prompt);
  std::vector<int32_t> tokens = golden.greedy_prompt;
  std::vector<int32_t> blocks;
  int32_t computed = 0;
  std::vector<SampledToken> sampled;
  for (size_t step = 0; step < golden.greedy_continuation.size(); ++step) {
    while (int32_t(blocks.size()) * kBlockSize < int32_t(tokens.size())) {
      blocks.push_back(int32_t(blocks.size()) * 7 % num_blocks);  // distinct, not contiguous
    }
    SequenceStep s;
    s.seq_id = 1;
    s.token_ids = absl::MakeConstSpan(tokens).subspan(computed);
    s.num_computed_tokens = computed;
    const std::vector<std::vector<int32_t>> tables = {blocks};
    s.block_tables = tables;
    s.sample = true;
    s.sampling = &params;
    s.sampling_state = &state;
    StepPlan plan;
    plan.sequences.push_back(s);
    auto result = runner.Execute(plan);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok() || result->outputs.size() != 1) return sampled;
    EXPECT_TRUE(result->outputs[0].token.ok()) << result->outputs[0].token.status();
    if (!result->outputs[0].token.ok()) return sampled;
    const SampledToken token = *result->outputs[0].token;
    sampled.push_back(token);
    computed = int32_t(tokens.size());
    tokens.push_back(token.token_id);
    state.AppendOutputToken(token.token_id);
  }
  return sampled;
}

std::vector<SampledToken> RunGreedy(std::unique_ptr<Backend> backend, const std::string& dir, const Golden& golden,
                                    int32_t warmup_tokens = 0) {
  LlmModelRunnerOptions options;
  options.model_dir = dir;
  options.block_size = 4;
  options.num_blocks = 64;
  options.warmup_tokens = warmup_tokens;
  auto runner = LlmModelRunner::Create(std::move(backend), options);
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (!runner.ok()) return {};
  return RunGreedyOn(**runner, golden, options.num_blocks);
}

TEST(LlmModelRunnerTest, GreedyTokensEqualTransformersAndTheCpuRunner) {
  auto backend = MakeTestBackend();
  if (backend == nullptr) GTEST_SKIP() << "no CUDA device";
  const Golden golden = LoadGolden("tiny-llama");
  const std::string dir = MakeModel("llama", "float32");
  const std::vector<SampledToken> sampled = RunGreedy(std::move(backend), dir, golden);
  std::vector<int32_t> ids;
  for (const auto& t : sampled) ids.push_back(t.token_id);
  EXPECT_EQ(ids, golden.greedy_continuation);
  for (const auto& t : sampled) {
    ASSERT_TRUE(t.logprob.has_value());
    ASSERT_EQ(t.top_logprobs.size(), 3u);
    EXPECT_EQ(t.top_logprobs[0].token_id, t.token_id);
    EXPECT_FLOAT_EQ(t.top_logprobs[0].logprob, *t.logprob);
  }
#if defined(TERN_TEST_CUDA_BACKEND)
  const std::vector<SampledToken> cpu = RunGreedy(std::make_unique<CpuBackend>(), dir, golden);
  ASSERT_EQ(cpu.size(), sampled.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_EQ(sampled[i].token_id, cpu[i].token_id) << "step " << i;
    EXPECT_NEAR(*sampled[i].logprob, *cpu[i].logprob, 1e-3) << "step " << i;
    for (size_t j = 0; j < cpu[i].top_logprobs.size(); ++j) {
      EXPECT_EQ(sampled[i].top_logprobs[j].token_id, cpu[i].top_logprobs[j].token_id) << "step " << i;
      EXPECT_NEAR(sampled[i].top_logprobs[j].logprob, cpu[i].top_logprobs[j].logprob, 1e-3) << "step " << i;
    }
  }
#endif
  fs::remove_all(dir);
}

// The start-up warm-up writes KV into blocks the scheduler will hand out;
// what runs after it is exactly what runs without it. 300 tokens ask for more
// than the 64 x 4-slot cache holds, so the warm-up shrinks to fit.
TEST(LlmModelRunnerTest, WarmupLeavesResultsUnchanged) {
  auto backend = MakeTestBackend();
  if (backend == nullptr) GTEST_SKIP() << "no CUDA device";
  const Golden golden = LoadGolden("tiny-llama");
  const std::string dir = MakeModel("llama", "float32");
  const std::vector<SampledToken> cold = RunGreedy(std::move(backend), dir, golden);
  const std::vector<SampledToken> warm = RunGreedy(MakeTestBackend(), dir, golden, /*warmup_tokens=*/300);
  ASSERT_EQ(warm.size(), cold.size());
  ASSERT_FALSE(cold.empty());
  for (size_t i = 0; i < cold.size(); ++i) {
    EXPECT_EQ(warm[i].token_id, cold[i].token_id) << "step " << i;
    EXPECT_EQ(*warm[i].logprob, *cold[i].logprob) << "step " << i;
  }
  LlmModelRunnerOptions tiny;
  tiny.model_dir = dir;
  tiny.block_size = 4;
  tiny.num_blocks = 1;  // room for 3 prompt tokens and the decoded one
  tiny.warmup_tokens = 512;
  auto runner = LlmModelRunner::Create(MakeTestBackend(), tiny);
  EXPECT_TRUE(runner.ok()) << runner.status();
  fs::remove_all(dir);
}

#if defined(TERN_TEST_CUDA_BACKEND)
// With warmup_graph_seqs, Create records every decode graph the runner can
// meet (batch buckets 1, 2 and 4 at context capacities 256, 512 and 1024 for
// 4 sequences of at most 600 tokens); decoding afterwards replays them and
// records none, and gives the tokens of a runner without the warm-up.
TEST(LlmModelRunnerTest, GraphWarmupRecordsEveryDecodeGraphUpFront) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  const Golden golden = LoadGolden("tiny-llama");
  const std::string dir = MakeModel("llama", "float32");
  CudaBackendOptions backend_options;
  backend_options.compute_dtype = DType::kF32;
  auto backend = CudaBackend::Create(backend_options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  const CudaBackend* cuda = backend->get();
  LlmModelRunnerOptions options;
  options.model_dir = dir;
  options.block_size = 4;
  options.num_blocks = 200;
  options.max_context_length = 600;
  options.warmup_tokens = 64;
  options.warmup_graph_seqs = 4;
  auto runner = LlmModelRunner::Create(std::move(*backend), options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const CudaBackend::GraphStats warmed = cuda->graph_stats();
  EXPECT_EQ(warmed.captured, 9);

  const std::vector<SampledToken> tokens = RunGreedyOn(**runner, golden, options.num_blocks);
  const CudaBackend::GraphStats served = cuda->graph_stats();
  EXPECT_EQ(served.captured, warmed.captured);
  EXPECT_EQ(served.replayed - warmed.replayed, int64_t(golden.greedy_continuation.size()) - 1);  // all but the prefill
  const std::vector<SampledToken> cold = RunGreedy(MakeTestBackend(), dir, golden);
  ASSERT_EQ(tokens.size(), cold.size());
  for (size_t i = 0; i < cold.size(); ++i) EXPECT_EQ(tokens[i].token_id, cold[i].token_id) << "step " << i;
  fs::remove_all(dir);
}
#endif

TEST(ForwardBatchTest, ValidateRejectsInconsistentBatches) {
  KvCacheSpec spec{1, 4, 4, 1, 8, KvCacheDtype::kAuto, {}, {}, {}};
  ForwardBatch batch;
  batch.token_ids = {1, 2};
  batch.positions = {0, 1};
  batch.slots = {8, 9};
  batch.query_start = {0, 2};
  batch.context_lens = {2};
  batch.block_indptr = {0, 1};
  batch.block_ids = {2};
  batch.logits_rows = {1};
  EXPECT_TRUE(batch.Validate(spec, 16).ok());
  auto bad = batch;
  bad.slots = {8, 10};
  EXPECT_FALSE(bad.Validate(spec, 16).ok());
  bad = batch;
  bad.token_ids = {1, 16};
  EXPECT_FALSE(bad.Validate(spec, 16).ok());
  bad = batch;
  bad.block_ids = {4};
  EXPECT_FALSE(bad.Validate(spec, 16).ok());
  bad = batch;
  bad.positions = {1, 2};
  EXPECT_FALSE(bad.Validate(spec, 16).ok());
  bad = batch;
  bad.logits_rows = {2};
  EXPECT_FALSE(bad.Validate(spec, 16).ok());
}

}  // namespace
}  // namespace tern::runtime
