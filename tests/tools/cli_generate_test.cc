// tern generate / chat against an in-process fake tern.v1.Llm server on
// loopback: the request the flags build, and what reaches stdout and stderr
// for plain and Skeleton-of-Thought streams, on a pipe, on a terminal and
// as JSON.
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/cli/generate_command.h"

namespace tern::cli {
namespace {

constexpr char kAnswer[] = "1. Tea Steep it.\n2. Milk Add a dash.";

// Normal requests get "Hello world" in two chunks. SKELETON_OF_THOUGHT (or
// an outline) gets a skeleton (none with an outline), two points
// interleaved, and a SotReport. Model "fail" sends one chunk, then fails
// with RESOURCE_EXHAUSTED.
class FakeLlm final : public tern::v1::Llm::Service {
 public:
  grpc::Status Generate(grpc::ServerContext*, const tern::v1::GenerateRequest* request,
                        grpc::ServerWriter<tern::v1::GenerateResponse>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      generate_ = *request;
    }
    return Stream(request->model(), request->decoding_mode(), request->sot(), writer);
  }
  grpc::Status Chat(grpc::ServerContext*, const tern::v1::ChatRequest* request,
                    grpc::ServerWriter<tern::v1::GenerateResponse>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      chat_ = *request;
    }
    return Stream(request->model(), request->decoding_mode(), request->sot(), writer);
  }

  tern::v1::GenerateRequest generate() {
    absl::MutexLock lock(&mu_);
    return generate_;
  }
  tern::v1::ChatRequest chat() {
    absl::MutexLock lock(&mu_);
    return chat_;
  }

 private:
  static void Add(tern::v1::GenerateResponse* r, tern::v1::ChoicePart part, int index, const std::string& text,
                  bool last) {
    tern::v1::Choice* c = r->add_choices();
    c->set_part(part);
    c->set_index(index);
    c->set_text(text);
    c->add_token_ids(5);
    if (last) c->set_finish_reason(tern::v1::FINISH_REASON_STOP);
  }

  grpc::Status Stream(const std::string& model, tern::v1::DecodingMode mode, const tern::v1::SkeletonOfThought& sot,
                      grpc::ServerWriter<tern::v1::GenerateResponse>* writer) {
    tern::v1::GenerateResponse r;
    if (model == "fail") {
      Add(&r, tern::v1::CHOICE_PART_ANSWER, 0, "partial", false);
      writer->Write(r);
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full");
    }
    const bool use_sot = mode == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT || sot.outline_size() > 0;
    if (!use_sot) {
      Add(&r, tern::v1::CHOICE_PART_ANSWER, 0, "Hello", false);
      writer->Write(r);
      r.Clear();
      Add(&r, tern::v1::CHOICE_PART_ANSWER, 0, " world", true);
      writer->Write(r);
      r.Clear();
      r.mutable_usage()->set_completion_tokens(2);
      r.set_decoding_mode(tern::v1::DECODING_MODE_NORMAL);
      writer->Write(r);
      return grpc::Status::OK;
    }
    if (sot.outline_size() == 0) {
      Add(&r, tern::v1::CHOICE_PART_SKELETON, 0, "1. Tea\n", false);
      writer->Write(r);
      r.Clear();
      Add(&r, tern::v1::CHOICE_PART_SKELETON, 0, "2. Milk", true);
      writer->Write(r);
      r.Clear();
    }
    Add(&r, tern::v1::CHOICE_PART_POINT, 1, "2. Milk Add", false);
    Add(&r, tern::v1::CHOICE_PART_POINT, 0, "1. Tea Steep", false);
    writer->Write(r);
    r.Clear();
    Add(&r, tern::v1::CHOICE_PART_POINT, 0, " it.", true);
    writer->Write(r);
    r.Clear();
    Add(&r, tern::v1::CHOICE_PART_POINT, 1, " a dash. ", true);
    writer->Write(r);
    r.Clear();
    r.mutable_usage()->set_prompt_tokens(9);
    r.mutable_usage()->set_completion_tokens(8);
    r.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
    tern::v1::SotReport* report = r.mutable_sot();
    report->set_router_decision(mode == tern::v1::DECODING_MODE_AUTO ? tern::v1::ROUTER_DECISION_SKELETON_OF_THOUGHT
                                                                     : tern::v1::ROUTER_DECISION_NOT_ROUTED);
    if (mode == tern::v1::DECODING_MODE_AUTO) report->set_router("trained");
    report->set_skeleton("1. Tea\n2. Milk");
    report->add_points()->set_text("Tea");
    report->add_points()->set_text("Milk");
    report->set_answer(kAnswer);
    writer->Write(r);
    return grpc::Status::OK;
  }

