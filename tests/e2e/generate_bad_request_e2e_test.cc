// End-to-end: bad Generate requests (38 of them, some not valid protobuf)
// answered with their exact status by the real ternd while another request
// streams.
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"
#include "tests/e2e/generate_e2e_helpers.h"

namespace tern::testing {
namespace {

// Sends `payload` (a serialized request, possibly not valid protobuf) as
// the request of server-streaming `method`, bypassing the stub's
// serialization. Counts the messages that came back.
grpc::Status RawServerStreamingCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                                    const std::string& payload, const CallOptions& options, int* messages) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&context, method, &cq);
  void* tag = nullptr;
  bool ok = false;
  const auto step = [&](void* expected) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, expected);
    return ok;
  };
  int start = 1, write = 2, done = 3, read = 4, finish = 5;
  call->StartCall(&start);
  step(&start);
  grpc::Slice slice(payload);
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, &write);
  step(&write);
  call->WritesDone(&done);
  step(&done);
  grpc::ByteBuffer response;
  *messages = 0;
  while (true) {
    call->Read(&response, &read);
    if (!step(&read)) break;
    ++*messages;
  }
  grpc::Status status;
  call->Finish(&status, &finish);
  step(&finish);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

constexpr char kKey[] = "key-aaaaaaaa";

