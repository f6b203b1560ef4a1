#include "scheduler/device_turns.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace tern::scheduler {
namespace {

// Records which seat held the device, turn by turn.
class TurnLog {
 public:
  void Add(int32_t seat) {
    absl::MutexLock lock(&mu_);
    seats_.push_back(seat);
  }
  std::vector<int32_t> seats() const {
    absl::MutexLock lock(&mu_);
    return seats_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<int32_t> seats_ ABSL_GUARDED_BY(mu_);
};

// One engine thread: `count` steps, each holding the device for `step`
// (slept, so the other engine really waits) and charged exactly `step`.
void Steps(DeviceTurns* turns, int32_t seat, int count, absl::Duration step, TurnLog* log,
           absl::Notification* go = nullptr) {
  if (go != nullptr) go->WaitForNotification();
  for (int i = 0; i < count; ++i) {
    turns->Acquire(seat);
    log->Add(seat);
    absl::SleepFor(step);
    turns->Release(seat, step);
  }
}

TEST(DeviceTurnsTest, AnEngineAloneNeverWaitsOnItself) {
  DeviceTurns turns("cpu");
  const int32_t seat = turns.Join("llm", 1.0);
  for (int i = 0; i < 100; ++i) {
    DeviceTurn turn(&turns, seat);
  }
  const auto stats = turns.Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].turns, 100);
  EXPECT_LT(stats[0].wait_time, absl::Milliseconds(50));
}

TEST(DeviceTurnsTest, BusyEnginesSplitDeviceTimeByTheirShares) {
  DeviceTurns turns("cuda");
  const int32_t llm = turns.Join("llm", 3.0);
  const int32_t dit = turns.Join("dit", 1.0);
  TurnLog log;
  absl::Notification go;
  constexpr int kTurns = 200;
  std::thread a(Steps, &turns, llm, kTurns, absl::Milliseconds(1), &log, &go);
  std::thread b(Steps, &turns, dit, kTurns, absl::Milliseconds(1), &log, &go);
  go.Notify();
  a.join();
  b.join();
  // While both had turns left (the first ~266 turns), the LLM held three of
  // every four.
  const std::vector<int32_t> seats = log.seats();
  ASSERT_EQ(seats.size(), 2u * kTurns);
  const int window = 200;
  const int64_t llm_turns = std::count(seats.begin(), seats.begin() + window, llm);
  EXPECT_GE(llm_turns, window * 70 / 100) << "of the first " << window << " turns";
  EXPECT_LE(llm_turns, window * 80 / 100) << "of the first " << window << " turns";
}

TEST(DeviceTurnsTest, UnequalStepTimesAreChargedByTime) {
  // Equal shares, but the DiT's steps cost 4x the LLM's: the LLM gets about
  // four turns for each of the DiT's.
  DeviceTurns turns("cuda");
  const int32_t llm = turns.Join("llm", 1.0);
  const int32_t dit = turns.Join("dit", 1.0);
  TurnLog log;
  absl::Notification go;
  std::thread a(Steps, &turns, llm, 200, absl::Milliseconds(1), &log, &go);
  std::thread b(Steps, &turns, dit, 50, absl::Milliseconds(4), &log, &go);
  go.Notify();
  a.join();
  b.join();
  const std::vector<int32_t> seats = log.seats();
  const int window = 125;
  const int64_t dit_turns = std::count(seats.begin(), seats.begin() + window, dit);
  EXPECT_GE(dit_turns, window * 15 / 100);
  EXPECT_LE(dit_turns, window * 25 / 100);
}

TEST(DeviceTurnsTest, AnIdleEngineDoesNotBankItsUnusedTime) {
  DeviceTurns turns("cuda");
  const int32_t llm = turns.Join("llm", 1.0);
  const int32_t dit = turns.Join("dit", 1.0);
  TurnLog log;
  // The LLM runs alone for 100 turns; then the DiT gets work.
  Steps(&turns, llm, 100, absl::Milliseconds(1), &log);
  absl::Notification go;
  std::thread a(Steps, &turns, llm, 100, absl::Milliseconds(1), &log, &go);
  std::thread b(Steps, &turns, dit, 50, absl::Milliseconds(1), &log, &go);
  go.Notify();
  a.join();
  b.join();
  const std::vector<int32_t> seats = log.seats();
  // Once the DiT arrives the two alternate: never a long run of DiT turns
  // paying back the 200 it was idle for.
  int run = 0, longest = 0;
  for (int32_t seat : seats) {
    run = seat == dit ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  EXPECT_LE(longest, 3);
  const auto stats = turns.Stats();
  EXPECT_EQ(stats[llm].turns, 200);
  EXPECT_EQ(stats[dit].turns, 50);
  EXPECT_EQ(stats[dit].device_time, absl::Milliseconds(50));
}

TEST(DeviceTurnsTest, IdleMarksLetTheOtherEngineRunFreely) {
  DeviceTurns turns("cuda");
  const int32_t llm = turns.Join("llm", 1.0);
  const int32_t dit = turns.Join("dit", 1.0);
  // The DiT stepped once and went idle: the LLM is never held back by it.
  { DeviceTurn turn(&turns, dit); }
  turns.Idle(dit);
  for (int i = 0; i < 50; ++i) {
    DeviceTurn turn(&turns, llm);
  }
  EXPECT_LT(turns.Stats()[llm].wait_time, absl::Milliseconds(50));
}

}  // namespace
}  // namespace tern::scheduler
