// tern image: the request built from the options, the numbered file names
// and the progress line.
#include "tools/cli/image_command.h"

#include "gtest/gtest.h"

namespace tern::cli {
namespace {

TEST(ImageCommandTest, RequestCarriesTheOptions) {
  CliOptions o;
  o.command = "image";
  o.model = "tern-demo-dit";
  o.class_name = "Sneaker";
  o.steps = 12;
  o.guidance = 2.5f;
  o.sampler = "euler";
  o.seed = 42;
  o.count = 3;
  const tern::v1::GenerateImageRequest r = MakeImageRequest(o);
  EXPECT_EQ(r.model(), "tern-demo-dit");
  EXPECT_EQ(r.condition_case(), tern::v1::GenerateImageRequest::kClassName);
  EXPECT_EQ(r.class_name(), "Sneaker");
  EXPECT_EQ(r.steps(), 12);
  ASSERT_TRUE(r.has_guidance_scale());
  EXPECT_EQ(r.guidance_scale(), 2.5f);
  EXPECT_EQ(r.sampler(), tern::v1::SAMPLER_EULER);
  ASSERT_TRUE(r.has_seed());
  EXPECT_EQ(r.seed(), 42u);
  EXPECT_EQ(r.batch(), 3);
}

TEST(ImageCommandTest, UnsetOptionsLeaveTheModelsDefaults) {
  CliOptions o;
  o.model = "m";
  o.class_label = 0;  // label 0 is a class, not "unset"
  const tern::v1::GenerateImageRequest r = MakeImageRequest(o);
  EXPECT_EQ(r.condition_case(), tern::v1::GenerateImageRequest::kClassLabel);
  EXPECT_EQ(r.class_label(), 0);
  EXPECT_EQ(r.steps(), 0);
  EXPECT_FALSE(r.has_guidance_scale());
  EXPECT_EQ(r.sampler(), tern::v1::SAMPLER_UNSPECIFIED);
  EXPECT_FALSE(r.has_seed());
  EXPECT_EQ(r.batch(), 1);

  CliOptions p;
  p.args = {"a red fox"};
  EXPECT_EQ(MakeImageRequest(p).prompt(), "a red fox");
}

TEST(ImageCommandTest, NumberedFileNames) {
  EXPECT_EQ(ImageFileName("out.png", 0, 1), "out.png");
  EXPECT_EQ(ImageFileName("out.png", 2, 3), "out-2.png");
  EXPECT_EQ(ImageFileName("out", 1, 2), "out-1");
  EXPECT_EQ(ImageFileName("dir.d/out", 1, 2), "dir.d/out-1");
  EXPECT_EQ(ImageFileName("dir/.hidden", 0, 2), "dir/.hidden-0");
  EXPECT_EQ(ImageFileName("a/b.c/img.x.png", 3, 4), "a/b.c/img.x-3.png");
}

TEST(ImageCommandTest, ProgressLineFitsAndFills) {
  EXPECT_EQ(ProgressLine(5, 20, 1.25, 80), "[##########..............................]  5/20 steps  1.2 s");
  EXPECT_EQ(ProgressLine(20, 20, 3.0, 80).substr(0, 42), "[" + std::string(40, '#') + "]");
  const std::string narrow = ProgressLine(1, 4, 0.5, 30);
  EXPECT_LE(narrow.size(), 30u) << narrow;
  EXPECT_EQ(ProgressLine(1, 4, 0.5, 10), "1/4 steps  0.5 s");
  EXPECT_EQ(ProgressLine(0, 0, 0.0, 80).substr(0, 3), "[..");
}

}  // namespace
}  // namespace tern::cli
