#include "runtime/base/check.h"

#include <cstdlib>

#include "spdlog/spdlog.h"

namespace tern::base {

CheckFailure::CheckFailure(const char* condition, const char* file, int line)
    : condition_(condition), file_(file), line_(line) {}

CheckFailure::~CheckFailure() {
  spdlog::critical("CHECK failed: {} at {}:{} {}", condition_, file_, line_, message_.str());
  spdlog::shutdown();
  std::abort();
}

}  // namespace tern::base
