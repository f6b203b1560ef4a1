#include "scheduler/device_turns.h"

#include <algorithm>

namespace tern::scheduler {

int32_t DeviceTurns::Join(std::string name, double share) {
  absl::MutexLock lock(&mu_);
  Seat seat;
  seat.stats.name = std::move(name);
  seat.stats.share = std::max(share, 1e-6);
  seats_.push_back(std::move(seat));
  return static_cast<int32_t>(seats_.size()) - 1;
}

double DeviceTurns::LeastBusyVirtualLocked(int32_t except) const {
  double least = -1.0;
  for (int32_t i = 0; i < static_cast<int32_t>(seats_.size()); ++i) {
    if (i == except || seats_[i].idle) continue;
    if (least < 0.0 || seats_[i].virtual_seconds < least) least = seats_[i].virtual_seconds;
  }
  return least;
}

bool DeviceTurns::MayTakeLocked(int32_t seat, absl::Time now, absl::Duration* recheck) const {
  *recheck = absl::InfiniteDuration();
  if (holder_ != -1) return false;  // Release wakes the waiters
  // The busy seat next in line, and the waiting one.
  int32_t next_busy = -1, next_waiting = -1;
  for (int32_t i = 0; i < static_cast<int32_t>(seats_.size()); ++i) {
    const Seat& s = seats_[i];
    if (s.idle) continue;
    if (next_busy < 0 || s.virtual_seconds < seats_[next_busy].virtual_seconds) next_busy = i;
    if (s.waiting && (next_waiting < 0 || s.virtual_seconds < seats_[next_waiting].virtual_seconds)) next_waiting = i;
  }
  if (next_busy == seat) return true;
  if (next_waiting != seat) return false;  // another waiting seat goes first
  // The seat next in line is between two steps: give it the grace period.
  const absl::Duration waited = now - free_since_;
  if (waited >= grace_) return true;
  *recheck = grace_ - waited;
  return false;
}

void DeviceTurns::Acquire(int32_t seat) {
  const absl::Time asked = absl::Now();
  absl::MutexLock lock(&mu_);
  Seat& self = seats_[seat];
  if (self.idle) {
    const double least = LeastBusyVirtualLocked(seat);
    if (least > self.virtual_seconds) self.virtual_seconds = least;
    self.idle = false;
  }
  self.waiting = true;
  while (true) {
    absl::Duration recheck;
    if (MayTakeLocked(seat, absl::Now(), &recheck)) break;
    if (recheck == absl::InfiniteDuration()) {
      changed_.Wait(&mu_);
    } else {
      changed_.WaitWithTimeout(&mu_, recheck);
    }
  }
  self.waiting = false;
  holder_ = seat;
  ++self.stats.turns;
  self.stats.wait_time += absl::Now() - asked;
}

void DeviceTurns::Release(int32_t seat, absl::Duration elapsed) {
  absl::MutexLock lock(&mu_);
  Seat& self = seats_[seat];
  self.stats.device_time += elapsed;
  self.virtual_seconds += absl::ToDoubleSeconds(elapsed) / self.stats.share;
  if (holder_ == seat) holder_ = -1;
  free_since_ = absl::Now();
  changed_.SignalAll();
}

void DeviceTurns::Idle(int32_t seat) {
  absl::MutexLock lock(&mu_);
  seats_[seat].idle = true;
  changed_.SignalAll();  // a seat that waited for this one may go
}

std::vector<DeviceTurns::SeatStats> DeviceTurns::Stats() const {
  absl::MutexLock lock(&mu_);
  std::vector<SeatStats> out;
  out.reserve(seats_.size());
  for (const Seat& seat : seats_) out.push_back(seat.stats);
  return out;
}

bool DeviceTurns::OthersBusy(int32_t seat) const {
  absl::MutexLock lock(&mu_);
  return LeastBusyVirtualLocked(seat) >= 0.0;
}

int32_t DeviceTurns::seats() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(seats_.size());
}

DeviceTurn::DeviceTurn(DeviceTurns* turns, int32_t seat) : turns_(turns), seat_(seat) {
  if (turns_ != nullptr) turns_->Acquire(seat_);
  start_ = absl::Now();
}

DeviceTurn::~DeviceTurn() {
  if (turns_ != nullptr) turns_->Release(seat_, absl::Now() - start_);
}

}  // namespace tern::scheduler