TEST(GenerateE2eTest, BadRequestsGetPreciseStatusWhileAnotherRequestStreams) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, kModel);
  const std::string config = dir.Write("config.json", R"({
    "models": [{"name": "tiny-llama", "path": ")" + model + R"("}],
    "tenants": [{"name": "team-a", "apiKeys": ["key-aaaaaaaa"]},
                {"name": "team-b", "apiKeys": ["key-bbbbbbbb"], "allowedModels": ["another-model"]}]
  })");
  DaemonProcess daemon = StartOrDie({"--config", config});
  auto channel = Connect(daemon);
  auto stub = tern::v1::Llm::NewStub(channel);
  const CallOptions auth{.api_key = kKey};

  // The good stream, alone first: what it must keep producing.
  const tern::v1::GenerateRequest good = Greedy("The quick brown fox", 48);
  const StreamResult alone = Stream(*stub, good, auth);
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();

  // Good streams back to back on the same channel until told to stop.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<StreamResult> background;
  std::thread streamer([&] {
    while (!stop) {
      StreamResult result = Stream(*stub, good, auth);
      std::lock_guard<std::mutex> lock(mu);
      background.push_back(std::move(result));
    }
  });
  const auto streams_done = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return background.size();
  };
  ASSERT_TRUE(WaitUntil([&] { return streams_done() > 0; }, seconds(30)));

  const auto generate = [&](const tern::v1::GenerateRequest& request, const CallOptions& options = {.api_key = kKey}) {
    return Stream(*stub, request, options).status;
  };
  const auto chat = [&](const tern::v1::ChatRequest& request) { return StreamChat(*stub, request, auth).status; };
  const auto base = [] { return Greedy("Hello", 4); };
  const auto with = [&](const std::function<void(tern::v1::GenerateRequest&)>& change) {
    tern::v1::GenerateRequest request = base();
    change(request);
    return generate(request);
  };
  const auto chat_request = [](const std::string& role) {
    tern::v1::ChatRequest request;
    request.set_model(kModel);
    auto* message = request.add_messages();
    message->set_role(role);
    message->set_content("Hi");
    return request;
  };
  // The serialized request with "XXXX" in its text swapped for bytes that are
  // not UTF-8. proto3 strings must be UTF-8, so protobuf refuses to parse the
  // message and no tern code sees it. gRPC 1.51's callback API then ends the
  // call with UNIMPLEMENTED and an empty message (CallbackServerStreamingHandler
  // falls back to an UnimplementedWriteReactor when deserialization fails; the
  // synchronous API would say INTERNAL). Misleading, but a clean refusal.
  const auto bad_utf8 = [&](const std::string& bytes) {
    tern::v1::GenerateRequest request = base();
    request.set_text("Hello XXXX world");
    std::string payload = request.SerializeAsString();
    const size_t at = payload.find("XXXX");
    EXPECT_NE(at, std::string::npos);
    payload.replace(at, 4, bytes);
    int messages = -1;
    const grpc::Status status = RawServerStreamingCall(channel, "/tern.v1.Llm/Generate", payload, auth, &messages);
    EXPECT_EQ(messages, 0);
    return status;
  };

  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    grpc::StatusCode code;
    std::string message;  // a part of the error message
  };
  const std::string ten_mib(10 << 20, 'a');
  const std::vector<Case> cases = {
      {"empty text", [&] { return with([](auto& r) { r.set_text(""); }); }, grpc::INVALID_ARGUMENT, "text: is empty"},
      {"no prompt", [&] { return with([](auto& r) { r.clear_prompt(); }); }, grpc::INVALID_ARGUMENT, "prompt"},
      {"empty token_ids", [&] { return with([](auto& r) { r.mutable_token_ids(); }); }, grpc::INVALID_ARGUMENT,
       "token_ids: is empty"},
      {"prompt over the context",
       [&] {
         return with([](auto& r) {
           for (int i = 0; i <= kContext; ++i) r.mutable_token_ids()->add_ids(100 + i % 50);
         });
       },
       grpc::INVALID_ARGUMENT, "the context holds 2048"},
      {"max_tokens 0", [&] { return with([](auto& r) { r.mutable_sampling()->set_max_tokens(0); }); },
       grpc::INVALID_ARGUMENT, "sampling.max_tokens"},
      {"max_tokens over the context",
       [&] { return with([](auto& r) { r.mutable_sampling()->set_max_tokens(1'000'000); }); }, grpc::INVALID_ARGUMENT,
       "exceeds the context of 2048"},
      {"n huge", [&] { return with([](auto& r) { r.mutable_sampling()->set_n(1000); }); }, grpc::INVALID_ARGUMENT,
       "sampling.n"},
      {"NaN temperature",
       [&] { return with([](auto& r) { r.mutable_sampling()->set_temperature(std::nanf("")); }); },
       grpc::INVALID_ARGUMENT, "sampling.temperature: must be a finite number"},
      {"unknown model", [&] { return with([](auto& r) { r.set_model("no-such-model"); }); }, grpc::NOT_FOUND,
       "no-such-model"},
      {"bad UTF-8 in text", [&] { return bad_utf8("\xff\xfe\xc3\x28"); }, grpc::UNIMPLEMENTED, ""},
      {"10 MiB prompt over the gRPC message limit", [&] { return with([&](auto& r) { r.set_text(ten_mib); }); },
       grpc::RESOURCE_EXHAUSTED, "larger than max"},
      {"2 MiB prompt over limits.max_prompt_bytes",
       [&] { return with([&](auto& r) { r.set_text(ten_mib.substr(0, 2 << 20)); }); }, grpc::INVALID_ARGUMENT,
       "the limit is 1048576"},
      {"empty stop string", [&] { return with([](auto& r) { r.mutable_sampling()->add_stop(""); }); },
       grpc::INVALID_ARGUMENT, "sampling.stop[0]: is empty"},
      {"17 stop strings",
       [&] {
         return with([](auto& r) {
           for (int i = 0; i < 17; ++i) r.mutable_sampling()->add_stop("stop" + std::to_string(i));
         });
       },
       grpc::INVALID_ARGUMENT, "17 stop strings; the limit is 16"},
      {"stop string over 256 bytes",
       [&] { return with([](auto& r) { r.mutable_sampling()->add_stop(std::string(257, 's')); }); },
       grpc::INVALID_ARGUMENT, "sampling.stop[0]"},
      {"wrong tenant key", [&] { return generate(base(), {.api_key = "wrong-key-000"}); }, grpc::UNAUTHENTICATED, ""},
      {"no key", [&] { return generate(base(), {}); }, grpc::UNAUTHENTICATED, "authorization"},
      {"tenant may not use the model", [&] { return generate(base(), {.api_key = "key-bbbbbbbb"}); },
       grpc::PERMISSION_DENIED, "team-b"},
      {"token id out of vocabulary", [&] { return with([](auto& r) { r.mutable_token_ids()->add_ids(kVocab); }); },
       grpc::INVALID_ARGUMENT, "outside the vocabulary"},
      {"negative token id", [&] { return with([](auto& r) { r.mutable_token_ids()->add_ids(-1); }); },
       grpc::INVALID_ARGUMENT, "token_ids[0]: is negative"},
      {"top_p 0", [&] { return with([](auto& r) { r.mutable_sampling()->set_top_p(0.0f); }); },
       grpc::INVALID_ARGUMENT, "sampling.top_p"},
      {"logprobs 21", [&] { return with([](auto& r) { r.mutable_sampling()->set_logprobs(21); }); },
       grpc::INVALID_ARGUMENT, "sampling.logprobs"},
      {"priority 101", [&] { return with([](auto& r) { r.set_priority(101); }); }, grpc::INVALID_ARGUMENT,
       "priority"},
      {"unknown decoding_mode",
       [&] { return with([](auto& r) { r.set_decoding_mode(static_cast<tern::v1::DecodingMode>(7)); }); },
       grpc::INVALID_ARGUMENT, "decoding_mode: 7"},
      {"negative stop token id",
       [&] { return with([](auto& r) { r.mutable_sampling()->add_stop_token_ids(-2); }); }, grpc::INVALID_ARGUMENT,
       "sampling.stop_token_ids[0]"},
      {"request_id over 128 bytes", [&] { return with([](auto& r) { r.set_request_id(std::string(129, 'r')); }); },
       grpc::INVALID_ARGUMENT, "request_id"},
      {"chat: unknown role", [&] { return chat(chat_request("wizard")); }, grpc::INVALID_ARGUMENT,
       "messages[0].role"},
      {"chat: no messages",
       [&] {
         tern::v1::ChatRequest request = chat_request("user");
         request.clear_messages();
         return chat(request);
       },
       grpc::INVALID_ARGUMENT, "messages: is empty"},
      {"chat: model without a chat template", [&] { return chat(chat_request("user")); },
       grpc::FAILED_PRECONDITION, "chat template"},
      {"sot: an empty outline point",
       [&] { return with([](auto& r) { r.mutable_sot()->add_outline("a"); r.mutable_sot()->add_outline("  "); }); },
       grpc::INVALID_ARGUMENT, "sot.outline[1]: is empty"},
      {"sot: 1,000 outline points",
       [&] {
         return with([](auto& r) {
           for (int i = 0; i < 1000; ++i) r.mutable_sot()->add_outline("point");
         });
       },
       grpc::INVALID_ARGUMENT, "sot.outline: 1000 points; the limit is 64"},
      {"sot: a 1 MB outline point",
       [&] {
         return with([&](auto& r) {
           r.mutable_sot()->add_outline(ten_mib.substr(0, 1 << 20));
           r.mutable_sot()->add_outline("b");
         });
       },
       grpc::INVALID_ARGUMENT, "sot.outline[0]: is 1048576 bytes; the limit is 1024"},
      {"sot: one outline point", [&] { return with([](auto& r) { r.mutable_sot()->add_outline("only"); }); },
       grpc::INVALID_ARGUMENT, "has 1 point"},
      {"sot: a point with a line break",
       [&] { return with([](auto& r) { r.mutable_sot()->add_outline("a\nb"); r.mutable_sot()->add_outline("c"); }); },
       grpc::INVALID_ARGUMENT, "sot.outline[0]: holds a line break"},
      {"sot: n = 2",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
           r.mutable_sampling()->set_n(2);
         });
       },
       grpc::INVALID_ARGUMENT, "sampling.n: 2 choices"},
      {"sot: token ids",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
           r.mutable_token_ids()->add_ids(5);
         });
       },
       grpc::INVALID_ARGUMENT, "needs the question as text"},
      {"sot: options with NORMAL decoding",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_NORMAL);
           r.mutable_sot()->set_ordered(true);
         });
       },
       grpc::INVALID_ARGUMENT, "decoding_mode is NORMAL"},
      {"sot: max_point_tokens 0",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
           r.mutable_sot()->set_max_point_tokens(0);
         });
       },
       grpc::INVALID_ARGUMENT, "sot.max_point_tokens"},
  };
  ASSERT_GE(cases.size(), 15u);

  const auto bad_begin = std::chrono::steady_clock::now();
  for (const Case& c : cases) {
    const grpc::Status status = c.call();
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.message), std::string::npos)
        << c.name << ": expected \"" << c.message << "\" in \"" << status.error_message() << "\"";
  }
  const auto bad_end = std::chrono::steady_clock::now();
  stop = true;
  streamer.join();

  // Every good stream ended OK with the text it has alone, and chunks kept
  // arriving while the bad requests were answered.
  ASSERT_FALSE(background.empty());
  int chunks_during = 0;
  for (const StreamResult& result : background) {
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.tokens, 48);
    EXPECT_EQ(result.text, alone.text);
    for (const auto& at : result.chunk_times) chunks_during += at >= bad_begin && at <= bad_end;
  }
  EXPECT_GT(chunks_during, 0);

  EXPECT_TRUE(DaemonAlive(daemon));
  EXPECT_TRUE(Serving(daemon));
  // The raw path itself works: the same request with valid text streams.
  int messages = 0;
  tern::v1::GenerateRequest valid = base();
  const grpc::Status raw_ok =
      RawServerStreamingCall(channel, "/tern.v1.Llm/Generate", valid.SerializeAsString(), auth, &messages);
  EXPECT_TRUE(raw_ok.ok()) << raw_ok.error_message();
  EXPECT_GE(messages, 2);
  EXPECT_TRUE(WaitUntil([&] { return EngineIdle(daemon); }, seconds(1)));
}

}  // namespace
}  // namespace tern::testing
