// GenerateImage end to end: the real ternd serving the demo DiT (CPU) beside
// the demo LLM's shape. The streamed PNG decodes to exactly the pixels the
// synchronous DitPipeline makes for the same class, sampler, steps, guidance
// and seed; a progress event per step; bad requests get INVALID_ARGUMENT
// naming the field while another image keeps generating. A tiny latent DiT
// (tern-mkmodel --arch dit, diffusers' layout) makes RGB PNGs through its
// VAE: the pipeline's pixels, and an image of a batch equals the same seed
// generated alone.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/diffusion_runner.h"
#include "runtime/dit/dit_pipeline.h"
#include "server/services/png_codec.h"
#include "runtime/dit/sampler_schedule.h"
#include "runtime/model/weight_scheme.h"
#include "tern/v1/diffusion.grpc.pb.h"
#include "tern/v1/models.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/diffusion_e2e_helpers.h"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {
namespace {

const char kDemoDit[] = TERN_MODELS_DIR "/tern-demo-dit";

struct ImageCall {
  grpc::Status status;
  std::vector<tern::v1::GenerateImageResponse> messages;
};

ImageCall Generate(tern::v1::Diffusion::Stub& stub, const tern::v1::GenerateImageRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  ImageCall call;
  auto reader = stub.GenerateImage(&context, request);
  tern::v1::GenerateImageResponse message;
  while (reader->Read(&message)) call.messages.push_back(message);
  call.status = reader->Finish();
  return call;
}

tern::v1::GenerateImageRequest Sneakers() { return SneakerRequest("tern-demo-dit", 4); }

TEST(DiffusionE2eTest, ImagesEqualThePipelinesAndProgressComesEveryStep) {
  DaemonProcess daemon = StartOrDie({"--model", kDemoDit});
  auto channel = grpc::CreateChannel(daemon.grpc_target(), grpc::InsecureChannelCredentials());
  auto stub = tern::v1::Diffusion::NewStub(channel);
  const ImageCall call = Generate(*stub, Sneakers());
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();

  runtime::CpuDitOps ops;
  auto model = runtime::DitModel::Load(kDemoDit, &ops);
  ASSERT_TRUE(model.ok()) << model.status();
  auto pipeline = runtime::DitPipeline::Create(model->get());
  runtime::DitGenerateRequest g;
  g.class_label = 7;  // Sneaker
  g.num_images = 2;
  g.sampler = runtime::DiffusionSamplerKind::kDpmSolverPp2m;
  g.num_steps = 4;
  g.guidance_scale = 2.0;
  g.seed = 1234;
  auto expected = (*pipeline)->Generate(g);
  ASSERT_TRUE(expected.ok()) << expected.status();

  int progress = 0, images = 0;
  for (size_t i = 0; i < call.messages.size(); ++i) {
    const auto& m = call.messages[i];
    if (m.has_progress()) {
      ++progress;
      EXPECT_EQ(m.progress().step(), progress);
      EXPECT_EQ(m.progress().total_steps(), 4);
    } else if (m.has_image()) {
      const int index = m.image().index();
      ASSERT_EQ(index, images++);
      EXPECT_EQ(m.image().seed(), 1234u + index);
      EXPECT_EQ(m.image().width(), 32);
      auto png = server::DecodePng(m.image().png());
      ASSERT_TRUE(png.ok()) << png.status();
      EXPECT_EQ(png->channels, 1);
      EXPECT_EQ(png->planar, (*expected)[index].pixels) << "image " << index << " differs from the pipeline's";
    }
    EXPECT_EQ(m.done(), i + 1 == call.messages.size());
  }
  EXPECT_EQ(progress, 4);
  EXPECT_EQ(images, 2);
}

TEST(DiffusionE2eTest, BadRequestsNameTheFieldWhileAnImageGenerates) {
  DaemonProcess daemon = StartOrDie({"--model", kDemoDit});
  auto channel = grpc::CreateChannel(daemon.grpc_target(), grpc::InsecureChannelCredentials());
  auto stub = tern::v1::Diffusion::NewStub(channel);
  tern::v1::GenerateImageRequest long_one = Sneakers();
  long_one.set_steps(60);
  long_one.set_batch(1);
  ImageCall background;
  std::thread runner([&] { background = Generate(*stub, long_one); });

  struct Case {
    const char* field;
    std::function<void(tern::v1::GenerateImageRequest&)> edit;
  };
  const std::vector<Case> cases = {
      {"class_label", [](auto& r) { r.set_class_label(11); }},
      {"class_name", [](auto& r) { r.set_class_name("Hat"); }},
      {"steps", [](auto& r) { r.set_steps(100000); }},
      {"width", [](auto& r) { r.set_width(64); }},
      {"guidance_scale", [](auto& r) { r.set_guidance_scale(std::nanf("")); }},
      {"guidance_scale", [](auto& r) { r.set_guidance_scale(-1.0f); }},
      {"batch", [](auto& r) { r.set_batch(17); }},
      {"sampler", [](auto& r) { r.set_sampler(static_cast<tern::v1::Sampler>(9)); }},
      {"prompt", [](auto& r) { r.set_prompt("a sneaker"); }},
  };
  for (const Case& c : cases) {
    tern::v1::GenerateImageRequest r = Sneakers();
    c.edit(r);
    const ImageCall call = Generate(*stub, r);
    EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(call.status.error_message().find(c.field), std::string::npos) << call.status.error_message();
    EXPECT_TRUE(call.messages.empty());
  }
  runner.join();
  EXPECT_TRUE(background.status.ok()) << background.status.error_message();
}

// A model's sampler schedule from the server config: the default sampler
// when a request names none (dpmpp2m's own 4-step schedule: the same pixels
// as dpmpp2m at 4 steps), selectable as SAMPLER_SCHEDULE, reported by
// ListModels; steps that contradict it, or SAMPLER_SCHEDULE on a model
// without one, are INVALID_ARGUMENT naming the field.
TEST(DiffusionE2eTest, ASamplerScheduleFromTheConfigIsTheModelsDefault) {
  TempDir dir;
  const std::string schedule =
      dir.Write("dpmpp2m-4.json", runtime::SamplerScheduleToJson(*runtime::UniformSamplerSchedule(1000, 4, true)));
  const std::string config = dir.Write("ternd.json", std::string(R"({"models": [
    {"name": "scheduled", "path": ")") + kDemoDit + R"(", "diffusion": {"samplerSchedule": ")" + schedule + R"("}},
    {"name": "plain", "path": ")" + kDemoDit + R"("}]})");
  DaemonProcess daemon = StartOrDie({"--config", config});
  auto channel = grpc::CreateChannel(daemon.grpc_target(), grpc::InsecureChannelCredentials());

  auto models = tern::v1::Models::NewStub(channel);
  grpc::ClientContext list_context;
  tern::v1::ListModelsResponse list;
  ASSERT_TRUE(models->ListModels(&list_context, {}, &list).ok());
  ASSERT_EQ(list.models_size(), 2);
  for (const auto& m : list.models()) {
    if (m.name() == "scheduled") {
      EXPECT_EQ(m.default_sampler(), "schedule");
      EXPECT_EQ(m.default_steps(), 4);
      EXPECT_EQ(m.sampler_schedule().path(), schedule);
      EXPECT_EQ(std::vector<int32_t>(m.sampler_schedule().timesteps().begin(), m.sampler_schedule().timesteps().end()),
                (std::vector<int32_t>{999, 666, 333, 0}));
      EXPECT_EQ(std::vector<int32_t>(m.sampler_schedule().orders().begin(), m.sampler_schedule().orders().end()),
                (std::vector<int32_t>{1, 2, 2, 1}));
    } else {
      EXPECT_EQ(m.default_sampler(), "dpmpp2m");
      EXPECT_EQ(m.default_steps(), 20);
      EXPECT_FALSE(m.has_sampler_schedule());
    }
  }

  auto stub = tern::v1::Diffusion::NewStub(channel);
  tern::v1::GenerateImageRequest by_default = Sneakers();
  by_default.set_model("scheduled");
  by_default.set_sampler(tern::v1::SAMPLER_UNSPECIFIED);
  by_default.set_steps(0);
  tern::v1::GenerateImageRequest fixed = Sneakers();  // dpmpp2m, 4 steps
  fixed.set_model("plain");
  tern::v1::GenerateImageRequest named = by_default;
  named.set_sampler(tern::v1::SAMPLER_SCHEDULE);
  named.set_steps(4);
  const ImageCall want = Generate(*stub, fixed);
  ASSERT_TRUE(want.status.ok()) << want.status.error_message();
  for (const tern::v1::GenerateImageRequest& request : {by_default, named}) {
    const ImageCall got = Generate(*stub, request);
    ASSERT_TRUE(got.status.ok()) << got.status.error_message();
    ASSERT_EQ(got.messages.size(), want.messages.size());
    for (size_t i = 0; i < got.messages.size(); ++i) {
      if (got.messages[i].has_progress()) {
        EXPECT_EQ(got.messages[i].progress().total_steps(), 4);
      }
      if (got.messages[i].has_image()) {
        EXPECT_EQ(got.messages[i].image().png(), want.messages[i].image().png()) << "message " << i;
      }
    }
  }

  struct Case {
    std::string model;
    tern::v1::Sampler sampler;
    int32_t steps;
    const char* field;
  };
  for (const Case& c : {Case{"scheduled", tern::v1::SAMPLER_UNSPECIFIED, 5, "steps"},
                        Case{"scheduled", tern::v1::SAMPLER_SCHEDULE, 8, "steps"},
                        Case{"plain", tern::v1::SAMPLER_SCHEDULE, 0, "sampler"}}) {
    tern::v1::GenerateImageRequest r = Sneakers();
    r.set_model(c.model);
    r.set_sampler(c.sampler);
    r.set_steps(c.steps);
    const ImageCall call = Generate(*stub, r);
    EXPECT_EQ(call.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.model << " " << c.steps;
    EXPECT_NE(call.status.error_message().find(std::string(c.field) + ":"), std::string::npos)
        << call.status.error_message();
  }
  // A request naming another sampler on the scheduled model runs it.
  tern::v1::GenerateImageRequest other = Sneakers();
  other.set_model("scheduled");
  other.set_steps(3);
  EXPECT_TRUE(Generate(*stub, other).status.ok());
}

