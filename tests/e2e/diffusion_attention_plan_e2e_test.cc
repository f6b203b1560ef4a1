// DiTFastAttn through the real ternd (demo DiT, CPU): a model's attention
// plan from the server config is what ListModels reports and what its
// images follow (the pixels of DitPipeline under the same plan); a request
// asking for exact attention gets the exact images; bad attention options
// are INVALID_ARGUMENT naming the field; a plan that does not fit the model
// stops start-up naming the file and field.
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/dit_attention_plan.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_pipeline.h"
#include "server/services/png_codec.h"
#include "tern/v1/diffusion.grpc.pb.h"
#include "tern/v1/models.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/diffusion_e2e_helpers.h"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {
namespace {

const char kDemoDit[] = TERN_MODELS_DIR "/tern-demo-dit";

// 4 steps x 8 blocks: full, then window / reuse / full+cfg.
std::string PlanText(int layers = 8, const std::string& window = "16", const std::string& third = "reuse") {
  std::string text = R"({"format": "tern-dit-attention-plan", "version": 1, "steps": 4, "layers": )" +
                     std::to_string(layers) + R"(, "window": )" + window + R"(, "methods": [)";
  const std::vector<std::string> steps = {"full", "window", third, "window+cfg"};
  for (size_t s = 0; s < steps.size(); ++s) {
    text += s ? ", [" : "[";
    for (int l = 0; l < layers; ++l) text += (l ? ", \"" : "\"") + steps[s] + "\"";
    text += "]";
  }
  return text + "]}";
}

std::vector<std::vector<uint8_t>> Images(tern::v1::Diffusion::Stub& stub, const tern::v1::GenerateImageRequest& r,
                                         grpc::Status* status) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub.GenerateImage(&context, r);
  tern::v1::GenerateImageResponse m;
  std::vector<std::vector<uint8_t>> images;
  while (reader->Read(&m)) {
    if (!m.has_image()) continue;
    auto png = server::DecodePng(m.image().png());
    EXPECT_TRUE(png.ok()) << png.status();
    if (png.ok()) images.push_back(png->planar);
  }
  *status = reader->Finish();
  return images;
}

std::vector<std::vector<uint8_t>> PipelineImages(const std::string& plan_path, int32_t steps) {
  runtime::CpuDitOps ops;
  runtime::DitModelOptions options;
  if (!plan_path.empty()) {
    auto config = runtime::LoadDitConfig(kDemoDit);
    EXPECT_TRUE(config.ok());
    auto plan = runtime::LoadDitAttentionPlan(plan_path, *config);
    EXPECT_TRUE(plan.ok()) << plan.status();
    options.attention_plan = std::make_shared<const runtime::DitAttentionPlan>(*plan);
  }
  auto model = runtime::DitModel::Load(kDemoDit, &ops, options);
  EXPECT_TRUE(model.ok()) << model.status();
  auto pipeline = runtime::DitPipeline::Create(model->get());
  runtime::DitGenerateRequest g;
  g.class_label = 7;  // Sneaker
  g.num_images = 2;
  g.sampler = runtime::DiffusionSamplerKind::kDpmSolverPp2m;
  g.num_steps = steps;
  g.guidance_scale = 2.0;
  g.seed = 1234;
  auto images = (*pipeline)->Generate(g);
  EXPECT_TRUE(images.ok()) << images.status();
  std::vector<std::vector<uint8_t>> out;
  for (const auto& image : *images) out.push_back(image.pixels);
  return out;
}

