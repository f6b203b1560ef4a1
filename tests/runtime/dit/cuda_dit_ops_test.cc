// CudaDitOps against CpuDitOps op by op (fp32, bf16, fp16; 1 and 3
// samples; odd token counts and DiT-XL/2's head_dim 72), the demo DiT's
// forward pass and sampler goldens on CUDA, batch invariance (bitwise) and
// CUDA graph capture / replay; a head_dim-72, 256-token DiT through batches
// 1, 8, 64 and 1 on one ops (graphs, profile), as tern-dit-bench runs it.
// Label gpu: every test skips without a GPU.
//
// Tolerances: an op's error is max |gpu - cpu| / max |cpu| over its output
// (printed with the worst element). fp32 matches to 2e-5 (accumulation order
// only; attention and GELU use other exponentials); fp16 and bf16 round
// inputs and outputs to 11 and 8 significant bits: 4e-3 and 2e-2, as
// tests/kernels/cuda_test_util.h states for every kernel.
#include "runtime/dit/cuda_dit_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/dit/vae_decoder.h"
#include "runtime/model/dtype.h"
#include "runtime/model/safetensors.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

std::unique_ptr<CudaDitOps> MakeOps(DType dtype, bool graphs = false) {
  CudaDitOpsOptions options;
  options.compute_dtype = dtype;
  options.cuda_graphs = graphs;
  auto ops = CudaDitOps::Create(options);
  if (!ops.ok()) {
    EXPECT_EQ(ops.status().code(), absl::StatusCode::kFailedPrecondition) << ops.status();
    return nullptr;
  }
  return std::move(*ops);
}

#define SKIP_WITHOUT_GPU(ops) \
  if ((ops) == nullptr) GTEST_SKIP() << "no CUDA device"

const char* Name(DType d) { return d == DType::kF32 ? "f32" : d == DType::kF16 ? "f16" : "bf16"; }

double Tolerance(DType d) { return d == DType::kF32 ? 2e-5 : d == DType::kF16 ? 4e-3 : 2e-2; }

float RoundTo(DType d, float v) {
  if (d == DType::kBF16) return BFloat16ToFloat(FloatToBFloat16(v));
  if (d == DType::kF16) return HalfToFloat(FloatToHalf(v));
  return v;
}

// Random values in [lo, hi], rounded to `d` so both sides see the same inputs.
std::vector<float> Random(size_t n, uint32_t seed, DType d, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = RoundTo(d, dist(gen));
  return v;
}

// max |got - want| / max |want|, and where the worst element is.
void ExpectClose(const std::string& what, const std::vector<float>& want, const std::vector<float>& got, int64_t cols,
                 double tolerance) {
  ASSERT_EQ(want.size(), got.size()) << what;
  double scale = 1e-30, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, double(std::abs(want[i])));
    const double d = std::abs(double(got[i]) - double(want[i]));
    if (!(d <= worst)) {  // NaN lands here too
      worst = std::isnan(d) ? INFINITY : d;
      at = i;
    }
  }
  const double error = worst / scale;
  std::printf("%-40s max error %.3g of max |cpu| %.3g (%.3g relative), worst at row %zu col %zu: cpu %.6g cuda %.6g\n",
              what.c_str(), worst, scale, error, at / size_t(cols), at % size_t(cols), want[at], got[at]);
  EXPECT_LE(error, tolerance) << what << ": row " << at / size_t(cols) << " col " << at % size_t(cols) << " cpu "
                              << want[at] << " cuda " << got[at];
}

TensorView View(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values) {
  TensorView t;
  t.name = name;
  t.dtype = DType::kF32;
  t.shape = shape;
  t.data = reinterpret_cast<const uint8_t*>(values.data());
  t.nbytes = values.size() * sizeof(float);
  return t;
}

struct OpCase {
  DType dtype;
  int32_t batch;
};

