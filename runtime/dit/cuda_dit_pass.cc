// A CUDA DiT ops pass: BeginStep, scratch, host staging, graph capture and
// replay, FinishStep and ReadToHost (cuda_dit_ops.h, "CUDA graphs").
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/dit/dit_kernels.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/dit/cuda_dit_ops_impl.h"

namespace tern::runtime {

using namespace cuda_dit;  // NOLINT: the shared internal types of cuda_dit_ops_impl.h

absl::Status CudaDitOps::Health() const {
  if (impl_->errors.poisoned()) {
    return absl::InternalError(absl::StrCat("CUDA DiT ops are unusable: ", impl_->errors.fatal_error()));
  }
  return absl::OkStatus();
}

absl::Status CudaDitOps::BeginStep(const DitStep& step) {
  Impl& m = *impl_;
  RETURN_IF_ERROR(Health());
  if (!m.pending.ok()) {
    absl::Status pending = m.pending;
    m.pending = absl::OkStatus();
    return pending;
  }
  if (step.labels.size() != step.timesteps.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dit step: ", step.timesteps.size(), " timesteps but ", step.labels.size(), " labels"));
  }
  m.batch = step.batch();
  m.eager_pass = step.eager;
  m.linear_rows_per_sample = 0;
  m.pass_key = {int32_t(step.pass), m.batch, step.image.height, step.image.width, step.variant};
  if (m.graphs_enabled && step.variant != 0 && !m.eager_pass && m.graphs.count(m.pass_key) == 0) {
    if (m.variant_graphs >= Impl::kMaxVariantGraphs) {
      m.eager_pass = true;
    } else {
      ++m.variant_graphs;
    }
  }
  m.timesteps.assign(step.timesteps.begin(), step.timesteps.end());
  m.staged = 0;
  m.signature = uint64_t(m.batch) * 4 + uint64_t(step.pass);
  m.Mix(step.variant);
  m.Mix(uint64_t(uint32_t(step.image.height)) << 32 | uint32_t(step.image.width));
  m.events_used = 0;
  m.mode = Impl::Mode::kEager;
  if (m.graphs_enabled && m.batch > 0 && !m.eager_pass) {
    m.mode = m.graphs[m.pass_key].Next(m.generation);
    if (m.mode == Impl::Mode::kCapture) {
      RETURN_IF_CUDA(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "starting graph capture");
    }
  }
  if (m.profile) m.MarkEvent(kOtherOp);
  const size_t bytes = step.labels.size() * sizeof(int32_t);  // none in a decode pass
  m.labels_offset = m.staged;
  auto region = m.Stage(std::max<size_t>(bytes, 4));
  if (region.first != nullptr && bytes > 0) {
    std::memcpy(region.first, step.labels.data(), bytes);
    if (m.mode != Impl::Mode::kReplay) {
      m.Record(cudaMemcpyAsync(region.second, region.first, bytes, cudaMemcpyHostToDevice, m.stream), "labels");
    }
  }
  return absl::OkStatus();
}

Tensor CudaDitOps::Scratch(int slot, int64_t rows, int64_t cols) {
  Impl& m = *impl_;
  DeviceBuffer& buffer = m.scratch[slot];
  const size_t bytes = size_t(std::max<int64_t>(rows, 1)) * size_t(std::max<int64_t>(cols, 1)) * m.element_bytes;
  if (bytes > buffer.bytes()) {
    if (m.mode == Impl::Mode::kCapture) {
      m.Fail(absl::StrCat("scratch slot ", slot, " grew during graph capture"));
    } else {
      m.Record(buffer.Reserve(bytes), absl::StrCat("allocating scratch slot ", slot));
      ++m.generation;
    }
  }
  return Tensor{buffer.data(), m.dtype, rows, cols, cols};
}

Tensor CudaDitOps::QuantizedScratch(int slot, int64_t rows, int64_t cols, DType codes) {
  CHECK(codes == DType::kI8 || codes == DType::kF8E4M3) << DTypeSafetensorsName(codes) << " is not a code type";
  Impl& m = *impl_;
  Impl::QuantizedSlot& buffer = m.quantized_scratch[slot];
  const int64_t stride = (std::max<int64_t>(cols, 1) + 15) / 16 * 16;
  const size_t rows_kept = size_t(std::max<int64_t>(rows, 1));
  void* data = m.Workspace(buffer.codes, rows_kept * size_t(stride), "quantized scratch codes");
  void* scales = m.Workspace(buffer.scales, rows_kept * sizeof(float), "quantized scratch scales");
  Tensor t{data, codes, rows, cols, stride};
  t.row_scales = static_cast<float*>(scales);
  return t;
}

void CudaDitOps::CopyFromHost(const float* src, Tensor dst) {
  Impl& m = *impl_;
  const bool enqueue = m.Enter(kOtherOp, 1);
  m.Mix(dst);
  const size_t bytes = size_t(dst.rows) * dst.cols * sizeof(float);
  if (bytes == 0) return;
  auto region = m.Stage(bytes);
  if (region.first == nullptr) return;
  std::memcpy(region.first, src, bytes);
  if (enqueue) m.UploadFloat(region, dst, "copy from host");
}

absl::Status CudaDitOps::FinishStep() {
  Impl& m = *impl_;
  if (m.profile) m.MarkEvent(kOtherOp);
  PassGraph* graph = m.graphs_enabled && m.batch > 0 && !m.eager_pass ? &m.graphs[m.pass_key] : nullptr;
  switch (m.mode) {
    case Impl::Mode::kCapture: {
      cudaGraph_t recorded = nullptr;
      const cudaError_t ended = cudaStreamEndCapture(m.stream, &recorded);
      m.Record(ended, "ending graph capture");
      if (ended == cudaSuccess && m.errors.ok()) {
        const cudaError_t made = graph->Instantiate(recorded, m.generation, m.signature);
        m.Record(made, "instantiating a graph");
        if (made == cudaSuccess) {
          ++m.stats.captured;
          m.Record(cudaGraphLaunch(graph->exec(), m.stream), "launching a graph");
        }
      }
      if (recorded != nullptr) cudaGraphDestroy(recorded);
      break;
    }
    case Impl::Mode::kReplay:
      if (m.signature != graph->signature()) {
        // Not the pass the graph recorded: run nothing, drop the graph.
        m.Fail(absl::StrCat("a pass of batch ", m.batch,
                            " issued other ops, shapes or buffers than the CUDA graph recorded for that batch"));
        graph->Reset();
      } else if (m.errors.ok()) {
        ++m.stats.replayed;
        m.Record(cudaGraphLaunch(graph->exec(), m.stream), "launching a graph");
      }
      break;
    case Impl::Mode::kEager:
      ++m.stats.eager;
      if (graph != nullptr) graph->MarkWarmed(m.generation);
      break;
  }
  m.mode = Impl::Mode::kEager;
  m.Record(cudaStreamSynchronize(m.stream), "dit step");
  m.Record(cudaGetLastError(), "dit step");
  for (char* p : m.retired_pinned) cudaFreeHost(p);
  m.retired_pinned.clear();
  m.retired_device.clear();
  if (m.profile && m.errors.ok()) {
    m.times = OpTimes{};
    for (size_t i = 0; i + 1 < m.events_used; ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, m.events[i], m.events[i + 1]);
      (m.event_kinds[i] == kLinearOp ? m.times.linear_ms
       : m.event_kinds[i] == kAttentionOp ? m.times.attention_ms
                                          : m.times.other_ms) += ms;
    }
  }
  if (m.errors.ok()) return absl::OkStatus();
  const absl::Status status = m.errors.Finish();
  cudaGetLastError();
  return status;
}

void CudaDitOps::ReadToHost(Tensor src, float* dst) {
  Impl& m = *impl_;
  const size_t count = size_t(src.rows) * src.cols;
  if (count == 0) return;
  // After the pass: its own buffer, never one a graph points into.
  DeviceBuffer& device = m.read_buffer;
  cudaError_t error = device.Reserve(count * sizeof(float));
  if (error == cudaSuccess) {
    error = kernels::LaunchDitToFloat(m.type, src.rows, src.cols, src.data, src.stride,
                                      static_cast<float*>(device.data()), m.stream);
  }
  if (error == cudaSuccess) {
    error = cudaMemcpyAsync(dst, device.data(), count * sizeof(float), cudaMemcpyDeviceToHost, m.stream);
  }
  const cudaError_t synced = cudaStreamSynchronize(m.stream);
  if (error == cudaSuccess) error = synced;
  if (error != cudaSuccess) {
    std::fill(dst, dst + count, std::numeric_limits<float>::quiet_NaN());
    if (m.pending.ok()) m.pending = CudaStatus(error, "reading a DiT result to the host");
    if (cudaDeviceSynchronize() != cudaSuccess) m.errors.Poison(m.pending.message());
    cudaGetLastError();
  }
}

}  // namespace tern::runtime
