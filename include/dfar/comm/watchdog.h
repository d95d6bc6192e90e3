// dfar::CollectiveWatchdog — no collective waits forever.
//
// Owns: the bookkeeping of one rank's collectives (sequence number, kind,
// bytes, call-site label, start and end), a heartbeat file that tells peers
// how far this rank got, and a monitor thread that notices a collective
// outliving its deadline. Then it names the ranks that have and have not
// reached that collective, dumps a flight recorder of this rank's last
// collectives, and aborts the job through a caller-supplied function (the MPI
// backend passes MPI_Abort), falling back to _exit if that does not end the
// process. This is the one place in dfar's library code that ends the process
// itself: a rank stuck in a collective cannot return an error to anyone.
//
// Side channel: each rank rewrites `<dir>/progress/rank-NNNNN.json`
// atomically (tmp + rename) every heartbeat_s. Nothing in it depends on the
// stuck collective, so a stalled rank can still read its peers' files. A peer
// whose heartbeat is older than stale_s is named stale (dead, frozen or cut
// off); a peer on this host whose process is gone is named dead at once (its
// pid and host come from a startup exchange, so no file read is needed to
// notice it). Format: docs/reliability.md.
//
// Enabling: Communicator::EnableWatchdog(options) (collective). A second call
// in the same process (another run) replaces the watchdog.
//
// Threads: Begin/End are called by the thread that runs the collectives (the
// MPI progress thread); the monitor thread is internal. NotifyStopSignal is
// async-signal-safe. CollectiveSite is per thread.
// Failure: the constructor throws dfar::Error if the progress directory cannot
// be created or written; later file errors are logged, never thrown.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace dfar {

struct WatchdogOptions {
  std::string dir;              // Run dir: progress/ and flight-recorder-rank-NNNNN.json live here.
  double timeout_s = 600;       // dist.collective_timeout_s: a collective pending longer aborts the job.
  double heartbeat_s = 0.5;     // Progress file rewrite period. Shorter: fresher diagnosis, more metadata I/O.
  double stale_s = 3;           // A peer heartbeat older than this names the peer stale (wall clocks assumed in sync).
  double tick_s = 0.1;          // Monitor period: how late a deadline or a dead local peer is noticed.
  double signal_pending_s = 1;  // On SIGTERM/SIGUSR1, diagnose a collective pending longer than this.
  size_t recorder_capacity = 64;  // Collectives kept in the flight recorder.
};

// Exit status of a job aborted by the watchdog.
constexpr int kWatchdogExitCode = 4;

// Labels the collectives this thread issues while the object lives
// ("grad_sync bucket", "stop flag"). `label` must outlive the scope (a string
// literal). Nests: the innermost label wins.
class CollectiveSite {
 public:
  explicit CollectiveSite(const char* label);
  ~CollectiveSite();
  CollectiveSite(const CollectiveSite&) = delete;
  CollectiveSite& operator=(const CollectiveSite&) = delete;
  // The innermost label of this thread, or "" when none.
  static const char* Current();

 private:
  const char* previous_;
};

// Tells every watchdog of the process that SIGTERM or SIGUSR1 arrived. Call
// it from the signal handler: it only stores to a lock-free atomic.
void NotifyStopSignal(int sig);
// The last signal passed to NotifyStopSignal (0: none): the trainer's stop
// flag and the watchdog's stall diagnosis read this one value.
int StopSignalSeen();
// Installs the SIGTERM and SIGUSR1 handler that calls NotifyStopSignal (the
// run setup does this for every command that runs a model).
void InstallStopSignalHandlers();

// One collective, as the flight recorder keeps it. Times are wall-clock
// seconds since the epoch so that records of different ranks line up.
struct CollectiveRecord {
  int64_t seq = 0;     // 1-based issue order; the same collective has the same seq on every rank.
  std::string kind;    // "all_reduce", "all_gather", "reduce_scatter", "broadcast", "barrier", "finalize".
  std::string dtype;   // "float32", ... ("" for barrier and finalize).
  uint64_t bytes = 0;  // Size of the caller's buffer the collective covers.
  std::string site;    // CollectiveSite label at issue time ("" if none).
  double start = 0;    // When the progress thread started it.
  double end = 0;      // When it returned; 0 while pending.
};

// Ring buffer of the last `capacity` collectives. Not thread-safe; the
// watchdog guards it.
class FlightRecorder {
 public:
  explicit FlightRecorder(size_t capacity = 64);
  void Start(const CollectiveRecord& record);
  // Marks `seq` finished at `end`; ignored if it already left the ring.
  void Finish(int64_t seq, double end);
  // Oldest first.
  std::vector<CollectiveRecord> Snapshot() const;
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  std::deque<CollectiveRecord> records_;
};