class CudaDitOpsTest : public ::testing::TestWithParam<OpCase> {
 protected:
  void SetUp() override {
    gpu_ = MakeOps(GetParam().dtype);
    if (gpu_ == nullptr) GTEST_SKIP() << "no CUDA device";
    batch_ = GetParam().batch;
    for (int b = 0; b < batch_; ++b) {
      timesteps_.push_back(b == 0 ? 999.0f : b == 1 ? 0.0f : 500.5f + b);
      labels_.push_back(b % 3);
    }
  }
  DType dtype() const { return GetParam().dtype; }
  std::string Label(const std::string& op) const {
    return absl::StrCat(op, " ", Name(dtype()), " B=", batch_);
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
    ExpectClose(Label(what), results[0], results[1], cols, tolerance < 0 ? Tolerance(dtype()) : tolerance);
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
    const auto w = Random(size_t(s.out * s.in), 1, dtype());
    const auto bias = Random(size_t(s.out), 2, dtype());
    const TensorView wv = View("w", {s.out, s.in}, w);
    const TensorView bv = View("b", {s.out}, bias);
    auto cpu_w = cpu_.PrepareLinear(wv, s.bias ? &bv : nullptr);
    auto gpu_w = gpu_->PrepareLinear(wv, s.bias ? &bv : nullptr);
    ASSERT_TRUE(cpu_w.ok() && gpu_w.ok());
    const int64_t rows = batch_ * s.tokens;
    Compare(absl::StrCat("linear ", s.in, "->", s.out, " x", s.tokens, s.bias ? " +b" : ""),
            {{{rows, s.in}, Random(size_t(rows * s.in), 3, dtype())}}, [&](DitOps& ops, std::vector<Tensor>& in) {
              Tensor out = ops.Scratch(9, rows, s.out);
              ops.Linear(in[0], &ops == &cpu_ ? **cpu_w : **gpu_w, out);
              return out;
            });
    // The MLP's first layer: CUDA applies GELU in the GEMM's epilogue, the
    // CPU runs Linear then GeluTanh.
    Compare(absl::StrCat("linear+gelu ", s.in, "->", s.out, " x", s.tokens, s.bias ? " +b" : ""),
            {{{rows, s.in}, Random(size_t(rows * s.in), 3, dtype())}}, [&](DitOps& ops, std::vector<Tensor>& in) {
              Tensor out = ops.Scratch(9, rows, s.out);
              ops.LinearGeluTanh(in[0], &ops == &cpu_ ? **cpu_w : **gpu_w, out);
              return out;
            });
  }
}

TEST_P(CudaDitOpsTest, PatchifyAndUnpatchify) {
  const DitPatchGeometry in{4, 8, 2};
  Compare("patchify", {{{batch_, in.pixels()}, Random(size_t(batch_ * in.pixels()), 4, dtype())}},
          [&](DitOps& ops, std::vector<Tensor>& t) {
            Tensor out = ops.Scratch(9, batch_ * in.tokens(), 16);
            ops.Patchify(t[0], in, out);
            return out;
          }, 0.0);
  const DitPatchGeometry out{8, 8, 2};  // learn_sigma: 8 channels out, keep 4
  Compare("unpatchify", {{{batch_ * out.tokens(), 32}, Random(size_t(batch_ * out.tokens() * 32), 5, dtype())}},
          [&](DitOps& ops, std::vector<Tensor>& t) {
            Tensor images = ops.Scratch(9, batch_, 4 * 64);
            ops.Unpatchify(t[0], out, 4, images);
            return images;
          }, 0.0);
}

