// CudaBackend's KV cache: allocation (zeroed, scales uploaded) and the
// bytes of one block.
#include "runtime/cuda/cuda_kv_cache.h"

#include <cuda_runtime.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "runtime/backend/kv_cache_spec.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_backend_impl.h"
#include "runtime/cuda/cuda_device_buffer.h"

namespace tern::runtime {

absl::StatusOr<std::unique_ptr<KvCache>> CudaBackend::AllocateKvCache(const KvCacheSpec& spec) {
  if (absl::Status status = ValidateKvCacheSpec(spec); !status.ok()) return status;
  if (spec.quantized() && spec.head_dim > 256) {
    return absl::UnimplementedError(absl::StrCat("a ", KvCacheDtypeName(spec.dtype), " KV cache needs head_dim <= 256; the model has ",
                                                 spec.head_dim));
  }
  Impl* impl = impl_.get();
  auto cache = std::make_unique<CudaKvCache>(spec, impl_->element_bytes, impl_->stream,
                                             [impl](cudaError_t error, const char* op) { impl->Record(error, op); });
  if (auto status = cache->Allocate(); !status.ok()) return status;
  RETURN_IF_CUDA(cudaStreamSynchronize(impl_->stream), "clearing the KV cache");
  return std::unique_ptr<KvCache>(std::move(cache));
}

size_t CudaBackend::KvBlockBytes(const KvCacheSpec& spec) const {
  return KvCacheBlockBytes(spec, impl_->element_bytes);
}

}  // namespace tern::runtime
