// PassGraph: one key of a CUDA graph cache over repeated passes (the LLM
// backend's decode steps, the DiT ops' passes). A key's pass runs eagerly
// first, so every buffer it touches reaches its size; the next time it is
// captured into a graph, which is instantiated and launched; after that it
// is replayed. The owner counts buffer moves in a generation: a graph (or a
// warm-up) of an older generation points at buffers that moved, so the key
// runs eagerly again and is recaptured. The owner keeps its own errors,
// stream and statistics; this holds one key's state and its graph.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tern::runtime {

class PassGraph {
 public:
  enum class Mode { kEager, kCapture, kReplay };

  PassGraph() = default;
  ~PassGraph() { Reset(); }
  PassGraph(const PassGraph&) = delete;
  PassGraph& operator=(const PassGraph&) = delete;

  // How the key's next pass runs when the owner's generation is `generation`.
  Mode Next(uint64_t generation) const {
    if (exec_ != nullptr && generation_ == generation) return Mode::kReplay;
    if (warmed_ && warm_generation_ == generation) return Mode::kCapture;
    return Mode::kEager;
  }
  // An eager pass ran at `generation`: the next one may be captured.
  void MarkWarmed(uint64_t generation) {
    warmed_ = true;
    warm_generation_ = generation;
  }
  // Makes `recorded` the key's graph at `generation` (an older one is
  // destroyed), with the owner's `signature` of the pass (0 when it keeps
  // none); the instantiation's error, which leaves the key without a graph.
  cudaError_t Instantiate(cudaGraph_t recorded, uint64_t generation, uint64_t signature = 0) {
    Reset();
    const cudaError_t made = cudaGraphInstantiate(&exec_, recorded, 0);
    if (made != cudaSuccess) {
      exec_ = nullptr;
      return made;
    }
    generation_ = generation;
    signature_ = signature;
    return cudaSuccess;
  }
  cudaGraphExec_t exec() const { return exec_; }
  uint64_t signature() const { return signature_; }
  // Forgets the graph and the warm-up (a replay that met another pass).
  void Reset() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    exec_ = nullptr;
    warmed_ = false;
  }

 private:
  bool warmed_ = false;
  uint64_t warm_generation_ = 0;
  cudaGraphExec_t exec_ = nullptr;
  uint64_t generation_ = 0;
  uint64_t signature_ = 0;
};

}  // namespace tern::runtime
