// The work monitor with fakes: polls that never finish, finish, or fail, an
// async-error poll that starts reporting, and a recording fail function.
//
// Timing: ticks of 10 ms and, where a test wants the deadline to fire, a
// deadline of 200 ms. Every wait for an event has an upper bound of 10 s:
// the deadline plus a tick is 0.21 s, so the bound leaves 9.8 s for the
// monitor thread to be scheduled on a loaded 2-core machine (a descheduled
// thread there is late by tens to hundreds of ms, not seconds). Nothing
// asserts that an event came early; the only lower bound asserted (no
// failure before the deadline) follows from the monitor's own clock. Where a
// test wants NO failure, the items are done by their first poll (the
// monitor polls before it judges a deadline, so a late tick cannot turn a
// finished item into a timed-out one) or the deadline is 600 s.
#include "dfar/comm/work_monitor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dfar/core/error.h"

namespace dfar {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kWaitBoundS = 10;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The fake fail function: records every call.
class FailRecorder {
 public:
  WorkMonitor::FailFn Fn() {
    return [this](const std::string& message) {
      std::lock_guard<std::mutex> lock(mu_);
      messages_.push_back(message);
      cv_.notify_all();
    };
  }
  // Waits up to `seconds` for at least `n` calls; returns whether they came.
  bool WaitFor(size_t n, double seconds) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return messages_.size() >= n; });
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> messages_;
};

WorkMonitorOptions Options(double timeout_s, double tick_s = 0.01) {
  WorkMonitorOptions o;
  o.rank = 3;
  o.timeout_s = timeout_s;
  o.tick_s = tick_s;
  return o;
}

MonitoredWork Work(int64_t seq, std::function<WorkState(std::string*)> poll, const std::string& op = "all_reduce",
                   const std::string& site = "grad_sync bucket 3/12") {
  MonitoredWork w;
  w.op = op;
  w.site = site;
  w.dtype = "bfloat16";
  w.seq = seq;
  w.bytes = 4096;
  w.poll = std::move(poll);
  return w;
}

WorkState NeverDone(std::string*) {
  return WorkState::kPending;
}

void ExpectContains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

TEST(WorkMonitorTest, NeverFinishingItemFailsOnceNamingOpSiteSeqRankAndTimeout) {
  FailRecorder fail;
  const auto t0 = Clock::now();
  WorkMonitor monitor(Options(0.2), nullptr, fail.Fn());
  monitor.Track(Work(7, NeverDone));
  ASSERT_TRUE(fail.WaitFor(1, kWaitBoundS)) << "no failure within " << kWaitBoundS << " s";
  EXPECT_GE(SecondsSince(t0), 0.2) << "failed before the deadline";
  // 30 more ticks: the failure is latched, so no second call may come.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto messages = fail.messages();
  ASSERT_EQ(messages.size(), 1u);
  const std::string& m = messages[0];
  ExpectContains(m, "all_reduce");
  ExpectContains(m, "\"grad_sync bucket 3/12\"");
  ExpectContains(m, "#7");
  ExpectContains(m, "rank 3");
  ExpectContains(m, "timed out after");
  ExpectContains(m, "NCCL");
  EXPECT_TRUE(monitor.failed());
  EXPECT_EQ(monitor.failure(), m);
  EXPECT_EQ(monitor.pending(), 1u) << "a failed monitor keeps its items listed";
  EXPECT_FALSE(monitor.WaitIdle(0));
}

TEST(WorkMonitorTest, SeveralOverdueItemsStillFailOnceNamingTheOldest) {
  FailRecorder fail;
  WorkMonitor monitor(Options(0.2), nullptr, fail.Fn());
  monitor.Track(Work(1, NeverDone, "reduce_scatter", "zero shard 0/4"));
  monitor.Track(Work(2, NeverDone, "all_gather", "zero shard 1/4"));
  monitor.Track(Work(3, NeverDone, "broadcast", ""));
  ASSERT_TRUE(fail.WaitFor(1, kWaitBoundS));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto messages = fail.messages();
  ASSERT_EQ(messages.size(), 1u);
  ExpectContains(messages[0], "reduce_scatter #1");
  ExpectContains(messages[0], "\"zero shard 0/4\"");
  ExpectContains(messages[0], "3 collective(s) pending");
}

TEST(WorkMonitorTest, AsyncErrorFailsNamingTheErrorAndThePendingCollective) {
  FailRecorder fail;
  std::atomic<bool> broken{false};
  WorkMonitor monitor(
      Options(600),
      [&] { return broken.load() ? std::string("remote process exited or there was a network error") : ""; },
      fail.Fn());
  monitor.Track(Work(12, NeverDone, "broadcast", "stop flag"));
  broken = true;
  ASSERT_TRUE(fail.WaitFor(1, kWaitBoundS));
  const std::string m = fail.messages().at(0);
  ExpectContains(m, "remote process exited or there was a network error");
  ExpectContains(m, "broadcast #12");
  ExpectContains(m, "\"stop flag\"");
  ExpectContains(m, "rank 3");
  EXPECT_EQ(m.find("timed out"), std::string::npos) << m;
}