// What a rank's progress file holds.
struct ProgressRecord {
  std::string job;  // Nonce shared by the ranks of one job; files of an older job are ignored.
  int rank = 0;
  int world_size = 1;
  std::string host;
  int64_t pid = 0;
  double wall = 0;        // When the file was written.
  int64_t beat = 0;       // Heartbeat counter.
  int64_t started = 0;    // Seq of the last collective started (0: none).
  int64_t completed = 0;  // Seq of the last collective completed.
  std::string kind;       // Kind of `started`.
  std::string site;       // Site of `started`.
  double pending_s = 0;   // How long `started` has been pending (0 when completed).
  std::string state;      // "running", "finalizing", "exited", "aborting".
};

std::string ProgressFileName(int rank);  // "rank-00001.json"
std::string FormatProgress(const ProgressRecord& p);
// Parses a progress file; nullopt for anything damaged or not a progress file.
std::optional<ProgressRecord> ParseProgress(const std::string& text);

// What this rank can tell about a peer process without MPI.
enum class Liveness { kUnknown, kAlive, kStopped, kDead };
const char* LivenessName(Liveness l);
// Same-host only (host and pid namespace equal to ours): kill(pid, 0) and
// /proc/<pid>/stat. kUnknown for another host.
Liveness ProbeProcess(const std::string& host, int64_t pid);
// This process's host key: hostname plus pid namespace.
std::string HostKey();

struct PeerInfo {
  std::string host;  // HostKey() of the peer.
  int64_t pid = 0;
};

// Verdict on one collective that did not complete.
struct StallReport {
  CollectiveRecord stuck;
  double waited_s = 0;
  std::vector<int> reached;        // Ranks that started `stuck.seq` (this rank included).
  std::vector<int> not_reached;    // Ranks that did not (or whose progress is unknown).
  std::vector<int> dead;           // Dead, stopped, stale or without a heartbeat file.
  std::vector<std::string> lines;  // One per rank not in `reached` or in `dead`: what is known.
  std::string Summary() const;     // One line.
  std::string Text() const;        // Summary plus the per-rank lines.
};

// Pure: classifies every rank from its progress record (nullopt: no usable
// file) and liveness at wall time `now`.
StallReport DiagnoseStall(const CollectiveRecord& stuck, double waited_s, int self, double now,
                          const std::vector<std::optional<ProgressRecord>>& progress,
                          const std::vector<Liveness>& liveness, const std::string& job, double stale_s);

// Wall-clock seconds since the epoch.
double WallSeconds();

class CollectiveWatchdog {
 public:
  // Called once, from the monitor thread, to end the job (e.g. MPI_Abort).
  using AbortFn = std::function<void(int exit_code)>;

  // `peers` has one entry per rank (index = rank). `baseline_seq` is the
  // number of collectives already completed. With exit_fallback, the process
  // _exit()s if `abort` has not ended it within 3 s (off in unit tests).
  CollectiveWatchdog(int rank, int world_size, std::string job, std::vector<PeerInfo> peers, WatchdogOptions options,
                     AbortFn abort, int64_t baseline_seq = 0, bool exit_fallback = true);
  // Stops the monitor and writes a last heartbeat with state "exited".
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Progress thread: a collective starts / ends. `record.start` is filled in.
  void Begin(CollectiveRecord record);
  void End(int64_t seq);
  // Reads the peers' files now and logs a diagnosis of the pending collective
  // (for a collective that failed with an error). Returns the summary line.
  std::string DiagnoseNow(const std::string& why);

  const WatchdogOptions& options() const { return options_; }
  // True once the watchdog decided to abort (tests).
  bool aborted() const { return aborted_.load(); }
  std::string RecorderPath() const;
  std::string ProgressPath(int rank) const;

 private:
  struct Pending {
    CollectiveRecord record;
    double steady_start = 0;
  };
  void Monitor();
  void Tick(double steady_now);
  // Rewrites this rank's progress file; returns "" or the error.
  std::string WriteHeartbeat(const std::string& state);
  std::optional<Pending> CurrentPending();
  bool LocalPeerDied();
  StallReport Diagnose(const Pending& pending, double waited_s);
  void Report(const StallReport& report, const std::string& why, bool fatal);
  void WriteFlightRecorder(const std::string& reason, const std::string& diagnosis);
  void Abort();

  const int rank_;
  const int world_size_;
  const std::string job_;
  const std::vector<PeerInfo> peers_;
  const WatchdogOptions options_;
  const AbortFn abort_;
  const bool exit_fallback_;
  const std::string host_;

  std::mutex mu_;  // Guards the fields below.
  FlightRecorder recorder_;
  std::optional<Pending> pending_;
  int64_t started_ = 0, completed_ = 0;
  int64_t beat_ = 0;
  int64_t reported_seq_ = 0;   // Last seq diagnosed on a stop signal.
  int64_t announced_seq_ = 0;  // Monitor thread only: last pending seq written to the heartbeat at once.
  bool stop_ = false;
  std::condition_variable cv_;

  std::atomic<bool> aborted_{false};
  double last_beat_steady_ = -1e300;
  std::thread monitor_;
};

}  // namespace dfar