TEST_P(CudaDitOpsTest, EmbeddingsAndPointwise) {
  const int64_t tokens = 16, d = 96;
  const auto table = Random(size_t(tokens * d), 6, dtype());
  const auto classes = Random(size_t(4 * d), 7, dtype());
  auto cpu_pos = cpu_.UploadTable(table, tokens, d);
  auto gpu_pos = gpu_->UploadTable(table, tokens, d);
  const TensorView cv = View("classes", {4, d}, classes);
  auto cpu_cls = cpu_.UploadTable(cv, 0);
  auto gpu_cls = gpu_->UploadTable(cv, 0);
  ASSERT_TRUE(cpu_pos.ok() && gpu_pos.ok() && cpu_cls.ok() && gpu_cls.ok());
  const int64_t rows = batch_ * tokens;
  const auto x = Random(size_t(rows * d), 8, dtype(), -6.0f, 6.0f);
  const auto y = Random(size_t(rows * d), 9, dtype());
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
  const auto x = Random(size_t(rows * d), 10, dtype(), 2.0f, 6.0f);
  const auto modulation = Random(size_t(batch_ * 6 * d), 11, dtype());
  const auto y = Random(size_t(rows * d), 12, dtype());
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
    const auto x = Random(size_t(rows * d), 14, dtype(), 2.0f, 6.0f);
    const auto modulation = Random(size_t(batch_ * 6 * d), 15, dtype());
    const auto y = Random(size_t(rows * d), 16, dtype(), -3.0f, 3.0f);
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
    auto qkv = Random(size_t(rows * 3 * width), 13, dtype(), -3.0f, 3.0f);
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
    const auto w = Random(size_t(s.out) * s.in * s.kernel * s.kernel, 21, dtype());
    const auto bias = Random(size_t(s.out), 22, dtype());
    const TensorView wv = View("w", {s.out, s.in, s.kernel, s.kernel}, w);
    const TensorView bv = View("b", {s.out}, bias);
    auto cpu_c = cpu_.PrepareConv2d(wv, &bv);
    auto gpu_c = gpu_->PrepareConv2d(wv, &bv);
    ASSERT_TRUE(cpu_c.ok() && gpu_c.ok());
    const int64_t rows = int64_t(batch_) * s.height * s.width;
    Compare(absl::StrCat("conv ", s.kernel, "x", s.kernel, " ", s.in, "->", s.out, " ", s.height, "x", s.width),
            {{{rows, s.in}, Random(size_t(rows * s.in), 23, dtype())}}, [&](DitOps& ops, std::vector<Tensor>& in) {
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
    const auto x = Random(size_t(rows * s.channels), 24, dtype(), 3.0f, 7.0f);
    const auto affine = Random(size_t(2 * s.channels), 25, dtype());
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
  // 8x8 and 16x16 latents' pixels), on the per-row kernel.
  for (int32_t tokens : {64, 256}) {
    const int64_t rows = int64_t(batch_) * tokens;
    auto qkv = Random(size_t(rows * 3 * 512), 26, dtype(), -1.0f, 1.0f);
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
                           return absl::StrCat(Name(info.param.dtype), "_batch", info.param.batch);
                         });

constexpr int64_t kPixels = 1024;  // the demo: 1 x 32 x 32

std::vector<float> Forward(DitModel& model, const std::vector<float>& x, const std::vector<float>& t,
                           const std::vector<int32_t>& y) {
  std::vector<float> eps(x.size());
  const absl::Status status = model.Forward({x, t, y, {}}, absl::MakeSpan(eps));
  EXPECT_TRUE(status.ok()) << status;
  return eps;
}

TEST(CudaDitModelTest, ForwardMatchesPyTorch) {
  const auto& golden = dit_test::Golden()["forward"];
  const std::vector<float> x = GaussianNoise(42, 2 * kPixels);
  const auto t = golden["t"].get<std::vector<float>>();
  const auto y = golden["y"].get<std::vector<int32_t>>();
  const auto want = golden["eps"].get<std::vector<double>>();
  // fp32: the CPU test's bounds (PyTorch's own float32 run: 3e-6 / 3.7e-7;
  // 10x margin). bf16 / fp16: 8 / 11 significant bits through 8 blocks.
  const std::pair<DType, std::pair<double, double>> cases[] = {
      {DType::kF32, {3e-5, 4e-6}}, {DType::kF16, {3e-2, 5e-3}}, {DType::kBF16, {2e-1, 3e-2}}};
  for (const auto& [dtype, bounds] : cases) {
    auto ops = MakeOps(dtype, /*graphs=*/true);
    SKIP_WITHOUT_GPU(ops);
    auto model = DitModel::Load(dit_test::kDemoDitDir, ops.get());
    ASSERT_TRUE(model.ok()) << model.status();
    for (int pass = 0; pass < 3; ++pass) {  // eager, captured, replayed: the same eps
      const std::vector<float> eps = Forward(**model, x, t, y);
      double max_abs = 0.0, diff2 = 0.0, ref2 = 0.0;
      for (size_t i = 0; i < want.size(); ++i) {
        const double d = double(eps[i]) - want[i];
        max_abs = std::max(max_abs, std::abs(d));
        diff2 += d * d;
        ref2 += want[i] * want[i];
      }
      const double relative = std::sqrt(diff2 / ref2);
      std::printf("cuda %s pass %d: forward eps vs PyTorch float64: max abs error %.3g, relative (L2) error %.3g\n",
                  Name(dtype), pass, max_abs, relative);
      EXPECT_LT(max_abs, bounds.first) << Name(dtype) << " pass " << pass;
      EXPECT_LT(relative, bounds.second) << Name(dtype) << " pass " << pass;
    }
    const auto stats = ops->graph_stats();
    EXPECT_EQ(stats.eager, 1);
    EXPECT_EQ(stats.captured, 1);
    EXPECT_EQ(stats.replayed, 1);
  }
}

// A sample's eps is bitwise the same alone, batched, in another place of the
// batch, and whether its pass ran eagerly, was captured or replayed.
TEST(CudaDitModelTest, SamplesAreBitwiseIndependentOfTheirBatch) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    auto ops = MakeOps(dtype, /*graphs=*/true);
    SKIP_WITHOUT_GPU(ops);
    auto model = DitModel::Load(dit_test::kDemoDitDir, ops.get());
    ASSERT_TRUE(model.ok()) << model.status();
    const std::vector<float> noise = GaussianNoise(5, 4 * kPixels);
    const std::vector<float> t = {999.0f, 500.0f, 20.0f, 0.0f};
    const std::vector<int32_t> y = {3, 10, 7, 0};
    std::vector<std::vector<float>> alone(4);
    for (int repeat = 0; repeat < 3; ++repeat) {  // batch 1: eager, capture, replay
      for (int b = 0; b < 4; ++b) {
        const std::vector<float> x(noise.begin() + b * kPixels, noise.begin() + (b + 1) * kPixels);
        const std::vector<float> eps = Forward(**model, x, {t[b]}, {y[b]});
        if (repeat == 0) {
          alone[b] = eps;
        } else {
          ASSERT_EQ(std::memcmp(eps.data(), alone[b].data(), kPixels * 4), 0)
              << Name(dtype) << ": sample " << b << " alone differs between repeats " << repeat << " and 0";
        }
      }
    }
    for (int repeat = 0; repeat < 3; ++repeat) {  // batch 4, and 4 reversed (same graph)
      const std::vector<float> batched = Forward(**model, noise, t, y);
      std::vector<float> reversed_x;
      for (int b = 3; b >= 0; --b) {
        reversed_x.insert(reversed_x.end(), noise.begin() + b * kPixels, noise.begin() + (b + 1) * kPixels);
      }
      const std::vector<float> reversed = Forward(**model, reversed_x, {t[3], t[2], t[1], t[0]}, {y[3], y[2], y[1], y[0]});
      for (int b = 0; b < 4; ++b) {
        int differing = 0;
        float worst = 0.0f;
        for (int64_t i = 0; i < kPixels; ++i) {
          const float d = std::abs(batched[b * kPixels + i] - alone[b][i]);
          differing += batched[b * kPixels + i] != alone[b][i];
          worst = std::max(worst, d);
        }
        EXPECT_EQ(differing, 0) << Name(dtype) << " repeat " << repeat << ": sample " << b << " batched differs from alone in "
                                << differing << " values, by up to " << worst;
        EXPECT_EQ(std::memcmp(reversed.data() + (3 - b) * kPixels, alone[b].data(), kPixels * 4), 0)
            << Name(dtype) << " repeat " << repeat << ": sample " << b << " differs in the reversed batch";
      }
    }
    std::printf("cuda %s: 4 samples alone, batched and reversed, eager / captured / replayed: bitwise equal\n",
                Name(dtype));
  }
}