  absl::Mutex mu_;
  tern::v1::GenerateRequest generate_ ABSL_GUARDED_BY(mu_);
  tern::v1::ChatRequest chat_ ABSL_GUARDED_BY(mu_);
};

// A FILE* whose contents the test can read.
class Capture {
 public:
  Capture() : file_(open_memstream(&buffer_, &size_)) {}
  ~Capture() {
    std::fclose(file_);
    std::free(buffer_);
  }
  std::FILE* file() { return file_; }
  std::string Text() {
    std::fflush(file_);
    return std::string(buffer_, size_);
  }

 private:
  char* buffer_ = nullptr;
  size_t size_ = 0;
  std::FILE* file_;
};

class CliGenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = tern::v1::Llm::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5)); }

  // Runs `tern ARGS` (generate or chat) with stdout and stderr captured.
  int Run(std::vector<std::string> args, bool terminal = false) {
    bool help = false;
    absl::StatusOr<CliOptions> options = ParseCliArgs(args, CliOptions(), &help);
    EXPECT_TRUE(options.ok()) << options.status();
    if (!options.ok()) return -1;
    Console console;
    console.out = out_.file();
    console.err = err_.file();
    console.out_is_tty = terminal;
    console.err_is_tty = terminal;
    console.terminal_size = [] { return FrameSize{60, 20}; };
    console.redraw_every = std::chrono::milliseconds(0);
    return options->command == "chat" ? RunChat(stub_.get(), *options, console)
                                      : RunGenerate(stub_.get(), *options, console);
  }

  FakeLlm fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<tern::v1::Llm::Stub> stub_;
  Capture out_;
  Capture err_;
};

TEST_F(CliGenerateTest, PlainDecodingOnAPipePrintsTheTextAlone) {
  EXPECT_EQ(Run({"generate", "-m", "tiny", "--max-tokens", "2", "Hi"}), 0);
  EXPECT_EQ(out_.Text(), "Hello world\n");
  EXPECT_EQ(err_.Text(), "") << "no summary on a pipe without Skeleton-of-Thought";
  const tern::v1::GenerateRequest sent = fake_.generate();
  EXPECT_EQ(sent.text(), "Hi");
  EXPECT_EQ(sent.decoding_mode(), tern::v1::DECODING_MODE_AUTO);
  EXPECT_FALSE(sent.has_sot());
  EXPECT_EQ(sent.sampling().max_tokens(), 2);
}

