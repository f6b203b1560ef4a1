// The instant tools/chat/render_expected.py gives strftime_now():
// 2024-07-26 09:30:05 UTC, so rendered dates match the golden files.
#pragma once

#include <ctime>

namespace tern::runtime::testing_time {

inline std::tm FixedNow() {
  std::tm t{};
  t.tm_year = 2024 - 1900;
  t.tm_mon = 6;
  t.tm_mday = 26;
  t.tm_hour = 9;
  t.tm_min = 30;
  t.tm_sec = 5;
  const std::time_t seconds = timegm(&t);  // fills in weekday and day of year
  gmtime_r(&seconds, &t);
  return t;
}

}  // namespace tern::runtime::testing_time