// A bad schedule file stops start-up, naming the file, the step and the field.
TEST(DiffusionE2eTest, ABadSamplerScheduleStopsStartUp) {
  TempDir dir;
  struct Case {
    std::string schedule;
    std::string message;
  };
  const std::string head = R"({"format": "tern-sampler-schedule", "version": 1, "num_train_timesteps": 1000, )";
  for (const Case& c : {
           Case{head + R"("steps": [{"timestep": 500, "order": 1}, {"timestep": 700, "order": 1}]})",
                "steps[1].timestep: 700 does not decrease"},
           Case{head + R"("steps": [{"timestep": 1000, "order": 1}]})", "steps[0].timestep: 1000 is not in [0, 999]"},
           Case{head + R"("steps": [{"timestep": 999, "order": 2}, {"timestep": 0, "order": 1}]})",
                "steps[0].order: 2 on the first step"},
           Case{head + R"("steps": [{"timestep": 999, "order": 1, "eta": 0}]})", "steps[0].eta: unknown field"},
           Case{head + R"("steps": []})", "steps: empty"},
       }) {
    const std::string schedule = dir.Write("bad.json", c.schedule);
    const std::string config = dir.Write("ternd.json", std::string(R"({"models": [{"name": "d", "path": ")") +
                                                           kDemoDit + R"(", "diffusion": {"samplerSchedule": ")" +
                                                           schedule + R"("}}]})");
    const ProcessResult result = RunProcess({BinaryPath("ternd"), "--grpc-port", "0", "--http-port", "0", "--config",
                                             config},
                                            std::chrono::seconds(60));
    EXPECT_EQ(result.signal, 0) << "ternd crashed: " << result.output;
    EXPECT_GT(result.exit_code, 0) << result.output;
    const std::string want = "diffusion.sampler_schedule: " + schedule + ": " + c.message;
    EXPECT_NE(result.output.find(want), std::string::npos) << "expected \"" << want << "\" in: " << result.output;
  }
}