TEST(CudaDitModelTest, GoldenSamplesOnCudaFp32) {
  auto ops = MakeOps(DType::kF32, /*graphs=*/true);
  SKIP_WITHOUT_GPU(ops);
  auto model = DitModel::Load(dit_test::kDemoDitDir, ops.get());
  ASSERT_TRUE(model.ok()) << model.status();
  auto pipeline = DitPipeline::Create(model->get());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  const auto& cases = dit_test::Golden()["samples"];
  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& c = cases[k];
    DitGenerateRequest r;
    r.class_label = c["class"].get<int32_t>();
    r.seed = c["seed"].get<uint64_t>();
    r.sampler = *ParseDiffusionSamplerKind(c["sampler"].get<std::string>());
    r.num_steps = c["steps"].get<int32_t>();
    r.guidance_scale = c["guidance"].get<double>();
    auto images = (*pipeline)->Generate(r);
    ASSERT_TRUE(images.ok()) << images.status();
    ASSERT_EQ(images->size(), 1u);
    const DitImage& image = (*images)[0];
    const auto want = c["pixels"].get<std::vector<int>>();
    ASSERT_EQ(image.pixels.size(), want.size());
    int max_diff = 0, differing = 0;
    double mean = 0.0;
    for (size_t i = 0; i < want.size(); ++i) {
      const int d = std::abs(int(image.pixels[i]) - want[i]);
      max_diff = std::max(max_diff, d);
      differing += d != 0;
      mean += image.sample[i];
    }
    mean /= double(want.size());
    std::printf("cuda f32 case %zu %s %d steps g %.0f class %d: max pixel difference %d (%d of %zu differ), mean %.9f vs %.9f\n",
                k, c["sampler"].get<std::string>().c_str(), c["steps"].get<int>(), c["guidance"].get<double>(),
                c["class"].get<int>(), max_diff, differing, want.size(), mean, c["mean"].get<double>());
    // The CPU test's bounds (dit_pipeline_test.cc): PyTorch's own float32
    // run has one pixel off by 1 in the 2-step case.
    EXPECT_LE(max_diff, 1) << "case " << k;
    EXPECT_LE(differing, 8) << "case " << k;
    EXPECT_NEAR(mean, c["mean"].get<double>(), 1e-4) << "case " << k;
  }
}

