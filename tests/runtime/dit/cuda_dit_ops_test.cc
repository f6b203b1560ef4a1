// CudaDitOps against CpuDitOps op by op (fp32, bf16, fp16; 1 and 3
// samples; odd token counts and DiT-XL/2's head_dim 72), a graph that meets
// another op sequence, the host staging area growing inside a pass, and the
// dtypes Create refuses. Tolerances: tests/runtime/dit/cuda_dit_test_util.h.
// Label gpu: every test skips without a GPU.
#include "runtime/dit/cuda_dit_ops.h"


#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>


#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/model/dtype.h"
#include "tests/runtime/dit/cuda_dit_test_util.h"

namespace tern::runtime {
namespace {

using dit_test::DtypeName;
using dit_test::ExpectClose;
using dit_test::MakeCudaOps;
using dit_test::OpTolerance;
using dit_test::RandomValues;
using dit_test::View;

struct OpCase {
  DType dtype;
  int32_t batch;
};

class CudaDitOpsTest : public ::testing::TestWithParam<OpCase> {
 protected:
  void SetUp() override {
    gpu_ = MakeCudaOps(GetParam().dtype);
    if (gpu_ == nullptr) GTEST_SKIP() << "no CUDA device";
    batch_ = GetParam().batch;
    for (int b = 0; b < batch_; ++b) {
      timesteps_.push_back(b == 0 ? 999.0f : b == 1 ? 0.0f : 500.5f + b);
      labels_.push_back(b % 3);
    }
  }
  DType dtype() const { return GetParam().dtype; }
  std::string Label(const std::string& op) const {
    return absl::StrCat(op, " ", DtypeName(dtype()), " B=", batch_);
  }

  // Runs `body` as one pass on the CPU and on CUDA: inputs [rows, cols] are
  // copied into scratch slots 0.., `body` gets them and returns the output.
  using Body = std::function<Tensor(DitOps&, std::vector<Tensor>&)>;
  void Compare(const std::string& what, const std::vector<std::pair<std::pair<int64_t, int64_t>, std::vector<float>>>& inputs,
               const Body& body, double tolerance = -1) {
    std::vector<float> results[2];
    int64_t cols = 1;
    DitOps* sides[2] = {&cpu_, gpu_.get()};
    for (int side = 0; side < 2; ++side) {
      DitOps& ops = *sides[side];
      ASSERT_TRUE(ops.BeginStep({.timesteps = timesteps_, .labels = labels_, .image = {}}).ok());
      std::vector<Tensor> tensors;
      for (size_t i = 0; i < inputs.size(); ++i) {
        Tensor t = ops.Scratch(int(i), inputs[i].first.first, inputs[i].first.second);
        ops.CopyFromHost(inputs[i].second.data(), t);
        tensors.push_back(t);
      }
      const Tensor out = body(ops, tensors);
      const absl::Status finished = ops.FinishStep();
      ASSERT_TRUE(finished.ok()) << what << ": " << finished;
      results[side].resize(size_t(out.rows) * out.cols);
      ops.ReadToHost(out, results[side].data());
      cols = out.cols;
    }
    ExpectClose(Label(what), results[0], results[1], cols, tolerance < 0 ? OpTolerance(dtype()) : tolerance);
  }