// A tiny latent DiT with its VAE, written by tern-mkmodel (diffusers' layout).
std::string MakeTinyLatentDit() {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("tern-e2e-latent-dit-" + std::to_string(getpid()))).string();
  if (!std::filesystem::exists(dir + "/model_index.json")) {
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch dit --preset tiny --layout diffusers --seed 3 "
                                  "--dtype float32 --out " + dir + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  return dir;
}

TEST(DiffusionE2eTest, LatentModelImagesAreTheVaesAndTheSameAloneAndBatched) {
  const std::string dir = MakeTinyLatentDit();
  DaemonProcess daemon = StartOrDie({"--model", dir});
  auto stub = tern::v1::Diffusion::NewStub(
      grpc::CreateChannel(daemon.grpc_target(), grpc::InsecureChannelCredentials()));
  const std::string name = std::filesystem::path(dir).filename().string();
  tern::v1::GenerateImageRequest r;
  r.set_model(name);
  r.set_class_label(3);
  r.set_steps(3);
  r.set_guidance_scale(2.0f);
  r.set_sampler(tern::v1::SAMPLER_DDIM);
  r.set_seed(500);
  r.set_batch(2);
  const ImageCall batched = Generate(*stub, r);
  ASSERT_TRUE(batched.status.ok()) << batched.status.error_message();
  r.set_seed(501);
  r.set_batch(1);
  const ImageCall alone = Generate(*stub, r);
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
  r.set_width(32);
  EXPECT_EQ(Generate(*stub, r).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // it makes 64x64

  auto runner = runtime::DitRunner::Create(dir, std::make_unique<runtime::CpuDitOps>());
  ASSERT_TRUE(runner.ok()) << runner.status();
  auto pipeline = runtime::DitPipeline::Create((*runner)->model(), (*runner)->vae());
  ASSERT_TRUE(pipeline.ok());
  runtime::DitGenerateRequest g;
  g.class_label = 3;
  g.num_images = 2;
  g.sampler = runtime::DiffusionSamplerKind::kDdim;
  g.num_steps = 3;
  g.guidance_scale = 2.0;
  g.seed = 500;
  auto expected = (*pipeline)->Generate(g);
  ASSERT_TRUE(expected.ok()) << expected.status();

  std::vector<std::vector<uint8_t>> pngs;
  for (const auto& m : batched.messages) {
    if (!m.has_image()) continue;
    EXPECT_EQ(m.image().width(), 64);
    auto png = server::DecodePng(m.image().png());
    ASSERT_TRUE(png.ok()) << png.status();
    EXPECT_EQ(png->channels, 3);
    EXPECT_EQ(png->planar, (*expected)[m.image().index()].pixels) << "image " << m.image().index();
    pngs.push_back(png->planar);
  }
  ASSERT_EQ(pngs.size(), 2u);
  for (const auto& m : alone.messages) {
    if (!m.has_image()) continue;
    auto png = server::DecodePng(m.image().png());
    ASSERT_TRUE(png.ok());
    EXPECT_EQ(png->planar, pngs[1]) << "seed 501 differs alone and as image 1 of a batch";
  }
}

// W8A8 on the demo DiT (CPU: the reference arithmetic of
// kernels/gemm/quant_gemm.h): w8a8-int8, w8a8-fp8 and a mixed plan that
// keeps two layers dense serve images equal, pixel for pixel, to the
// in-process pipeline over a model loaded with the same scheme, and
// ListModels reports each scheme with its layer counts.
TEST(DiffusionE2eTest, W8A8SchemesServeThePipelinesImagesAndListModelsReportsThem) {
  TempDir dir;
  const std::string plan = dir.Write("plan.json", R"({"default": "w8a8-int8",
      "layers": {"blocks.0.attn.qkv": "dense", "blocks.7.mlp.fc2": "dense"}})");
  const std::string config = dir.Write("ternd.json", std::string(R"({"models": [
    {"name": "int8", "path": ")") + kDemoDit + R"(", "weightScheme": "w8a8-int8"},
    {"name": "fp8", "path": ")" + kDemoDit + R"(", "weightScheme": "w8a8-fp8"},
    {"name": "mixed", "path": ")" + kDemoDit + R"(", "weightScheme": "mixed:)" + plan + R"("}]})");
  DaemonProcess daemon = StartOrDie({"--config", config});
  auto channel = grpc::CreateChannel(daemon.grpc_target(), grpc::InsecureChannelCredentials());

  auto models = tern::v1::Models::NewStub(channel);
  grpc::ClientContext list_context;
  tern::v1::ListModelsResponse list;
  ASSERT_TRUE(models->ListModels(&list_context, {}, &list).ok());
  std::map<std::string, std::string> reported;
  for (const auto& m : list.models()) reported[m.name()] = m.weight_scheme();
  // 8 blocks x 5 layers quantized; patch embedding, timestep MLP (2) and
  // the final layer (2) dense.
  EXPECT_EQ(reported["int8"], "w8a8-int8 (dense x 5, w8a8-int8 x 40; quantized at load, dense layers in fp32)");
  EXPECT_EQ(reported["fp8"], "w8a8-fp8 (dense x 5, w8a8-fp8 x 40; quantized at load, dense layers in fp32)");
  EXPECT_EQ(reported["mixed"], "mixed (dense x 7, w8a8-int8 x 38; quantized at load, dense layers in fp32)");

  auto stub = tern::v1::Diffusion::NewStub(channel);
  struct Case {
    std::string model, scheme;
  };
  for (const Case& c : {Case{"int8", "w8a8-int8"}, Case{"fp8", "w8a8-fp8"}, Case{"mixed", "mixed:" + plan}}) {
    tern::v1::GenerateImageRequest r = Sneakers();
    r.set_model(c.model);
    r.set_batch(1);
    r.set_steps(2);
    r.set_guidance_scale(1.0f);
    const ImageCall call = Generate(*stub, r);
    ASSERT_TRUE(call.status.ok()) << c.model << ": " << call.status.error_message();

    runtime::CpuDitOps ops;
    runtime::DitModelOptions options;
    options.weight_scheme = *runtime::ParseWeightSchemeRequest(c.scheme);
    auto model = runtime::DitModel::Load(kDemoDit, &ops, options);
    ASSERT_TRUE(model.ok()) << model.status();
    // /metrics: the bytes the served model's weights hold, as the scheme
    // makes them (codes, scales and biases; the dense layers in fp32).
    const std::optional<double> bytes = ScrapeMetric(daemon, "tern_model_weight_bytes{model=\"" + c.model + "\"}");
    ASSERT_TRUE(bytes.has_value()) << c.model;
    EXPECT_EQ(*bytes, double((*model)->weight_bytes())) << c.model;
    auto pipeline = runtime::DitPipeline::Create(model->get());
    runtime::DitGenerateRequest g;
    g.class_label = 7;  // Sneaker
    g.num_images = 1;
    g.sampler = runtime::DiffusionSamplerKind::kDpmSolverPp2m;
    g.num_steps = 2;
    g.guidance_scale = 1.0;
    g.seed = 1234;
    auto expected = (*pipeline)->Generate(g);
    ASSERT_TRUE(expected.ok()) << expected.status();
    int images = 0;
    for (const auto& m : call.messages) {
      if (!m.has_image()) continue;
      ++images;
      auto png = server::DecodePng(m.image().png());
      ASSERT_TRUE(png.ok()) << png.status();
      EXPECT_EQ(png->planar, (*expected)[0].pixels) << c.model << ": the image differs from the pipeline's";
    }
    EXPECT_EQ(images, 1) << c.model;
  }
}