TEST(WorkMonitorTest, AsyncErrorWithNothingPendingStillFails) {
  FailRecorder fail;
  WorkMonitor monitor(
      Options(600), [] { return std::string("unhandled system error"); }, fail.Fn());
  ASSERT_TRUE(fail.WaitFor(1, kWaitBoundS));
  const std::string m = fail.messages().at(0);
  ExpectContains(m, "unhandled system error");
  ExpectContains(m, "rank 3");
  ExpectContains(m, "no collective pending");
}

TEST(WorkMonitorTest, PollErrorFailsNamingIt) {
  FailRecorder fail;
  WorkMonitor monitor(Options(600), nullptr, fail.Fn());
  monitor.Track(Work(5, [](std::string* error) {
    *error = "cudaEventQuery on its done event: an illegal memory access was encountered";
    return WorkState::kError;
  }));
  ASSERT_TRUE(fail.WaitFor(1, kWaitBoundS));
  const std::string m = fail.messages().at(0);
  ExpectContains(m, "all_reduce #5");
  ExpectContains(m, "failed: cudaEventQuery on its done event: an illegal memory access");
}

TEST(WorkMonitorTest, ThrowingPollCountsAsAnError) {
  FailRecorder fail;
  WorkMonitor monitor(Options(600), nullptr, fail.Fn());
  monitor.Track(Work(2, [](std::string*) -> WorkState { throw std::runtime_error("poll blew up"); }));
  ASSERT_TRUE(fail.WaitFor(1, kWaitBoundS));
  ExpectContains(fail.messages().at(0), "poll blew up");
}

TEST(WorkMonitorTest, ItemsThatFinishInTimeNeverFail) {
  FailRecorder fail;
  // Deadline 2 s: the slow items need 3 polls (30 ms of ticks) to finish.
  WorkMonitor monitor(
      Options(2), [] { return std::string(); }, fail.Fn());
  std::atomic<bool> finished{false};
  for (int64_t seq = 1; seq <= 20; ++seq) {
    if (seq % 2 == 0) {
      monitor.Track(Work(seq, [&](std::string*) { return finished.load() ? WorkState::kDone : WorkState::kPending; }));
    } else {
      auto polls = std::make_shared<int>(0);
      monitor.Track(
          Work(seq, [polls](std::string*) { return ++*polls >= 3 ? WorkState::kDone : WorkState::kPending; }));
    }
  }
  finished = true;
  EXPECT_TRUE(monitor.WaitIdle(kWaitBoundS));
  EXPECT_EQ(monitor.pending(), 0u);
  EXPECT_FALSE(monitor.failed());
  EXPECT_TRUE(fail.messages().empty());
}

TEST(WorkMonitorTest, WaitIdleReturnsFalseWhilePendingAndAtOnceWhenEmpty) {
  FailRecorder fail;
  WorkMonitor monitor(Options(600), nullptr, fail.Fn());
  EXPECT_TRUE(monitor.WaitIdle(0));
  monitor.Track(Work(1, NeverDone));
  EXPECT_FALSE(monitor.WaitIdle(0.05));
  EXPECT_EQ(monitor.pending(), 1u);
}

TEST(WorkMonitorTest, DestructorReturnsPromptlyWithAPendingItem) {
  FailRecorder fail;
  std::atomic<int> polls{0};
  // A 60 s tick: a destructor that waited for the next tick would take a minute.
  auto monitor = std::make_unique<WorkMonitor>(Options(600, 60), nullptr, fail.Fn());
  monitor->Track(Work(1, [&](std::string*) {
    ++polls;
    return WorkState::kPending;
  }));
  const auto t0 = Clock::now();
  monitor.reset();
  EXPECT_LT(SecondsSince(t0), kWaitBoundS);
  EXPECT_EQ(polls.load(), 0) << "the destructor must not poll";
  EXPECT_TRUE(fail.messages().empty());
}

TEST(WorkMonitorTest, RejectsBadOptions) {
  FailRecorder fail;
  EXPECT_THROW(WorkMonitor(Options(0), nullptr, fail.Fn()), Error);
  EXPECT_THROW(WorkMonitor(Options(1, 0), nullptr, fail.Fn()), Error);
  EXPECT_THROW(WorkMonitor(Options(1), nullptr, nullptr), Error);
}

}  // namespace
}  // namespace dfar