TEST_F(CliGenerateTest, SotOnAPipePrintsTheJoinedAnswerAndASummary) {
  EXPECT_EQ(Run({"generate", "-m", "tiny", "--mode", "sot", "--outline", "Tea;Milk", "--ordered",
                 "--max-point-tokens", "16", "How?"}),
            0);
  EXPECT_EQ(out_.Text(), std::string(kAnswer) + "\n");
  const std::string err = err_.Text();
  EXPECT_NE(err.find("decoding=skeleton_of_thought router=not_routed points=2 fell_back=no"), std::string::npos)
      << err;
  EXPECT_NE(err.find("completion_tokens=8"), std::string::npos) << err;
  const tern::v1::GenerateRequest sent = fake_.generate();
  EXPECT_EQ(sent.decoding_mode(), tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
  ASSERT_EQ(sent.sot().outline_size(), 2);
  EXPECT_EQ(sent.sot().outline(1), "Milk");
  EXPECT_TRUE(sent.sot().ordered());
  EXPECT_EQ(sent.sot().max_point_tokens(), 16);
}

TEST_F(CliGenerateTest, SotOnATerminalDrawsLivePointsThenTheAnswer) {
  EXPECT_EQ(Run({"generate", "-m", "tiny", "--mode", "sot", "How?"}, /*terminal=*/true), 0);
  const std::string out = out_.Text();
  EXPECT_NE(out.find("writing the skeleton"), std::string::npos) << out;
  EXPECT_NE(out.find("points done"), std::string::npos) << out;
  EXPECT_NE(out.find("\x1b[J"), std::string::npos) << "the view is redrawn in place";
  // The view is erased last; the answer follows on clean lines.
  const size_t erased = out.rfind("\x1b[J");
  EXPECT_EQ(out.substr(erased + 3), std::string(kAnswer) + "\n");
  EXPECT_NE(err_.Text().find("decoding=skeleton_of_thought"), std::string::npos);
}

TEST_F(CliGenerateTest, PlainDecodingOnATerminalStreamsAndSummarizes) {
  EXPECT_EQ(Run({"generate", "-m", "tiny", "--mode", "normal", "Hi"}, /*terminal=*/true), 0);
  EXPECT_EQ(out_.Text(), "Hello world\n");
  EXPECT_NE(err_.Text().find("decoding=normal"), std::string::npos) << err_.Text();
  EXPECT_EQ(fake_.generate().decoding_mode(), tern::v1::DECODING_MODE_NORMAL);
}

TEST_F(CliGenerateTest, JsonPrintsOneObject) {
  EXPECT_EQ(Run({"chat", "-m", "tiny", "--system", "Be brief.", "--json", "How?"}, /*terminal=*/true), 0);
  const std::string out = out_.Text();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "one line";
  EXPECT_EQ(out.find("\x1b"), std::string::npos) << "no live view with --json";
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["status"], "OK");
  EXPECT_EQ(j["text"], "Hello world");
  EXPECT_EQ(j["decoding_mode"], "DECODING_MODE_NORMAL");
  const tern::v1::ChatRequest sent = fake_.chat();
  ASSERT_EQ(sent.messages_size(), 2);
  EXPECT_EQ(sent.messages(0).role(), "system");
  EXPECT_EQ(sent.messages(1).content(), "How?");
}

TEST_F(CliGenerateTest, JsonOfSotCarriesTheAnswerPartsAndReport) {
  EXPECT_EQ(Run({"chat", "-m", "tiny", "--json", "--outline", "Tea;Milk", "How?"}), 0);
  const nlohmann::json sot = nlohmann::json::parse(out_.Text());
  EXPECT_EQ(sot["text"], kAnswer);
  EXPECT_EQ(sot["sot"]["router"], "trained");
  EXPECT_EQ(sot["parts"].size(), 2u);
  EXPECT_EQ(fake_.chat().decoding_mode(), tern::v1::DECODING_MODE_AUTO) << "an outline alone keeps AUTO";
}

TEST_F(CliGenerateTest, ServerErrorsExitOneWithTheStatus) {
  EXPECT_EQ(Run({"generate", "-m", "fail", "Hi"}), 1);
  EXPECT_EQ(out_.Text(), "partial\n");
  EXPECT_EQ(err_.Text(), "tern: RESOURCE_EXHAUSTED: queue full\n");
}

TEST_F(CliGenerateTest, JsonReportsServerErrorsToo) {
  EXPECT_EQ(Run({"generate", "--json", "-m", "fail", "Hi"}), 1);
  const nlohmann::json j = nlohmann::json::parse(out_.Text());
  EXPECT_EQ(j["status"], "RESOURCE_EXHAUSTED");
  EXPECT_EQ(j["error"], "queue full");
  EXPECT_EQ(j["text"], "partial");
}

TEST_F(CliGenerateTest, MissingModelIsAUsageError) {
  EXPECT_EQ(Run({"generate", "Hi"}), 2);
  EXPECT_EQ(Run({"chat", "-m", "tiny"}), 2);
  const std::string err = err_.Text();
  EXPECT_NE(err.find("tern: generate needs -m MODEL and one PROMPT"), std::string::npos) << err;
  EXPECT_NE(err.find("tern: chat needs -m MODEL and one MESSAGE"), std::string::npos) << err;
  EXPECT_EQ(out_.Text(), "");
}

}  // namespace
}  // namespace tern::cli