// A weight_scheme a DiT cannot run, or a plan naming a layer the model does
// not have, stops start-up naming the scheme, the plan and the layer.
TEST(DiffusionE2eTest, ABadWeightSchemeStopsStartUp) {
  TempDir dir;
  const std::string unknown_layer =
      dir.Write("unknown.json", R"({"default": "w8a8-int8", "layers": {"blocks.8.attn.qkv": "dense"}})");
  const std::string weight_only = dir.Write("w4.json", R"({"default": "w8a8-int8", "layers": {"blocks.1.mlp.fc1": "w4a16"}})");
  struct Case {
    std::string scheme, message;
  };
  for (const Case& c : {
           Case{"w4a16-g128", "weight_scheme \"w4a16-g128\": \"w4a16-g128\" is not a scheme a DiT runs"},
           Case{"mixed:" + unknown_layer, "mixed-precision plan " + unknown_layer +
                                              " names \"blocks.8.attn.qkv\", which is not a linear layer of this model"},
           Case{"mixed:" + weight_only, "mixed-precision plan " + weight_only + ": layers.blocks.1.mlp.fc1: \"w4a16-g128\" is not a scheme a DiT runs"},
           Case{"mixed:" + dir.Path("absent.json"), "mixed-precision plan " + dir.Path("absent.json") + " cannot be read"},
           Case{"w8a8", "w8a8"},
       }) {
    const std::string config = dir.Write("ternd.json", std::string(R"({"models": [{"name": "d", "path": ")") +
                                                           kDemoDit + R"(", "weightScheme": ")" + c.scheme + R"("}]})");
    const ProcessResult result = RunProcess({BinaryPath("ternd"), "--grpc-port", "0", "--http-port", "0", "--config",
                                             config},
                                            std::chrono::seconds(60));
    EXPECT_EQ(result.signal, 0) << "ternd crashed: " << result.output;
    EXPECT_GT(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find(c.message), std::string::npos) << "expected \"" << c.message << "\" in: " << result.output;
  }
}

}  // namespace
}  // namespace tern::testing
