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
#include "tern/v1/diffusion.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
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

tern::v1::GenerateImageRequest Sneakers() {
  tern::v1::GenerateImageRequest r;
  r.set_model("tern-demo-dit");
  r.set_class_name("Sneaker");
  r.set_steps(4);
  r.set_guidance_scale(2.0f);
  r.set_sampler(tern::v1::SAMPLER_DPM_SOLVER_PP_2M);
  r.set_seed(1234);
  r.set_batch(2);
  return r;
}

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

}  // namespace
}  // namespace tern::testing
