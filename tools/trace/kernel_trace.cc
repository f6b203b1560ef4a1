// libtern-kernel-trace.so: an LD_PRELOAD library that records every CUDA
// kernel a process runs (CUDA-graph nodes included) through CUPTI's activity
// API and writes one CSV row per kernel when the process exits:
//
//   TERN_KERNEL_TRACE=/tmp/trace.csv [TERN_CUPTI_LIBRARY=/path/libcupti.so] \
//     [TERN_KERNEL_TRACE_PROCESS=tern-run] LD_PRELOAD=libtern-kernel-trace.so build/bin/tern-run ...
//
// Columns: start_ns,end_ns,stream,grid_x,grid_y,grid_z,block_x,registers,name.
// tools/trace/summarize_trace.py turns the CSV into per-step tables. No
// CUPTI headers are needed at build time: the library is opened at run time
// and the few entry points and the kernel record's stable leading fields
// (shared by every CUpti_ActivityKernel version since the fourth) are
// declared here. Records that fail the layout's sanity checks are counted and
// reported instead of written.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

using CuptiResult = int;
constexpr int kConcurrentKernelKind = 10;  // CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL
constexpr size_t kBufferBytes = 8 << 20;

using RequestFn = void (*)(uint8_t**, size_t*, size_t*);
using CompleteFn = void (*)(void*, uint32_t, uint8_t*, size_t, size_t);

struct Cupti {
  CuptiResult (*enable)(int) = nullptr;
  CuptiResult (*register_callbacks)(RequestFn, CompleteFn) = nullptr;
  CuptiResult (*next_record)(uint8_t*, size_t, void**) = nullptr;
  CuptiResult (*flush_all)(uint32_t) = nullptr;
};

// The leading fields of CUpti_ActivityKernel4 and later.
struct KernelRecordPrefix {
  uint32_t kind;
  uint8_t cache_config;
  uint8_t shared_memory_config;
  uint16_t registers_per_thread;
  uint32_t partitioned_cache_requested;
  uint32_t partitioned_cache_executed;
  uint64_t start;
  uint64_t end;
  uint64_t completed;
  uint32_t device_id;
  uint32_t context_id;
  uint32_t stream_id;
  int32_t grid_x, grid_y, grid_z;
  int32_t block_x, block_y, block_z;
  int32_t static_shared_memory;
  int32_t dynamic_shared_memory;
  uint32_t local_memory_per_thread;
  uint32_t local_memory_total;
  uint32_t correlation_id;
  int64_t grid_id;
  const char* name;
};
static_assert(offsetof(KernelRecordPrefix, start) == 16, "CUPTI kernel record layout");
static_assert(offsetof(KernelRecordPrefix, name) == 104, "CUPTI kernel record layout");

struct Row {
  uint64_t start, end;
  uint32_t stream;
  int32_t grid_x, grid_y, grid_z, block_x;
  uint16_t registers;
  std::string name;
};

std::mutex g_mutex;
std::vector<Row>* g_rows = nullptr;
size_t g_rejected = 0;
Cupti g_cupti;

void OnBufferRequested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, kBufferBytes));
  *size = *buffer != nullptr ? kBufferBytes : 0;
  *max_records = 0;
}

void OnBufferCompleted(void*, uint32_t, uint8_t* buffer, size_t, size_t valid_bytes) {
  void* record = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (g_cupti.next_record(buffer, valid_bytes, &record) == 0) {
    const auto* k = static_cast<const KernelRecordPrefix*>(record);
    if (k->kind != kConcurrentKernelKind) continue;
    if (k->end < k->start || k->name == nullptr || k->block_x <= 0 || k->grid_x <= 0) {
      ++g_rejected;
      continue;
    }
    g_rows->push_back({k->start, k->end, k->stream_id, k->grid_x, k->grid_y, k->grid_z, k->block_x,
                       k->registers_per_thread, k->name});
  }
  free(buffer);
}

void WriteCsv() {
  const char* path = getenv("TERN_KERNEL_TRACE");
  if (g_cupti.flush_all == nullptr || path == nullptr) return;
  g_cupti.flush_all(1);  // CUPTI_ACTIVITY_FLAG_FLUSH_FORCED
  std::lock_guard<std::mutex> lock(g_mutex);
  FILE* f = fopen(path, "w");
  if (f == nullptr) {
    fprintf(stderr, "kernel trace: cannot write %s\n", path);
    return;
  }
  fprintf(f, "start_ns,end_ns,stream,grid_x,grid_y,grid_z,block_x,registers,name\n");
  for (const Row& r : *g_rows) {
    std::string name = r.name;
    for (char& c : name) {
      if (c == ',' || c == '"' || c == '\n') c = ' ';
    }
    fprintf(f, "%llu,%llu,%u,%d,%d,%d,%d,%u,%s\n", static_cast<unsigned long long>(r.start),
            static_cast<unsigned long long>(r.end), r.stream, r.grid_x, r.grid_y, r.grid_z, r.block_x, r.registers,
            name.c_str());
  }
  fclose(f);
  fprintf(stderr, "kernel trace: %zu kernels to %s (%zu malformed records skipped)\n", g_rows->size(), path,
          g_rejected);
}

template <typename Fn>
bool Resolve(void* library, const char* symbol, Fn* out) {
  *out = reinterpret_cast<Fn>(dlsym(library, symbol));
  return *out != nullptr;
}

// LD_PRELOAD reaches every process a wrapper script starts; only the one
// named by TERN_KERNEL_TRACE_PROCESS (default: any tern-* executable) traces.
bool IsTracedProcess() {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return false;
  exe[n] = '\0';
  const char* base = strrchr(exe, '/');
  base = base != nullptr ? base + 1 : exe;
  const char* wanted = getenv("TERN_KERNEL_TRACE_PROCESS");
  return wanted != nullptr ? strcmp(base, wanted) == 0 : strncmp(base, "tern", 4) == 0;
}

__attribute__((constructor)) void StartTracing() {
  if (getenv("TERN_KERNEL_TRACE") == nullptr || !IsTracedProcess()) return;
  const char* configured = getenv("TERN_CUPTI_LIBRARY");
  void* library = dlopen(configured != nullptr ? configured : "libcupti.so", RTLD_NOW | RTLD_GLOBAL);
  if (library == nullptr) {
    fprintf(stderr, "kernel trace: cannot open CUPTI (%s); set TERN_CUPTI_LIBRARY\n", dlerror());
    return;
  }
  Cupti c;
  if (!Resolve(library, "cuptiActivityEnable", &c.enable) ||
      !Resolve(library, "cuptiActivityRegisterCallbacks", &c.register_callbacks) ||
      !Resolve(library, "cuptiActivityGetNextRecord", &c.next_record) ||
      !Resolve(library, "cuptiActivityFlushAll", &c.flush_all)) {
    fprintf(stderr, "kernel trace: CUPTI lacks the activity API\n");
    return;
  }
  g_rows = new std::vector<Row>();
  g_rows->reserve(1 << 20);
  g_cupti = c;
  if (c.register_callbacks(OnBufferRequested, OnBufferCompleted) != 0 || c.enable(kConcurrentKernelKind) != 0) {
    fprintf(stderr, "kernel trace: CUPTI refused to trace kernels\n");
    g_cupti = Cupti();
    return;
  }
  atexit(WriteCsv);
}

}  // namespace