TEST(CudaDitOpsGraphTest, AnotherOpSequenceAtACapturedBatchFailsInsteadOfReplaying) {
  auto ops = MakeOps(DType::kBF16, /*graphs=*/true);
  SKIP_WITHOUT_GPU(ops);
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
  auto ops = MakeOps(DType::kBF16);
  SKIP_WITHOUT_GPU(ops);
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

// A DiT with DiT-XL/2's head_dim (72) and token count at 256 px (256), two
// blocks of 2 heads: the first shape where the staging area, the scratch
// slots and the graphs all have to grow and move between batch sizes.
DitConfig Head72Config() {
  DitConfig c;
  c.image_size = 32;
  c.in_channels = 4;
  c.patch_size = 2;
  c.hidden_size = 144;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_ratio = 4.0;
  c.num_classes = 10;
  c.null_class = 10;
  c.learn_sigma = true;
  return c;
}

// Random weights, uniform in +-1/sqrt(fan in) (biases +-0.05, the class
// table +-1),
// rounded to bf16 so every compute dtype sees the same network; no
// pos_embed (computed). Returns the directory.
std::string WriteHead72Model() {
  const std::string dir = ::testing::TempDir() + "/cuda_dit_head72";
  std::filesystem::create_directories(dir);
  std::vector<TensorSpec> specs;
  for (const DitTensorSpec& t : DitTensorLayout(Head72Config(), DitNaming::kTern)) {
    if (!t.optional) specs.push_back({t.name, DType::kF32, t.shape});
  }
  uint32_t seed = 1;
  const absl::Status s = WriteSafetensors(dir + "/model.safetensors", specs, [&](const TensorSpec& spec, uint8_t* out) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < spec.shape.size(); ++i) fan_in *= spec.shape[i];
    const bool table = spec.name.rfind("y_embedder", 0) == 0;  // the class table
    const float bound = spec.shape.size() == 1 ? 0.05f : table ? 1.0f : float(1.0 / std::sqrt(double(fan_in)));
    const std::vector<float> values = Random(size_t(spec.nbytes() / 4), seed++, DType::kBF16, -bound, bound);
    std::memcpy(out, values.data(), values.size() * sizeof(float));
  });
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

