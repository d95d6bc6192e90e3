// dfar::WorkMonitor — no asynchronous collective is pending forever unseen.
//
// Owns: the in-flight collectives of one communicator (operation, call site,
// sequence number, dtype, bytes, launch time and a poll that says whether it
// finished) and a monitor thread. Every tick_s the thread polls each item and
// drops the finished ones, then polls the communicator-wide async-error
// function. When an item outlives timeout_s, an item's poll reports an error,
// or the async-error poll returns a non-empty string, it builds ONE message
// that names the operation, the site, the sequence number, the rank and the
// reason ("timed out after 2.1 s", or the error text), and calls the fail
// function exactly once. After that it checks nothing more; items stay
// listed (pending() counts them) until the monitor is destroyed.
//
// Torch-free and CUDA-free: the backend supplies the polls and the fail
// function. The NCCL backend (dfar/comm/nccl_communicator.h) polls each
// collective's done event (cudaEventQuery) and ncclCommGetAsyncError, and its
// fail function logs the message, calls ncclCommAbort and _exit()s with
// kWatchdogExitCode (dfar/comm/watchdog.h). Unit tests pass fakes.
//
// Why not CollectiveWatchdog: that one follows a backend that runs one
// collective at a time on its own thread and is told when it ends (MPI), and
// it names peers from heartbeat files. NCCL collectives are enqueued on a
// stream, many at once, and finish on the device: completion has to be
// polled, and only the communicator itself can tell that it broke.
//
// Threads: every public method may be called from any thread. The polls and
// the fail function run on the monitor thread, never under the monitor's
// lock, so they may call pending() or failed(). A poll or async-error
// function that throws counts as an error of what it polls.
// Failure: the constructor throws dfar::Error for a non-positive timeout or
// tick, or an empty fail function; nothing else throws.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace dfar {

enum class WorkState { kPending, kDone, kError };

// One asynchronous collective, as the backend hands it over at launch.
struct MonitoredWork {
  std::string op;      // "all_reduce", "reduce_scatter", "all_gather", "broadcast", "barrier".
  std::string site;    // CollectiveSite::Current() at launch, e.g. "grad_sync bucket 3/12" ("" if none).
  std::string dtype;   // "float32", ... ("" if none).
  int64_t seq = 0;     // 1-based launch order on this communicator: the same collective has the same seq on every rank.
  uint64_t bytes = 0;  // Size of the caller's buffer the collective covers.
  // Called on the monitor thread each tick until it returns kDone. kError:
  // set *error to why (it goes into the failure message).
  std::function<WorkState(std::string* error)> poll;
};

struct WorkMonitorOptions {
  int rank = 0;                  // This communicator's rank, named in the failure message.
  std::string backend = "NCCL";  // Names the communicator in the message.
  double timeout_s = 600;        // dist.collective_timeout_s: an item pending longer fails the monitor.
  double tick_s = 0.05;          // Poll period: how late a finish, a deadline or an error is noticed. Each tick
                                 // costs one poll per item in flight (a cudaEventQuery: about a microsecond).
};

class WorkMonitor {
 public:
  // "" while the communicator is healthy, else what went wrong.
  using AsyncErrorFn = std::function<std::string()>;
  // Called once, on the monitor thread, with the failure message.
  using FailFn = std::function<void(const std::string& message)>;

  // `async_error` may be empty (no communicator-wide check).
  WorkMonitor(WorkMonitorOptions options, AsyncErrorFn async_error, FailFn fail);
  // Stops the monitor thread at once (it waits for its next tick on a
  // condition variable, not in a sleep) and never polls or waits for a
  // pending item. If a tick is polling or the fail function is running at
  // that moment, it waits for them to return.
  ~WorkMonitor();
  WorkMonitor(const WorkMonitor&) = delete;
  WorkMonitor& operator=(const WorkMonitor&) = delete;

  // Starts watching `work`; its deadline counts from now.
  void Track(MonitoredWork work);

  // Items not yet seen finished (each is dropped at the first tick whose
  // poll says kDone).
  size_t pending() const;
  // True once the fail function has been called (or is being called).
  bool failed() const;
  // The message passed to the fail function ("" if none).
  std::string failure() const;
  // Blocks until nothing is pending (returns true), the monitor failed, or
  // timeout_s passed (false). Returns at most one tick after the last item
  // finished. For a communicator's destructor: only a true answer makes a
  // clean shutdown safe.
  bool WaitIdle(double timeout_s);

  const WorkMonitorOptions& options() const { return options_; }

 private:
  struct Item {
    MonitoredWork work;
    double start = 0;  // Steady-clock seconds at Track().
    bool done = false;
  };
  void Run();
  // One period: poll, drop the finished items, fail if due.
  void Tick();
  // Polls every item (marking the finished ones) and the async error; returns
  // the failure message, or "" when all is well.
  std::string Check(const std::list<std::shared_ptr<Item>>& items, double now);
  std::string Describe(const Item& item) const;

  const WorkMonitorOptions options_;
  const AsyncErrorFn async_error_;
  const FailFn fail_;

  mutable std::mutex mu_;  // Guards the fields below.
  std::list<std::shared_ptr<Item>> items_;
  bool failed_ = false;
  std::string failure_;
  bool stop_ = false;
  std::condition_variable wake_;  // Stop: ends the monitor's wait for the next tick.
  std::condition_variable idle_;  // Items dropped or failure: ends WaitIdle.

  std::thread thread_;  // Last: starts after every other member exists.
};

}  // namespace dfar
