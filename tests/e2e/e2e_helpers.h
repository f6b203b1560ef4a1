// Helpers shared by the end-to-end tests that talk to a real ternd over
// loopback: temp dirs, tiny models made by tern-mkmodel, gRPC channels,
// reading a whole Generate/Chat stream, and /metrics values.
//
// Header-only; a test target that includes it defines TERN_TEST_DATA_DIR
// (tests/data) and links tern_e2e_support, tern_proto, gRPC::grpc++.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"

namespace tern::testing {

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tern-e2e-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { std::filesystem::remove_all(path_); }
  // Writes `text` to `name` (parents created); returns its path.
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string path = Path(name);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }
  std::string Path(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Starts ternd with `args`; a failure to start ends the test binary (every
// later step would need the daemon).
inline DaemonProcess StartOrDie(const std::vector<std::string>& args) {
  std::string error;
  auto daemon = DaemonProcess::Start(args, &error);
  if (!daemon) {
    ADD_FAILURE() << error;
    std::abort();
  }
  return std::move(*daemon);
}

inline std::shared_ptr<grpc::Channel> Connect(const DaemonProcess& daemon) {
  return grpc::CreateChannel(daemon.grpc_target(), grpc::InsecureChannelCredentials());
}

inline void SetDeadline(grpc::ClientContext* context, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  context->set_deadline(std::chrono::system_clock::now() + timeout);
}

// A tiny random Llama (tern-mkmodel --preset tiny, seed 0) in dir/name with
// the real tokenizer from tests/data/tokenizers/<tokenizer> ("llama2": vocab
// 32000, no chat template; "llama3": vocab 128256 with a chat template).
inline std::string MakeTinyModel(const TempDir& dir, const std::string& name, const std::string& tokenizer = "llama2",
                                 const std::vector<std::string>& extra_args = {}) {
  const std::string out = dir.Path(name);
  std::vector<std::string> argv = {BinaryPath("tern-mkmodel"), "--arch", "llama", "--preset", "tiny", "--seed", "0",
                                   "--tokenizer", std::string(TERN_TEST_DATA_DIR) + "/tokenizers/" + tokenizer,
                                   "--out", out};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  const ProcessResult made = RunProcess(argv, std::chrono::seconds(120));
  EXPECT_EQ(made.exit_code, 0) << made.output;
  return out;
}

// One choice of a Generate/Chat stream, put together from its chunks.
struct ChoiceResult {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<tern::v1::Logprobs> logprobs;
  int finish_chunks = 0;  // chunks of this choice with finish_reason set
  tern::v1::FinishReason finish = tern::v1::FINISH_REASON_UNSPECIFIED;
  std::string stop_reason;
};

struct StreamResult {
  grpc::Status status;
  std::string text;  // all choices' text in arrival order (use `choices` when n > 1)
  int tokens = 0;    // token ids over all choices
  int chunks = 0;    // messages received
  tern::v1::FinishReason finish = tern::v1::FINISH_REASON_UNSPECIFIED;  // the last finish seen
  tern::v1::Usage usage;
  int usage_messages = 0;
  std::map<int, ChoiceResult> choices;  // by index
  std::vector<std::chrono::steady_clock::time_point> chunk_times;
  std::vector<std::string> request_ids;  // each message's request_id
};

// Reads `reader` to its end. `on_chunk` (optional) runs after each message.
inline StreamResult ReadStream(grpc::ClientReaderInterface<tern::v1::GenerateResponse>* reader,
                               const std::function<void(const tern::v1::GenerateResponse&)>& on_chunk = {}) {
  StreamResult result;
  tern::v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++result.chunks;
    result.chunk_times.push_back(std::chrono::steady_clock::now());
    result.request_ids.push_back(response.request_id());
    for (const auto& choice : response.choices()) {
      ChoiceResult& c = result.choices[choice.index()];
      c.text += choice.text();
      c.token_ids.insert(c.token_ids.end(), choice.token_ids().begin(), choice.token_ids().end());
      c.logprobs.insert(c.logprobs.end(), choice.logprobs().begin(), choice.logprobs().end());
      result.text += choice.text();
      result.tokens += choice.token_ids_size();
      if (choice.finish_reason() != tern::v1::FINISH_REASON_UNSPECIFIED) {
        ++c.finish_chunks;
        c.finish = choice.finish_reason();
        c.stop_reason = choice.stop_reason();
        result.finish = choice.finish_reason();
      }
    }
    if (response.has_usage()) {
      result.usage = response.usage();
      ++result.usage_messages;
    }
    if (on_chunk) on_chunk(response);
  }
  result.status = reader->Finish();
  return result;
}

// Per-call client settings.
struct CallOptions {
  std::string api_key;  // sent as "authorization: Bearer <key>" when set
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};

inline void Prepare(grpc::ClientContext* context, const CallOptions& options) {
  if (!options.api_key.empty()) context->AddMetadata("authorization", "Bearer " + options.api_key);
  SetDeadline(context, options.timeout);
}

inline StreamResult Stream(tern::v1::Llm::Stub& stub, const tern::v1::GenerateRequest& request,
                           const CallOptions& options = {}) {
  grpc::ClientContext context;
  Prepare(&context, options);
  return ReadStream(stub.Generate(&context, request).get());
}

inline StreamResult StreamChat(tern::v1::Llm::Stub& stub, const tern::v1::ChatRequest& request,
                               const CallOptions& options = {}) {
  grpc::ClientContext context;
  Prepare(&context, options);
  return ReadStream(stub.Chat(&context, request).get());
}

// The value of `series` (name and labels exactly as exposed, e.g.
// `tern_num_requests_running{model="m"}`) in a Prometheus text scrape.
// Greedy, exactly `max_tokens` tokens (EOS ignored): a deterministic request,
// the reference a faulted stream is compared with.
inline tern::v1::GenerateRequest GreedyRequest(const std::string& model, const std::string& text, int max_tokens) {
  tern::v1::GenerateRequest request;
  request.set_model(model);
  request.set_text(text);
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

inline std::optional<double> MetricValue(const std::string& scrape, const std::string& series) {
  const std::string prefix = series + " ";
  size_t pos = 0;
  while ((pos = scrape.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || scrape[pos - 1] == '\n') return std::strtod(scrape.c_str() + pos + prefix.size(), nullptr);
    pos += prefix.size();
  }
  return std::nullopt;
}

inline std::optional<double> ScrapeMetric(const DaemonProcess& daemon, const std::string& series) {
  const HttpReply reply = HttpGet(daemon.http_port(), "/metrics");
  if (reply.status != 200) return std::nullopt;
  return MetricValue(reply.body, series);
}

// Polls `condition` every few milliseconds until it holds or `timeout`
// passes; true when it held. For state only observable by asking (metrics).
inline bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace tern::testing