// The benchmark's sequence at a smaller scale: batches 1, 8, 64 and 1 again
// on the same ops (each eager, captured, replayed with graphs; eager and
// timed with profile), so the host staging, the scratch slots and the
// graphs grow and move between passes. Every sample matches the CPU and is
// bitwise the same at every batch size.
TEST(CudaDitModelTest, Head72At256TokensThroughGrowingBatches) {
  if (MakeOps(DType::kBF16) == nullptr) GTEST_SKIP() << "no CUDA device";
  const DitConfig config = Head72Config();
  ASSERT_EQ(config.head_dim(), 72);
  ASSERT_EQ(config.num_tokens(), 256);
  const std::string dir = WriteHead72Model();
  auto store = WeightStore::Open(dir);
  ASSERT_TRUE(store.ok()) << store.status();
  constexpr int64_t kMaxBatch = 64;
  const int64_t pixels = config.sample_elements();
  const std::vector<float> x = GaussianNoise(11, size_t(kMaxBatch * pixels));
  std::vector<float> t(kMaxBatch);
  std::vector<int32_t> y(kMaxBatch);
  for (int64_t b = 0; b < kMaxBatch; ++b) {
    t[b] = float((b * 37) % 1000);
    y[b] = b % 2 == 0 ? int32_t(b % config.num_classes) : config.null_class;  // as tern-dit-bench
  }
  // The CPU reference, once: CpuDitOps is batch invariant.
  CpuDitOps cpu;
  auto cpu_model = DitModel::Create(config, **store, &cpu);
  ASSERT_TRUE(cpu_model.ok()) << cpu_model.status();
  const std::vector<float> want = Forward(**cpu_model, x, t, y);

  struct Mode {
    const char* name;
    bool graphs, profile;
  };
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    for (const Mode mode : {Mode{"graphs", true, false}, Mode{"profile", false, true}}) {
      CudaDitOpsOptions options;
      options.compute_dtype = dtype;
      options.cuda_graphs = mode.graphs;
      options.profile = mode.profile;
      auto ops = CudaDitOps::Create(options);
      ASSERT_TRUE(ops.ok()) << ops.status();
      auto model = DitModel::Create(config, **store, ops->get());
      ASSERT_TRUE(model.ok()) << model.status();
      std::vector<std::vector<float>> first(kMaxBatch);  // each sample's first eps
      int64_t passes = 0;
      for (const int64_t batch : {1, 8, 64, 1}) {
        for (int pass = 0; pass < 3; ++pass) {
          const std::string what = absl::StrCat(Name(dtype), " ", mode.name, " batch ", batch, " pass ", pass);
          std::vector<float> eps(size_t(batch * pixels));
          const absl::Status status =
              (*model)->Forward({absl::MakeConstSpan(x).subspan(0, size_t(batch * pixels)),
                                 absl::MakeConstSpan(t).subspan(0, size_t(batch)),
                                 absl::MakeConstSpan(y).subspan(0, size_t(batch)), {}},
                                absl::MakeSpan(eps));
          ASSERT_TRUE(status.ok()) << what << ": " << status;
          ++passes;
          if (pass == 0) {
            const std::vector<float> reference(want.begin(), want.begin() + batch * pixels);
            ExpectClose(what, reference, eps, pixels, dtype == DType::kF32 ? 1e-4 : 6e-2);
          }
          for (int64_t b = 0; b < batch; ++b) {
            const std::vector<float> sample(eps.begin() + b * pixels, eps.begin() + (b + 1) * pixels);
            if (first[b].empty()) {
              first[b] = sample;
              continue;
            }
            int differing = 0;
            for (int64_t i = 0; i < pixels; ++i) differing += sample[i] != first[b][i];
            EXPECT_EQ(differing, 0) << what << ": sample " << b << " differs from its first pass in " << differing
                                    << " of " << pixels << " values";
          }
        }
        if (mode.profile) {
          const auto times = (*ops)->op_times();
          EXPECT_GT(times.linear_ms, 0.0) << mode.name << " batch " << batch;
          EXPECT_GT(times.attention_ms, 0.0) << mode.name << " batch " << batch;
        }
      }
      EXPECT_TRUE((*ops)->Health().ok()) << (*ops)->Health();
      const auto stats = (*ops)->graph_stats();
      std::printf("cuda %s %s: %lld passes at batches 1, 8, 64, 1: %lld eager, %lld captured, %lld replayed\n",
                  Name(dtype), mode.name, (long long)passes, (long long)stats.eager, (long long)stats.captured,
                  (long long)stats.replayed);
      if (mode.graphs) {
        // Growing to 8 and 64 moves buffers, so batch 1 is captured again at the end.
        EXPECT_EQ(stats.captured, 4);
        EXPECT_EQ(stats.replayed, 4);
        EXPECT_EQ(stats.eager, 4);
      } else {
        EXPECT_EQ(stats.eager, passes);
      }
    }
  }
}

TEST(CudaDitOpsCreateTest, RefusesOtherDtypes) {
  CudaDitOpsOptions options;
  options.compute_dtype = DType::kI8;
  const auto ops = CudaDitOps::Create(options);
  EXPECT_EQ(ops.status().code(), absl::StatusCode::kInvalidArgument) << ops.status();
}

