// CHECK(cond) << "context": for broken invariants only, never for bad input.
// A failed check logs the condition, file and line through spdlog, flushes,
// and aborts, so the crash is loud and the core dump points at the bug.
#pragma once

#include <sstream>
#include <string>

namespace tern::base {

// Collects the streamed message; its destructor reports and aborts.
class CheckFailure {
 public:
  CheckFailure(const char* condition, const char* file, int line);
  [[noreturn]] ~CheckFailure();
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;

  template <typename T>
  CheckFailure& operator<<(const T& value) {
    message_ << value;
    return *this;
  }

 private:
  const char* condition_;
  const char* file_;
  int line_;
  std::ostringstream message_;
};

}  // namespace tern::base

#define CHECK(cond) \
  if (cond) {       \
  } else            \
    ::tern::base::CheckFailure(#cond, __FILE__, __LINE__)

#define CHECK_EQ(a, b) CHECK((a) == (b)) << #a " != " #b ": "
#define CHECK_NE(a, b) CHECK((a) != (b))
#define CHECK_LT(a, b) CHECK((a) < (b))
#define CHECK_LE(a, b) CHECK((a) <= (b))
#define CHECK_GT(a, b) CHECK((a) > (b))
#define CHECK_GE(a, b) CHECK((a) >= (b))
#define CHECK_OK(expr) CHECK((expr).ok())