  CpuDitOps cpu_;
  std::unique_ptr<CudaDitOps> gpu_;
  int32_t batch_ = 1;
  std::vector<float> timesteps_;
  std::vector<int32_t> labels_;
};

TEST_P(CudaDitOpsTest, Linear) {
  // (in, out, rows per sample, bias): the demo's patch embedding (K = 4),
  // a conditioning layer (one row a sample), a token layer, no bias.
  struct Shape {
    int64_t in, out, tokens;
    bool bias;
  };
  for (const Shape& s : {Shape{4, 128, 16, true}, Shape{256, 128, 1, true}, Shape{128, 384, 17, true},
                         Shape{1152, 64, 5, false}, Shape{72, 1152, 3, true}}) {
    const auto w = RandomValues(size_t(s.out * s.in), 1, dtype());
    const auto bias = RandomValues(size_t(s.out), 2, dtype());
    const TensorView wv = View("w", {s.out, s.in}, w);
    const TensorView bv = View("b", {s.out}, bias);
    auto cpu_w = cpu_.PrepareLinear(wv, s.bias ? &bv : nullptr);
    auto gpu_w = gpu_->PrepareLinear(wv, s.bias ? &bv : nullptr);
    ASSERT_TRUE(cpu_w.ok() && gpu_w.ok());
    const int64_t rows = batch_ * s.tokens;
    Compare(absl::StrCat("linear ", s.in, "->", s.out, " x", s.tokens, s.bias ? " +b" : ""),
            {{{rows, s.in}, RandomValues(size_t(rows * s.in), 3, dtype())}}, [&](DitOps& ops, std::vector<Tensor>& in) {
              Tensor out = ops.Scratch(9, rows, s.out);
              ops.Linear(in[0], &ops == &cpu_ ? **cpu_w : **gpu_w, out);
              return out;
            });
    // The MLP's first layer: CUDA applies GELU in the GEMM's epilogue, the
    // CPU runs Linear then GeluTanh.
    Compare(absl::StrCat("linear+gelu ", s.in, "->", s.out, " x", s.tokens, s.bias ? " +b" : ""),
            {{{rows, s.in}, RandomValues(size_t(rows * s.in), 3, dtype())}}, [&](DitOps& ops, std::vector<Tensor>& in) {
              Tensor out = ops.Scratch(9, rows, s.out);
              ops.LinearGeluTanh(in[0], &ops == &cpu_ ? **cpu_w : **gpu_w, out);
              return out;
            });
  }
}

TEST_P(CudaDitOpsTest, PatchifyAndUnpatchify) {
  const DitPatchGeometry in{4, 8, 2};
  Compare("patchify", {{{batch_, in.pixels()}, RandomValues(size_t(batch_ * in.pixels()), 4, dtype())}},
          [&](DitOps& ops, std::vector<Tensor>& t) {
            Tensor out = ops.Scratch(9, batch_ * in.tokens(), 16);
            ops.Patchify(t[0], in, out);
            return out;
          }, 0.0);
  const DitPatchGeometry out{8, 8, 2};  // learn_sigma: 8 channels out, keep 4
  Compare("unpatchify", {{{batch_ * out.tokens(), 32}, RandomValues(size_t(batch_ * out.tokens() * 32), 5, dtype())}},
          [&](DitOps& ops, std::vector<Tensor>& t) {
            Tensor images = ops.Scratch(9, batch_, 4 * 64);
            ops.Unpatchify(t[0], out, 4, images);
            return images;
          }, 0.0);
}

TEST_P(CudaDitOpsTest, EmbeddingsAndPointwise) {
  const int64_t tokens = 16, d = 96;
  const auto table = RandomValues(size_t(tokens * d), 6, dtype());
  const auto classes = RandomValues(size_t(4 * d), 7, dtype());
  auto cpu_pos = cpu_.UploadTable(table, tokens, d);
  auto gpu_pos = gpu_->UploadTable(table, tokens, d);
  const TensorView cv = View("classes", {4, d}, classes);
  auto cpu_cls = cpu_.UploadTable(cv, 0);
  auto gpu_cls = gpu_->UploadTable(cv, 0);
  ASSERT_TRUE(cpu_pos.ok() && gpu_pos.ok() && cpu_cls.ok() && gpu_cls.ok());
  const int64_t rows = batch_ * tokens;
  const auto x = RandomValues(size_t(rows * d), 8, dtype(), -6.0f, 6.0f);
  const auto y = RandomValues(size_t(rows * d), 9, dtype());
  Compare("add positions", {{{rows, d}, x}}, [&](DitOps& ops, std::vector<Tensor>& t) {
    ops.AddPositions(t[0], &ops == &cpu_ ? **cpu_pos : **gpu_pos);
    return t[0];
  });
  Compare("timestep embedding", {}, [&](DitOps& ops, std::vector<Tensor>&) {
    Tensor out = ops.Scratch(9, batch_, 256);
    ops.TimestepEmbedding(10000.0, 0.0, out);
    return out;
  });
  Compare("timestep embedding (diffusers' shift 1)", {}, [&](DitOps& ops, std::vector<Tensor>&) {
    Tensor out = ops.Scratch(9, batch_, 256);
    ops.TimestepEmbedding(10000.0, 1.0, out);
    return out;
  });
  Compare("embed classes", {}, [&](DitOps& ops, std::vector<Tensor>&) {
    Tensor out = ops.Scratch(9, batch_, d);
    ops.EmbedClasses(&ops == &cpu_ ? **cpu_cls : **gpu_cls, out);
    return out;
  }, 0.0);
  Compare("add", {{{rows, d}, x}, {{rows, d}, y}}, [&](DitOps& ops, std::vector<Tensor>& t) {
    ops.Add(t[0], t[1]);
    return t[0];
  });
  Compare("silu", {{{rows, d}, x}}, [&](DitOps& ops, std::vector<Tensor>& t) {
    Tensor out = ops.Scratch(9, rows, d);
    ops.Silu(t[0], out);
    return out;
  });
  Compare("gelu tanh", {{{rows, d}, x}}, [&](DitOps& ops, std::vector<Tensor>& t) {
    ops.GeluTanh(t[0]);
    return t[0];
  });
}

TEST_P(CudaDitOpsTest, LayerNormModulateAndGatedAdd) {
  // DiT-XL/2's width, rows with a large mean (a residual stream late in the
  // network), shift / scale / gate as column views of one modulation tensor.
  const int64_t tokens = 7, d = 1152;
  const int64_t rows = batch_ * tokens;
  const auto x = RandomValues(size_t(rows * d), 10, dtype(), 2.0f, 6.0f);
  const auto modulation = RandomValues(size_t(batch_ * 6 * d), 11, dtype());
  const auto y = RandomValues(size_t(rows * d), 12, dtype());
  Compare("layernorm modulate", {{{rows, d}, x}, {{batch_, 6 * d}, modulation}},
          [&](DitOps& ops, std::vector<Tensor>& t) {
            Tensor out = ops.Scratch(9, rows, d);
            ops.LayerNormModulate(t[0], t[1].Columns(0, d), t[1].Columns(d, d), 1e-6f, out);
            return out;
          });
  Compare("gated add", {{{rows, d}, x}, {{batch_, 6 * d}, modulation}, {{rows, d}, y}},
          [&](DitOps& ops, std::vector<Tensor>& t) {
            ops.GatedAdd(t[0], t[2], t[1].Columns(2 * d, d));
            return t[0];
          });
}

TEST_P(CudaDitOpsTest, GatedAddLayerNormModulate) {
  // adaLN-Zero's residual fused with the LayerNorm + modulate after it,
  // against the CPU's two ops (both outputs: the new x and the normed
  // rows), and bitwise against CUDA's own two ops. Widths: the demo's 96
  // (a partial last column group), DiT-XL/2's 1152 (held in registers),
  // 1600 (past the 1280 columns a warp holds: the rest re-read from x), all
  // loaded 4 columns at a time; 99 and 1601 (odd: one column at a time,
  // the column views misaligned).
  const int64_t tokens = 7;
  for (const int64_t d : {int64_t{96}, int64_t{1152}, int64_t{1600}, int64_t{99}, int64_t{1601}}) {
    const int64_t rows = batch_ * tokens;
    const auto x = RandomValues(size_t(rows * d), 14, dtype(), 2.0f, 6.0f);
    const auto modulation = RandomValues(size_t(batch_ * 6 * d), 15, dtype());
    const auto y = RandomValues(size_t(rows * d), 16, dtype(), -3.0f, 3.0f);
    const std::vector<std::pair<std::pair<int64_t, int64_t>, std::vector<float>>> inputs = {
        {{rows, d}, x}, {{batch_, 6 * d}, modulation}, {{rows, d}, y}};
    // gate, shift and scale as column views of one [B, 6 D] modulation.
    const auto fused = [&](DitOps& ops, std::vector<Tensor>& t) {
      Tensor out = ops.Scratch(9, rows, d);
      ops.GatedAddLayerNormModulate(t[0], t[2], t[1].Columns(5 * d, d), t[1].Columns(0, d), t[1].Columns(d, d),
                                    1e-6f, out);
      return out;
    };
    Compare(absl::StrCat("gated add + layernorm modulate D=", d, ": out"), inputs, fused);
    Compare(absl::StrCat("gated add + layernorm modulate D=", d, ": x"), inputs,
            [&](DitOps& ops, std::vector<Tensor>& t) {
              fused(ops, t);
              return t[0];
            });

    // CUDA: fused == GatedAdd then LayerNormModulate, bit for bit (x and out).
    std::vector<float> results[2][2];
    for (int fuse = 0; fuse < 2; ++fuse) {
      ASSERT_TRUE(gpu_->BeginStep({.timesteps = timesteps_, .labels = labels_, .image = {}}).ok());
      std::vector<Tensor> t;
      for (size_t i = 0; i < inputs.size(); ++i) {
        t.push_back(gpu_->Scratch(int(i), inputs[i].first.first, inputs[i].first.second));
        gpu_->CopyFromHost(inputs[i].second.data(), t.back());
      }
      Tensor out = gpu_->Scratch(9, rows, d);
      if (fuse == 1) {
        out = fused(*gpu_, t);
      } else {
        gpu_->GatedAdd(t[0], t[2], t[1].Columns(5 * d, d));
        gpu_->LayerNormModulate(t[0], t[1].Columns(0, d), t[1].Columns(d, d), 1e-6f, out);
      }
      ASSERT_TRUE(gpu_->FinishStep().ok());
      for (int which = 0; which < 2; ++which) {
        const Tensor& r = which == 0 ? t[0] : out;
        results[fuse][which].resize(size_t(r.rows) * r.cols);
        gpu_->ReadToHost(r, results[fuse][which].data());
      }
    }
    for (int which = 0; which < 2; ++which) {
      EXPECT_EQ(0, std::memcmp(results[0][which].data(), results[1][which].data(),
                               results[0][which].size() * sizeof(float)))
          << Label(absl::StrCat("fused vs two ops D=", d, which == 0 ? ": x" : ": out"));
    }
  }
}

TEST_P(CudaDitOpsTest, Attention) {
  // (tokens, heads, head_dim): the demo (256 tokens, 4 x 32), odd token
  // counts that leave a partial 64-key tile or 128-query tile, DiT-XL/2's
  // 72-wide heads at its 256 tokens (256 px) and 1024 (512 px), every head
  // dim the tensor-core kernel instantiates, and one it declines (40: the
  // per-row kernel at 16 bits).
  struct Shape {
    int32_t tokens, heads, head_dim;
  };
  for (const Shape& s : {Shape{256, 4, 32}, Shape{100, 2, 72}, Shape{17, 3, 64}, Shape{1, 2, 72}, Shape{130, 1, 128},
                         Shape{256, 16, 72}, Shape{1024, 4, 72}, Shape{200, 2, 72}, Shape{77, 2, 48},
                         Shape{65, 2, 80}, Shape{150, 1, 96}, Shape{33, 2, 40}}) {
    const int64_t width = int64_t(s.heads) * s.head_dim;
    const int64_t rows = int64_t(batch_) * s.tokens;
    // q and k scaled up so the softmax is peaked, not uniform.
    auto qkv = RandomValues(size_t(rows * 3 * width), 13, dtype(), -3.0f, 3.0f);
    const DitAttentionParams p{s.heads, s.head_dim, float(1.0 / std::sqrt(double(s.head_dim)))};
    Compare(absl::StrCat("attention L=", s.tokens, " ", s.heads, "x", s.head_dim), {{{rows, 3 * width}, qkv}},
            [&](DitOps& ops, std::vector<Tensor>& t) {
              Tensor out = ops.Scratch(9, rows, width);
              ops.Attention(t[0], p, out);
              return out;
            });
  }
}

TEST_P(CudaDitOpsTest, Convolution) {
  // (height, width, in, out, kernel): 16-byte rows (the vector im2col), the
  // VAE's conv_in (4 latent channels: the scalar one), post_quant_conv and a
  // shortcut (1x1: no im2col), conv_out (3 channels out), and 96x96 pixels
  // of 576 columns, which span two im2col chunks in fp32 (8192 pixels a
  // chunk: fixed by the layer's shape, never by the batch). In bf16 and fp16
  // the 3x3 layers with channels a multiple of 8 (16->24, 64->8) take the
  // implicit-GEMM kernel instead (kernels/dit/vae_conv.h).
  struct Shape {
    int32_t height, width, in, out, kernel;
  };
  for (const Shape& s : {Shape{9, 7, 16, 24, 3}, Shape{8, 8, 4, 32, 3}, Shape{8, 8, 4, 4, 1}, Shape{6, 5, 32, 16, 1},
                         Shape{12, 10, 32, 3, 3}, Shape{96, 96, 64, 8, 3}}) {
    const auto w = RandomValues(size_t(s.out) * s.in * s.kernel * s.kernel, 21, dtype());
    const auto bias = RandomValues(size_t(s.out), 22, dtype());
    const TensorView wv = View("w", {s.out, s.in, s.kernel, s.kernel}, w);
    const TensorView bv = View("b", {s.out}, bias);
    auto cpu_c = cpu_.PrepareConv2d(wv, &bv);
    auto gpu_c = gpu_->PrepareConv2d(wv, &bv);
    ASSERT_TRUE(cpu_c.ok() && gpu_c.ok());
    const int64_t rows = int64_t(batch_) * s.height * s.width;
    Compare(absl::StrCat("conv ", s.kernel, "x", s.kernel, " ", s.in, "->", s.out, " ", s.height, "x", s.width),
            {{{rows, s.in}, RandomValues(size_t(rows * s.in), 23, dtype())}}, [&](DitOps& ops, std::vector<Tensor>& in) {
              Tensor out = ops.Scratch(9, rows, s.out);
              ops.Conv2d(in[0], {s.height, s.width}, &ops == &cpu_ ? **cpu_c : **gpu_c, out);
              return out;
            });
  }
}

TEST_P(CudaDitOpsTest, GroupNormAndUpsample) {
  // (height, width, channels, groups): the VAE's 32 groups of 2 and of 1
  // channel, a sample over several 1024-pixel chunks, values far from 0.
  struct Shape {
    int32_t height, width, channels, groups;
  };
  for (const Shape& s : {Shape{13, 11, 64, 32}, Shape{48, 40, 32, 32}, Shape{4, 4, 96, 8}}) {
    const int64_t rows = int64_t(batch_) * s.height * s.width;
    const auto x = RandomValues(size_t(rows * s.channels), 24, dtype(), 3.0f, 7.0f);
    const auto affine = RandomValues(size_t(2 * s.channels), 25, dtype());
    auto cpu_t = cpu_.UploadTable(affine, 2, s.channels);
    auto gpu_t = gpu_->UploadTable(affine, 2, s.channels);
    ASSERT_TRUE(cpu_t.ok() && gpu_t.ok());
    for (bool silu : {true, false}) {
      Compare(absl::StrCat("group norm", silu ? "+silu " : " ", s.groups, "x", s.channels / s.groups, " ", s.height, "x",
                           s.width),
              {{{rows, s.channels}, x}}, [&](DitOps& ops, std::vector<Tensor>& in) {
                ops.GroupNorm(in[0], s.groups, 1e-6f, &ops == &cpu_ ? **cpu_t : **gpu_t, silu, in[0]);  // in place
                return in[0];
              });
    }
    Compare(absl::StrCat("upsample 2x ", s.height, "x", s.width), {{{rows, s.channels}, x}},
            [&](DitOps& ops, std::vector<Tensor>& in) {
              Tensor out = ops.Scratch(9, 4 * rows, s.channels);
              ops.Upsample2x(in[0], {s.height, s.width}, out);
              return out;
            }, 0.0);
  }
}

TEST_P(CudaDitOpsTest, VaeMidBlockAttention) {
  // One head of 512 channels over every pixel (the SD VAE's mid block at
  // 8x8 and 16x16 latents' pixels): two GEMMs and a softmax a sample
  // (MatmulAttention).
  for (int32_t tokens : {64, 256}) {
    const int64_t rows = int64_t(batch_) * tokens;
    auto qkv = RandomValues(size_t(rows * 3 * 512), 26, dtype(), -1.0f, 1.0f);
    const DitAttentionParams p{1, 512, float(1.0 / std::sqrt(512.0))};
    Compare(absl::StrCat("attention L=", tokens, " 1x512"), {{{rows, 3 * 512}, qkv}},
            [&](DitOps& ops, std::vector<Tensor>& t) {
              Tensor out = ops.Scratch(9, rows, 512);
              ops.Attention(t[0], p, out);
              return out;
            });
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaDitOpsTest,
                         ::testing::Values(OpCase{DType::kF32, 1}, OpCase{DType::kF32, 3}, OpCase{DType::kBF16, 1},
                                           OpCase{DType::kBF16, 3}, OpCase{DType::kF16, 1}, OpCase{DType::kF16, 3}),
                         [](const ::testing::TestParamInfo<OpCase>& info) {
                           return absl::StrCat(DtypeName(info.param.dtype), "_batch", info.param.batch);
                         });

TEST(CudaDitOpsGraphTest, AnotherOpSequenceAtACapturedBatchFailsInsteadOfReplaying) {
  auto ops = MakeCudaOps(DType::kBF16, /*graphs=*/true);
  TERN_SKIP_WITHOUT_GPU(ops);
  const std::vector<float> t = {1.0f, 2.0f};
  const std::vector<int32_t> y = {0, 1};
  const std::vector<float> values(2 * 64, 0.5f);
  const auto pass = [&](bool silu) {
    EXPECT_TRUE(ops->BeginStep({.timesteps = t, .labels = y, .image = {}}).ok());
    Tensor x = ops->Scratch(0, 2, 64);
    ops->CopyFromHost(values.data(), x);
    if (silu) {
      ops->Silu(x, x);
    } else {
      ops->GeluTanh(x);
    }
    return ops->FinishStep();
  };
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(pass(true).ok());  // eager, capture, replay
  const absl::Status other = pass(false);
  EXPECT_EQ(other.code(), absl::StatusCode::kInternal) << other;
  EXPECT_NE(other.message().find("issued other ops"), std::string::npos) << other;
  EXPECT_TRUE(ops->Health().ok()) << ops->Health();
  EXPECT_TRUE(pass(false).ok());  // the graph was dropped: eager again
}

// The labels are staged first in a pass; a larger host input later in the
// same pass outgrows the staging area, and the class embedding, which reads
// the labels after that, must find them in the new one.
TEST(CudaDitOpsStagingTest, LabelsSurviveTheStagingAreaGrowingInTheirPass) {
  auto ops = MakeCudaOps(DType::kBF16);
  TERN_SKIP_WITHOUT_GPU(ops);
  constexpr int64_t kRows = 4, kCols = 8;
  std::vector<float> values(kRows * kCols);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i);
  auto table = ops->UploadTable(values, kRows, kCols);
  ASSERT_TRUE(table.ok()) << table.status();
  const auto pass = [&](const std::vector<int32_t>& labels, int64_t input_cols) {
    const std::vector<float> t(labels.size(), 1.0f);
    const int64_t batch = int64_t(labels.size());
    EXPECT_TRUE(ops->BeginStep({.timesteps = t, .labels = labels, .image = {}}).ok());
    const std::vector<float> input(size_t(batch * input_cols), 0.25f);
    ops->CopyFromHost(input.data(), ops->Scratch(0, batch, input_cols));
    const Tensor out = ops->Scratch(1, batch, kCols);
    ops->EmbedClasses(**table, out);
    const absl::Status status = ops->FinishStep();
    EXPECT_TRUE(status.ok()) << status;
    std::vector<float> got(size_t(batch * kCols));
    ops->ReadToHost(out, got.data());
    return got;
  };
  const auto expect_rows = [&](const std::vector<int32_t>& labels, const std::vector<float>& got) {
    for (size_t b = 0; b < labels.size(); ++b) {
      for (int64_t c = 0; c < kCols; ++c) {
        EXPECT_EQ(got[b * kCols + c], values[labels[b] * kCols + c]) << "sample " << b << " col " << c;
      }
    }
  };
  expect_rows({2}, pass({2}, 16));
  // 2 x 40000 floats (320 KB) outgrow the first pass's 64 KB of staging.
  expect_rows({3, 1}, pass({3, 1}, 40000));
  expect_rows({0, 3, 2}, pass({0, 3, 2}, 200000));
  // A label outside the table (the model checks labels; the ops do not)
  // writes NaN instead of reading past the table.
  const std::vector<float> bad = pass({1, 99}, 16);
  EXPECT_EQ(bad[0], values[kCols]);
  for (int64_t c = 0; c < kCols; ++c) EXPECT_TRUE(std::isnan(bad[kCols + c])) << c;
  EXPECT_TRUE(ops->Health().ok()) << ops->Health();
}

TEST(CudaDitOpsCreateTest, RefusesOtherDtypes) {
  CudaDitOpsOptions options;
  options.compute_dtype = DType::kI8;
  const auto ops = CudaDitOps::Create(options);
  EXPECT_EQ(ops.status().code(), absl::StatusCode::kInvalidArgument) << ops.status();
}

}  // namespace
}  // namespace tern::runtime
