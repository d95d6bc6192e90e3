// Work monitor; see work_monitor.h for the contract.
//
// Why polls run outside the lock: a poll is backend code (a CUDA call) whose
// latency the monitor does not control, and Track() is called from the
// thread that launches collectives, between kernels. Holding the lock across
// polls would let one slow poll stall the training loop's launches. So a tick
// copies the list of items (shared pointers: an item stays alive while it is
// being polled), polls without the lock, and then drops the finished ones
// under it. An item stays in items_ until dropped, so pending() never
// undercounts while a tick is running.
//
// Why an async error outranks a deadline: when NCCL reports an error, the
// collectives that then never finish are its consequence; naming the error
// (and the oldest pending collective) tells the reader what to fix, where
// "timed out" would only say where it showed.
#include "dfar/comm/work_monitor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <utility>

#include "dfar/core/error.h"

namespace dfar {
namespace {

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string Seconds1(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

// Runs a poll, turning an exception into an error.
WorkState SafePoll(const MonitoredWork& work, std::string* error) {
  try {
    return work.poll ? work.poll(error) : WorkState::kDone;
  } catch (const std::exception& e) {
    *error = std::string("its completion poll threw: ") + e.what();
  } catch (...) {
    *error = "its completion poll threw a non-standard exception";
  }
  return WorkState::kError;
}

}  // namespace

WorkMonitor::WorkMonitor(WorkMonitorOptions options, AsyncErrorFn async_error, FailFn fail)
    : options_(std::move(options)), async_error_(std::move(async_error)), fail_(std::move(fail)) {
  DFAR_CHECK(options_.timeout_s > 0 && options_.tick_s > 0, "work monitor: timeout (", options_.timeout_s,
             " s) and tick (", options_.tick_s, " s) must be positive");
  DFAR_CHECK(static_cast<bool>(fail_), "work monitor: a fail function is required");
  thread_ = std::thread([this] { Run(); });
}

WorkMonitor::~WorkMonitor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  idle_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WorkMonitor::Track(MonitoredWork work) {
  auto item = std::make_shared<Item>();
  item->work = std::move(work);
  item->start = SteadySeconds();
  std::lock_guard<std::mutex> lock(mu_);
  items_.push_back(std::move(item));
}

size_t WorkMonitor::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return items_.size();
}

bool WorkMonitor::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

std::string WorkMonitor::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

bool WorkMonitor::WaitIdle(double timeout_s) {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait_for(lock, std::chrono::duration<double>(timeout_s > 0 ? timeout_s : 0),
                 [this] { return items_.empty() || failed_ || stop_; });
  return items_.empty() && !failed_;
}

void WorkMonitor::Run() {
  const auto tick =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(options_.tick_s));
  std::unique_lock<std::mutex> lock(mu_);
  auto next = std::chrono::steady_clock::now() + tick;
  while (!stop_) {
    if (wake_.wait_until(lock, next, [this] { return stop_; })) break;
    if (!failed_) {
      lock.unlock();
      Tick();
      lock.lock();
    }
    // A slow tick (or a fail function that returned) must not make the
    // following waits return at once, one for every tick missed.
    next = std::max(next + tick, std::chrono::steady_clock::now());
  }
}

void WorkMonitor::Tick() {
  std::list<std::shared_ptr<Item>> snapshot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot = items_;
  }
  const std::string message = Check(snapshot, SteadySeconds());
  {
    std::lock_guard<std::mutex> lock(mu_);
    items_.remove_if([](const std::shared_ptr<Item>& item) { return item->done; });
    if (!message.empty()) {
      failed_ = true;
      failure_ = message;
    }
  }
  idle_.notify_all();
  // The last reference to a dropped item (whose poll may hold CUDA handles)
  // goes here, outside the lock.
  snapshot.clear();
  if (!message.empty()) fail_(message);
}

std::string WorkMonitor::Check(const std::list<std::shared_ptr<Item>>& items, double now) {
  const Item* oldest = nullptr;  // Oldest item still pending.
  std::string item_failure, overdue;
  for (const auto& item : items) {
    std::string error;
    const WorkState state = SafePoll(item->work, &error);
    if (state == WorkState::kDone) {
      item->done = true;
      continue;
    }
    if (oldest == nullptr) oldest = item.get();
    if (state == WorkState::kError && item_failure.empty()) {
      item_failure = Describe(*item) + " failed: " + (error.empty() ? "no reason given" : error);
    }
    const double waited = now - item->start;
    if (state == WorkState::kPending && overdue.empty() && waited > options_.timeout_s) {
      overdue = Describe(*item) + " timed out after " + Seconds1(waited) + " (deadline " +
                Seconds1(options_.timeout_s) + ", dist.collective_timeout_s)";
    }
  }
  std::string async;
  if (async_error_) {
    try {
      async = async_error_();
    } catch (const std::exception& e) {
      async = std::string("the async-error poll threw: ") + e.what();
    } catch (...) {
      async = "the async-error poll threw a non-standard exception";
    }
  }
  std::string message;
  if (!async.empty()) {
    message = oldest != nullptr ? Describe(*oldest) + ", pending " + Seconds1(now - oldest->start) + ", when " +
                                      options_.backend + " reported an error: " + async
                                : options_.backend + " on rank " + std::to_string(options_.rank) +
                                      " reported an error with no collective pending: " + async;
  } else if (!item_failure.empty()) {
    message = item_failure;
  } else {
    message = overdue;
  }
  if (message.empty()) return message;
  size_t still = 0;
  for (const auto& item : items) still += item->done ? 0 : 1;
  return message + "; " + std::to_string(still) + " collective(s) pending on this rank";
}

// "NCCL all_reduce #7 (site "grad_sync bucket 3/12", float32, 4096 bytes) on
// rank 0": what a reader needs to find the call and the peers' counterpart.
std::string WorkMonitor::Describe(const Item& item) const {
  const MonitoredWork& w = item.work;
  std::string out = options_.backend + " " + w.op + " #" + std::to_string(w.seq) + " (";
  out += w.site.empty() ? "site unlabelled" : "site \"" + w.site + "\"";
  if (!w.dtype.empty()) out += ", " + w.dtype;
  out += ", " + std::to_string(w.bytes) + " bytes) on rank " + std::to_string(options_.rank);
  return out;
}

}  // namespace dfar