// A tiny latent DiT with its VAE (tern-mkmodel --arch dit --preset tiny):
// the DiT step and the VAE decode on CUDA against the CPU reference, and the
// decode bitwise the same alone and batched through graph capture and replay.
std::string MakeTinyLatentModel() {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("tern-cuda-latent-" + std::to_string(getpid()))).string();
  if (!std::filesystem::exists(dir + "/vae/config.json")) {
    const char* env_bin = std::getenv("TERN_BIN_DIR");
    const std::string bin = env_bin != nullptr && *env_bin != '\0' ? env_bin : TERN_BIN_DIR;
    const std::string cmd = bin + "/tern-mkmodel --arch dit --preset tiny --layout diffusers --seed 11 "
                                  "--dtype float32 --out " + dir + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  return dir;
}

TEST(CudaLatentDitTest, StepAndDecodeMatchTheCpuAndDecodesAreBatchInvariant) {
  if (MakeOps(DType::kF32) == nullptr) GTEST_SKIP() << "no CUDA device";
  const std::string dir = MakeTinyLatentModel();
  auto config = LoadDitConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  CpuDitOps cpu;
  auto cpu_model = DitModel::Load(dir, &cpu);
  auto cpu_vae = VaeDecoder::Load(dir + "/vae", config->vae, config->image_size, &cpu);
  ASSERT_TRUE(cpu_model.ok() && cpu_vae.ok());
  const int64_t n = config->sample_elements(), m = (*cpu_vae)->image_elements();
  const std::vector<float> x = GaussianNoise(3, 3 * n);
  const std::vector<float> t = {999.0f, 500.0f, 3.0f};
  const std::vector<int32_t> y = {1, 10, 4};
  std::vector<float> want_eps(3 * n), want_images(3 * m);
  ASSERT_TRUE((*cpu_model)->Forward({x, t, y, {}}, absl::MakeSpan(want_eps)).ok());
  ASSERT_TRUE((*cpu_vae)->Decode(x, absl::MakeSpan(want_images)).ok());
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    auto ops = MakeOps(dtype, /*graphs=*/true);
    auto model = DitModel::Load(dir, ops.get());
    auto vae = VaeDecoder::Load(dir + "/vae", config->vae, config->image_size, ops.get());
    ASSERT_TRUE(model.ok() && vae.ok());
    std::vector<float> eps(3 * n), images(3 * m);
    ASSERT_TRUE((*model)->Forward({x, t, y, {}}, absl::MakeSpan(eps)).ok());
    ExpectClose(absl::StrCat("tiny latent DiT eps ", Name(dtype)), want_eps, eps, n, 5 * Tolerance(dtype));
    // Batches 3, 1, 1, 1 (eager, then captured, then replayed at batch 1), 3.
    ASSERT_TRUE((*vae)->Decode(x, absl::MakeSpan(images)).ok());
    ExpectClose(absl::StrCat("tiny VAE decode ", Name(dtype)), want_images, images, m, 5 * Tolerance(dtype));
    for (int round = 0; round < 3; ++round) {
      for (int b = 0; b < 3; ++b) {
        std::vector<float> alone(m);
        ASSERT_TRUE((*vae)->Decode(absl::MakeConstSpan(x.data() + b * n, n), absl::MakeSpan(alone)).ok());
        ASSERT_TRUE(std::equal(alone.begin(), alone.end(), images.begin() + b * m))
            << Name(dtype) << " image " << b << " round " << round << " differs alone and batched";
      }
    }
    std::vector<float> again(3 * m);
    ASSERT_TRUE((*vae)->Decode(x, absl::MakeSpan(again)).ok());
    EXPECT_EQ(again, images) << Name(dtype);
    EXPECT_GT(ops->graph_stats().replayed, 0) << Name(dtype);
  }
}


