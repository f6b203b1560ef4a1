// CudaBackend's step lifecycle: BeginStep stages and uploads the step's
// metadata and picks eager, capture or replay for decode graphs; EndForward
// instantiates or replays the step's graph; FinishStep synchronizes and
// reports the step's first error (a device fault poisons the backend).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention/paged_decode_attention.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_backend_impl.h"
#include "runtime/cuda/cuda_device_buffer.h"
#include "runtime/cuda/decode_graph_keys.h"

namespace tern::runtime {

int32_t CudaBackend::DecodeGraphBatchSize(int32_t num_seqs) const {
  if (!options_.cuda_graphs) return 0;
  return GraphBatchBucket(num_seqs);
}

std::vector<std::pair<int32_t, int32_t>> CudaBackend::DecodeGraphShapes(int32_t max_seqs, int32_t max_context) const {
  if (!options_.cuda_graphs) return {};
  return DecodeGraphKeyShapes(max_seqs, max_context);
}

CudaBackend::GraphStats CudaBackend::graph_stats() const { return impl_->stats; }

absl::Status CudaBackend::BeginStep(const ForwardBatch& batch) {
  Impl& m = *impl_;
  if (m.errors.poisoned()) return absl::InternalError("the CUDA backend failed earlier and cannot run more steps");
  m.batch = &batch;
  // errors keep what was recorded since the last FinishStep: the
  // step's block copies come before BeginStep, and fail this step.
  m.mode = Impl::Mode::kEager;
  const int32_t num_seqs = batch.num_seqs();
  m.step_context_capacity = ContextCapacity(batch.context_lens);
  m.step_key = {num_seqs, m.step_context_capacity};
  m.step_graphable = options_.cuda_graphs && IsGraphBucket(num_seqs) && batch.IsDecodeOnly() &&
                     m.host_bound_keys.count(m.step_key) == 0;

  std::vector<int32_t>& row_seq = m.row_seq_host;
  row_seq.resize(size_t(batch.num_tokens()));
  m.max_query_len = 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    for (int32_t r = batch.query_start[s]; r < batch.query_start[s + 1]; ++r) row_seq[r] = s;
    m.max_query_len = std::max(m.max_query_len, batch.query_start[s + 1] - batch.query_start[s]);
  }
  const std::vector<int32_t>* lists[Impl::kNumMeta] = {
      &batch.token_ids,    &batch.positions,   &batch.slots,       &batch.query_start, &batch.context_lens,
      &batch.block_indptr, &batch.logits_rows, &row_seq,           &batch.block_ids};
  size_t total = 0;
  for (int i = 0; i < Impl::kNumMeta; ++i) {
    m.meta_offset[i] = total;
    total += lists[i]->size();
  }
  // A graph step reserves room for the largest block tables its key allows
  // (every sequence at the context capacity in every group, one-token
  // blocks at worst), so the device buffer does not move while the key's
  // graph lives.
  size_t reserve = total;
  if (m.step_graphable) {
    reserve = m.meta_offset[Impl::kBlockIds] +
              size_t(batch.num_kv_groups) * size_t(num_seqs) * size_t(m.step_context_capacity);
  }
  if (total > m.pinned_elems) {
    if (m.pinned != nullptr) cudaFreeHost(m.pinned);
    m.pinned = nullptr;
    m.pinned_elems = 0;
    // The pinned buffer may still feed an earlier step's copies.
    RETURN_IF_CUDA(cudaStreamSynchronize(m.stream), "waiting for the previous step");
    RETURN_IF_CUDA(cudaMallocHost(&m.pinned, total * 2 * sizeof(int32_t)), "allocating pinned staging");
    m.pinned_elems = total * 2;
  }
  if (reserve * sizeof(int32_t) > m.meta_device.bytes()) {
    m.ReserveTracked(m.meta_device, 2 * reserve * sizeof(int32_t), "allocating step metadata");
  }
  for (int i = 0; i < Impl::kNumMeta; ++i) {
    if (!lists[i]->empty()) {
      std::memcpy(m.pinned + m.meta_offset[i], lists[i]->data(), lists[i]->size() * sizeof(int32_t));
    }
  }
  // One copy for all the step's metadata.
  if (total > 0) {
    m.Record(cudaMemcpyAsync(m.meta_device.data(), m.pinned, total * sizeof(int32_t), cudaMemcpyHostToDevice,
                             m.stream),
             "uploading step metadata");
  }
  m.decode_step = num_seqs > 0;
  for (int32_t s = 0; s < num_seqs; ++s) {
    m.decode_step = m.decode_step && batch.query_start[s + 1] - batch.query_start[s] == 1;
  }
  if (m.decode_step && m.decode_shape.num_heads > 0) {
    m.decode_shape.num_seqs = num_seqs;
    m.ReserveTracked(m.decode_workspace,
                     kernels::PagedDecodeAttentionWorkspaceBytes(m.decode_shape, m.step_context_capacity),
                     "allocating the decode attention workspace");
  }
  // An error already (the block copies, a buffer that could not grow): the
  // step fails with it, reported and cleared as FinishStep does (a fault
  // poisons the backend).
  if (!m.errors.ok()) return FinishStep();