TEST(DiffusionAttentionPlanE2eTest, ThePlanIsReportedFollowedAndExactAttentionCanBeAsked) {
  TempDir dir;
  const std::string plan = dir.Write("plan.json", PlanText());
  const std::string config = dir.Write("ternd.json", std::string(R"({"models": [
    {"name": "fast", "path": ")") + kDemoDit + R"(", "diffusion": {"attentionPlan": ")" + plan +
                                                         R"(", "maxBatchRows": 8}},
    {"name": "plain", "path": ")" + kDemoDit + R"("}]})");
  DaemonProcess daemon = StartOrDie({"--config", config});
  auto channel = grpc::CreateChannel(daemon.grpc_target(), grpc::InsecureChannelCredentials());

  auto models = tern::v1::Models::NewStub(channel);
  grpc::ClientContext list_context;
  tern::v1::ListModelsResponse list;
  ASSERT_TRUE(models->ListModels(&list_context, {}, &list).ok());
  for (const auto& m : list.models()) {
    if (m.name() == "fast") {
      EXPECT_EQ(m.attention_scheme(),
                "ditfastattn (4 steps, window 16: full 25%, window 50%, reuse 25%, +cfg 25%)");
      EXPECT_EQ(m.attention_plan(), plan);
      EXPECT_EQ(m.attention_plan_steps(), 4);
      EXPECT_EQ(m.attention_density_length(), 256);
      EXPECT_GT(m.attention_density(), 0.0);
      EXPECT_LT(m.attention_density(), 0.5);
      // Every block keeps a residual and an output row: 8 x 2 x [256, 128] fp32 a row, 8 rows.
      EXPECT_EQ(m.attention_cache_bytes_per_row(), 8 * 2 * 256 * 128 * 4);
      EXPECT_EQ(m.attention_cache_bytes(), 8 * m.attention_cache_bytes_per_row());
    } else {
      EXPECT_EQ(m.attention_scheme(), "dense");
      EXPECT_EQ(m.attention_plan_steps(), 0);
    }
  }

  auto stub = tern::v1::Diffusion::NewStub(channel);
  const auto with_plan = PipelineImages(plan, 4);
  const auto exact = PipelineImages("", 4);
  ASSERT_NE(with_plan, exact);
  grpc::Status status;
  // The plan's step count: the plan; asked by name too.
  tern::v1::GenerateImageRequest r = SneakerRequest("fast", 4);
  EXPECT_EQ(Images(*stub, r, &status), with_plan);
  EXPECT_TRUE(status.ok()) << status.error_message();
  r.set_attention(tern::v1::DIFFUSION_ATTENTION_PLAN);
  EXPECT_EQ(Images(*stub, r, &status), with_plan);
  EXPECT_TRUE(status.ok()) << status.error_message();
  // Exact attention asked, or another step count: the exact images.
  r.set_attention(tern::v1::DIFFUSION_ATTENTION_EXACT);
  EXPECT_EQ(Images(*stub, r, &status), exact);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Images(*stub, SneakerRequest("fast", 3), &status), PipelineImages("", 3));
  EXPECT_TRUE(status.ok()) << status.error_message();

  struct Case {
    std::string model;
    int32_t steps;
    int attention;
    std::string message;
  };
  for (const Case& c : {
           Case{"fast", 3, tern::v1::DIFFUSION_ATTENTION_PLAN,
                "attention: DIFFUSION_ATTENTION_PLAN with 3 steps, but model \"fast\"'s attention plan is for 4"},
           Case{"plain", 4, tern::v1::DIFFUSION_ATTENTION_PLAN,
                "attention: DIFFUSION_ATTENTION_PLAN, but model \"plain\" has no attention plan "
                "(diffusion.attention_plan)"},
           Case{"fast", 4, 7, "attention: 7 is not a DiffusionAttention"},
       }) {
    tern::v1::GenerateImageRequest bad = SneakerRequest(c.model, c.steps);
    bad.set_attention(static_cast<tern::v1::DiffusionAttention>(c.attention));
    EXPECT_TRUE(Images(*stub, bad, &status).empty());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_NE(status.error_message().find(c.message), std::string::npos) << status.error_message();
  }
}

// Planning a step ahead is the LLM engine's: a diffusion model asking for it
// stops start-up with the reason.
TEST(DiffusionConfigE2eTest, AsyncSchedulingIsRefused) {
  TempDir dir;
  const std::string config = dir.Write(
      "ternd.json", std::string(R"({"models": [{"name": "d", "path": ")") + kDemoDit + R"(", "asyncScheduling": true}]})");
  const ProcessResult result =
      RunProcess({BinaryPath("ternd"), "--grpc-port", "0", "--http-port", "0", "--config", config},
                 std::chrono::seconds(60));
  EXPECT_EQ(result.signal, 0) << "ternd crashed: " << result.output;
  EXPECT_GT(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("async_scheduling: planning a step ahead is for LLM engines"), std::string::npos)
      << result.output;
}

TEST(DiffusionAttentionPlanE2eTest, APlanThatDoesNotFitStopsStartUp) {
  TempDir dir;
  struct Case {
    std::string plan, message;
  };
  for (const Case& c : {
           Case{PlanText(6), "layers: 6, but the model has 8 blocks"},
           Case{PlanText(8, "0"), "window: 0 is not in [1, 256]"},
           Case{PlanText(8, "16", "skip"), "methods[2][0]: unknown method \"skip\""},
           Case{R"({"steps": 1, "layers": 8, "window": 4, "methods": [["reuse", "full", "full", "full",)"
                R"( "full", "full", "full", "full"]]})",
                "methods[0][0]: \"reuse\" needs an earlier step of layer 0 that computes attention"},
       }) {
    const std::string plan = dir.Write("bad.json", c.plan);
    const std::string config = dir.Write("ternd.json", std::string(R"({"models": [{"name": "d", "path": ")") +
                                                           kDemoDit + R"(", "diffusion": {"attentionPlan": ")" + plan +
                                                           R"("}}]})");
    const ProcessResult result = RunProcess({BinaryPath("ternd"), "--grpc-port", "0", "--http-port", "0", "--config",
                                             config},
                                            std::chrono::seconds(60));
    EXPECT_EQ(result.signal, 0) << "ternd crashed: " << result.output;
    EXPECT_GT(result.exit_code, 0) << result.output;
    const std::string want = "diffusion.attention_plan: " + plan + ": " + c.message;
    EXPECT_NE(result.output.find(want), std::string::npos) << "expected \"" << want << "\" in: " << result.output;
  }
  const std::string absent = dir.Path("absent.json");
  const std::string config =
      dir.Write("ternd.json", std::string(R"({"models": [{"name": "d", "path": ")") + kDemoDit +
                                  R"(", "diffusion": {"attentionPlan": ")" + absent + R"("}}]})");
  const ProcessResult result =
      RunProcess({BinaryPath("ternd"), "--grpc-port", "0", "--http-port", "0", "--config", config},
                 std::chrono::seconds(60));
  EXPECT_GT(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("diffusion.attention_plan: " + absent + ": cannot read the attention plan"),
            std::string::npos)
      << result.output;
}

}  // namespace
}  // namespace tern::testing
