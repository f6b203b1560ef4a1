#include "scheduler/delivery_thread.h"

#include <utility>

namespace tern::scheduler {

DeliveryThread::DeliveryThread() {
  absl::MutexLock lock(&join_mu_);
  thread_ = std::thread([this] { Loop(); });
}

DeliveryThread::~DeliveryThread() { Stop(); }

void DeliveryThread::Post(std::function<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      tasks_.push_back(std::move(task));
      return;
    }
  }
  task();
}

void DeliveryThread::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  absl::MutexLock lock(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

void DeliveryThread::Loop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &DeliveryThread::ReadyLocked));
      if (tasks_.empty()) {
        stopped_ = true;  // stopping, and everything posted before has run
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace tern::scheduler