// One VAE decodes latents of two sizes on one ops, at the same batch sizes
// (tern-vae-bench's sweep, which failed at 64x64 latents x 16 with "host
// staging grew in a replayed pass"): a graph is per (kind, batch, image
// shape), so a decode at a new latent size never replays another size's
// graph. The sequence first captures 8x8 x 16, then grows the other buffers
// with 16x16 x 1, captures 8x8 x 16 again and decodes 16x16 x 16, whose
// latents (64 KB) outgrow the staging area the 8x8 graph recorded; then two
// rounds over all four keys, the last replaying every one. Every decode
// equals its key's first bitwise, batched images equal their decode alone,
// and each size matches the CPU.
TEST(CudaLatentDitTest, DecodersOfTwoLatentSizesShareOneOpsAtEqualBatches) {
  if (MakeOps(DType::kF32) == nullptr) GTEST_SKIP() << "no CUDA device";
  const std::string dir = MakeTinyLatentModel();
  auto config = LoadDitConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto store = WeightStore::Open(dir + "/vae", "diffusion_pytorch_model");
  ASSERT_TRUE(store.ok()) << store.status();
  constexpr int64_t kBigBatch = 16;
  const std::vector<int32_t> sizes = {config->image_size, 2 * config->image_size};
  auto ops = MakeOps(DType::kBF16, /*graphs=*/true);
  ASSERT_NE(ops, nullptr);
  CpuDitOps cpu;
  std::map<int32_t, std::unique_ptr<VaeDecoder>> decoders;
  std::map<int32_t, std::vector<float>> latents, want;  // want: the CPU's decode of sample 0
  for (const int32_t size : sizes) {
    auto vae = VaeDecoder::Create(config->vae, size, **store, ops.get());
    ASSERT_TRUE(vae.ok()) << vae.status();
    latents[size] = GaussianNoise(uint64_t(size), size_t(kBigBatch * (*vae)->latent_elements()));
    auto cpu_vae = VaeDecoder::Create(config->vae, size, **store, &cpu);
    ASSERT_TRUE(cpu_vae.ok()) << cpu_vae.status();
    want[size].resize((*vae)->image_elements());
    ASSERT_TRUE((*cpu_vae)
                    ->Decode(absl::MakeConstSpan(latents[size]).subspan(0, (*vae)->latent_elements()),
                             absl::MakeSpan(want[size]))
                    .ok());
    decoders[size] = std::move(*vae);
  }

  std::map<std::pair<int32_t, int64_t>, std::vector<float>> first;  // by (latent size, batch)
  const auto decode3 = [&](int32_t size, int64_t batch) {
    VaeDecoder& vae = *decoders[size];
    const int64_t n = vae.latent_elements(), m = vae.image_elements();
    for (int pass = 0; pass < 3; ++pass) {
      const std::string what = absl::StrCat(size, "x", size, " latents x ", batch, ", pass ", pass);
      std::vector<float> images(size_t(batch * m));
      const absl::Status status =
          vae.Decode(absl::MakeConstSpan(latents[size]).subspan(0, size_t(batch * n)), absl::MakeSpan(images));
      ASSERT_TRUE(status.ok()) << what << ": " << status;
      std::vector<float>& reference = first[{size, batch}];
      if (reference.empty()) {
        reference = images;
      } else {
        ASSERT_TRUE(images == reference) << what << " differs from the first decode of its size and batch";
      }
      const std::vector<float>& alone = first[{size, 1}];
      if (batch > 1 && !alone.empty()) {
        ASSERT_TRUE(std::equal(alone.begin(), alone.end(), images.begin())) << what << ": image 0 differs alone";
      }
    }
  };
  const int32_t small = sizes[0], big = sizes[1];
  decode3(small, kBigBatch);
  decode3(big, 1);
  decode3(small, kBigBatch);
  decode3(big, kBigBatch);
  for (int round = 0; round < 2; ++round) {
    const auto before = ops->graph_stats();
    for (const int32_t size : sizes) {
      for (const int64_t batch : {int64_t(1), kBigBatch}) decode3(size, batch);
    }
    const auto after = ops->graph_stats();
    std::printf("round %d: %lld eager, %lld captured, %lld replayed\n", round,
                (long long)(after.eager - before.eager), (long long)(after.captured - before.captured),
                (long long)(after.replayed - before.replayed));
    if (round == 1) {  // nothing grows any more: every key replays its graph
      EXPECT_EQ(after.eager, before.eager);
      EXPECT_EQ(after.captured, before.captured);
      EXPECT_EQ(after.replayed - before.replayed, 12);
    }
  }
  for (const int32_t size : sizes) {
    ExpectClose(absl::StrCat("tiny VAE decode ", size, "x", size, " latents bf16"), want[size], first[{size, 1}],
                decoders[size]->image_elements(), 5 * Tolerance(DType::kBF16));
  }
  EXPECT_TRUE(ops->Health().ok()) << ops->Health();
}

}  // namespace
}  // namespace tern::runtime
