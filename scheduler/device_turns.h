// DeviceTurns: the engines that share one device (one GPU, or the CPU
// backend's cores) step on it one at a time, each getting over time its
// share of the device's step time.
//
// Each engine holds a seat with a share (> 0). A seat's virtual time is the
// device time its steps took divided by its share. The free device goes to
// the busy seat (its engine has work) with the least virtual time (ties: the
// lower seat). Between two steps an engine does host work (applying the
// step, planning the next) without asking for the device; when the seat next
// in line is in that gap, the others wait up to `grace` for it, then the
// waiting seat with the least virtual time takes the device rather than
// leave it idle longer. A seat that was idle (its engine asleep: no work)
// does not bank the time it left unused: when it asks again its virtual time
// is raised to the least virtual time of the seats that stayed busy. So with
// shares 3 and 1 and both engines loaded, the first gets 3/4 of the device
// time and the second 1/4, one whole step at a time; an engine alone on the
// device steps without waiting.
//
// A step is never split: a long step of one engine delays the other by that
// step (the shares hold over many steps, not within one).
//
// Threads: every method from any thread; each seat is used by one engine
// thread (Acquire, Release) and Idle may come from that engine's core.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tern::scheduler {

class DeviceTurns {
 public:
  // How long a waiting seat lets the free device wait for a busy seat with
  // less virtual time that is between two steps.
  static constexpr absl::Duration kDefaultGrace = absl::Milliseconds(2);

  // `device`: for logs and stats ("cuda", "cpu").
  explicit DeviceTurns(std::string device, absl::Duration grace = kDefaultGrace)
      : device_(std::move(device)), grace_(grace) {}

  const std::string& device() const { return device_; }

  // Adds a seat; `share` must be > 0 (clamped to 1e-6 otherwise). Returns its index.
  int32_t Join(std::string name, double share);

  // Blocks until seat `seat` may step on the device, then holds it.
  void Acquire(int32_t seat);
  // Frees the device and charges the step's `elapsed` time to the seat.
  void Release(int32_t seat, absl::Duration elapsed);
  // The seat's engine has no work: its unused time is not banked.
  void Idle(int32_t seat);

  struct SeatStats {
    std::string name;
    double share = 0.0;
    absl::Duration device_time = absl::ZeroDuration();  // charged by Release
    absl::Duration wait_time = absl::ZeroDuration();    // spent in Acquire
    int64_t turns = 0;
  };
  std::vector<SeatStats> Stats() const;
  int32_t seats() const;
  // Whether a seat other than `seat` has work (its engine is not idle).
  bool OthersBusy(int32_t seat) const;

 private:
  struct Seat {
    SeatStats stats;
    double virtual_seconds = 0.0;  // device seconds / share
    bool waiting = false;
    bool idle = true;
  };
  // Whether `seat` (waiting) may take the free device now; else how long
  // to wait at most before asking again (*recheck).
  bool MayTakeLocked(int32_t seat, absl::Time now, absl::Duration* recheck) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The least virtual time among busy seats other than `except`, or -1 when none.
  double LeastBusyVirtualLocked(int32_t except) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string device_;
  const absl::Duration grace_;
  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  std::vector<Seat> seats_ ABSL_GUARDED_BY(mu_);
  int32_t holder_ ABSL_GUARDED_BY(mu_) = -1;
  absl::Time free_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// How an engine takes part in its device's turns: `turns` null means it has
// the device to itself. Engines on one device share one DeviceTurns.
struct DeviceShareOptions {
  std::shared_ptr<DeviceTurns> turns;
  double share = 1.0;  // > 0
};

// Holds seat `seat` of `turns` (may be null: no sharing) for one step and
// charges the time it was held.
class DeviceTurn {
 public:
  DeviceTurn(DeviceTurns* turns, int32_t seat);
  ~DeviceTurn();
  DeviceTurn(const DeviceTurn&) = delete;
  DeviceTurn& operator=(const DeviceTurn&) = delete;

 private:
  DeviceTurns* const turns_;
  const int32_t seat_;
  absl::Time start_;
};

}  // namespace tern::scheduler