  if (m.step_graphable) {
    const Impl::Mode next = m.graphs[m.step_key].Next(m.generation);
    if (next == Impl::Mode::kCapture) {
      RETURN_IF_CUDA(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "starting graph capture");
    }
    m.mode = next;
  }
  return absl::OkStatus();
}

void CudaBackend::EndForward() {
  Impl& m = *impl_;
  switch (m.mode) {
    case Impl::Mode::kEager:
      ++m.stats.eager;
      // Every buffer this pass touched now has its size: capture next time.
      if (m.step_graphable) m.graphs[m.step_key].MarkWarmed(m.generation);
      break;
    case Impl::Mode::kCapture: {
      cudaGraph_t recorded = nullptr;
      const cudaError_t ended = cudaStreamEndCapture(m.stream, &recorded);
      m.Record(ended, "ending graph capture");
      PassGraph& graph = m.graphs[m.step_key];
      if (ended == cudaSuccess && m.errors.ok()) {
        const cudaError_t made = graph.Instantiate(recorded, m.generation);
        m.Record(made, "instantiating a graph");
        if (made == cudaSuccess) {
          ++m.stats.captured;
          // Captured work did not run: run it now.
          m.Record(cudaGraphLaunch(graph.exec(), m.stream), "launching a graph");
        }
      }
      if (recorded != nullptr) cudaGraphDestroy(recorded);
      break;
    }
    case Impl::Mode::kReplay:
      ++m.stats.replayed;
      m.Record(cudaGraphLaunch(m.graphs[m.step_key].exec(), m.stream), "launching a graph");
      break;
  }
  m.mode = Impl::Mode::kEager;
}

absl::Status CudaBackend::Health() const {
  if (!impl_->errors.poisoned()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("the CUDA device failed and cannot run more steps: ", impl_->errors.fatal_error()));
}

absl::Status CudaBackend::FinishStep() {
  Impl& m = *impl_;
  if (m.mode != Impl::Mode::kEager) {
    // A pass that never reached EndForward: drop a half-recorded graph.
    if (m.mode == Impl::Mode::kCapture) {
      cudaGraph_t recorded = nullptr;
      cudaStreamEndCapture(m.stream, &recorded);
      if (recorded != nullptr) cudaGraphDestroy(recorded);
      m.Record(cudaErrorStreamCaptureInvalidated, "a step ended during graph capture");
    }
    m.mode = Impl::Mode::kEager;
  }
  m.Record(cudaStreamSynchronize(m.stream), "step");
  m.Record(cudaGetLastError(), "step");
  return m.errors.Finish();
}

}  // namespace tern::runtime
