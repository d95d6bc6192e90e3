// Collective watchdog; see watchdog.h for the contract.
//
// Why a side channel of files: the stuck collective is the only link MPI
// gives between the ranks, so what a rank learns about its peers while it is
// stuck must come from elsewhere. A small JSON file per rank on the run dir's
// (shared) file system costs one rename every heartbeat and is read only when
// a diagnosis is due, so it adds no traffic while the job is healthy.
//
// Why the pid check: under mpirun a rank's death makes mpirun SIGTERM the
// survivors and SIGKILL them about a second later. That is too soon for a
// heartbeat to look stale, so a peer on this host is checked by pid every
// tick while a collective is pending, and the diagnosis is written within a
// tick of both facts being true.
#include "dfar/comm/watchdog.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dfar/core/error.h"
#include "dfar/core/file_util.h"
#include "dfar/core/logging.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kProgressFormat = "dfar-progress";
constexpr const char* kRecorderFormat = "dfar-flight-recorder";
constexpr int kFormatVersion = 1;
constexpr size_t kMaxProgressBytes = 64 << 10;  // A progress file is ~400 bytes; anything larger is not one.
constexpr size_t kMaxRankLines = 64;            // Per-rank lines in a diagnosis; the rest are counted.

thread_local const char* t_site = nullptr;
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "NotifyStopSignal must be async-signal-safe");

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "0-3,7,9-10": compact for large worlds.
std::string RankList(const std::vector<int>& ranks) {
  if (ranks.empty()) return "none";
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(ranks[i]);
    if (j > i) out += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  char buf[64];
  if (bytes >= (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else if (bytes >= (1ull << 10)) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", static_cast<double>(bytes) / (1 << 10));
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  }
  return buf;
}

std::string Seconds1(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

// At most `limit` bytes of a file; nullopt if unreadable or larger.
std::optional<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text(limit + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  const auto n = static_cast<size_t>(in.gcount());
  if (n > limit) return std::nullopt;
  text.resize(n);
  return text;
}

json RecordJson(const CollectiveRecord& r) {
  json j = {{"seq", r.seq},     {"kind", r.kind}, {"dtype", r.dtype},
            {"bytes", r.bytes}, {"site", r.site}, {"start", r.start}};
  j["end"] = r.end > 0 ? json(r.end) : json(nullptr);
  j["duration_s"] = r.end > 0 ? json(r.end - r.start) : json(nullptr);
  j["state"] = r.end > 0 ? "completed" : "pending";
  return j;
}

std::string Describe(const CollectiveRecord& r) {
  std::string out = "collective #" + std::to_string(r.seq) + " " + r.kind;
  if (!r.dtype.empty()) out += " " + r.dtype;
  out += " " + HumanBytes(r.bytes);
  out += r.site.empty() ? " (site unlabelled)" : " (site \"" + r.site + "\")";
  return out;
}

// What is known of one peer, for a diagnosis line.
std::string PeerLine(int rank, const std::optional<ProgressRecord>& p, double age, const std::string& verdict,
                     bool dead, bool reached) {
  std::string line = "rank " + std::to_string(rank) + ": " + verdict;
  if (dead) {
    line += reached ? "; had reached it by its last heartbeat" : "; had NOT reached it by its last heartbeat";
  } else {
    line += reached ? "; has reached it" : "; has NOT reached it";
  }
  if (!p) return line;
  line += "; last heartbeat " + Seconds1(age) + " ago (host " + p->host + ", pid " + std::to_string(p->pid) +
          ", state " + p->state + "); started #" + std::to_string(p->started);
  if (!p->kind.empty()) line += " " + p->kind;
  if (!p->site.empty()) line += " \"" + p->site + "\"";
  line += ", completed #" + std::to_string(p->completed);
  return line;
}

// Classifies one peer: returns the verdict text and sets *dead.
std::string PeerVerdict(const std::optional<ProgressRecord>& p, Liveness live, double age, double stale_s, bool* dead) {
  *dead = true;
  if (live == Liveness::kDead) return "DEAD (its process is gone)";
  if (live == Liveness::kStopped) return "STOPPED (its process is stopped: SIGSTOP or a debugger)";
  if (!p) return "MISSING (no heartbeat file from this job)";
  if (age > stale_s) return "STALE heartbeat (dead, frozen or cut off from the file system)";
  if (p->state == "exited" || p->state == "finalizing") return "LEFT the job (state " + p->state + ")";
  *dead = false;
  return "alive";
}

}  // namespace

// ---- sites and signals ------------------------------------------------------

CollectiveSite::CollectiveSite(const char* label) : previous_(t_site) {
  t_site = label;
}
CollectiveSite::~CollectiveSite() {
  t_site = previous_;
}
const char* CollectiveSite::Current() {
  return t_site != nullptr ? t_site : "";
}

void NotifyStopSignal(int sig) {
  g_stop_signal.store(sig, std::memory_order_relaxed);
}
int StopSignalSeen() {
  return g_stop_signal.load(std::memory_order_relaxed);
}
extern "C" void DfarOnStopSignal(int sig) {
  NotifyStopSignal(sig);
}
void InstallStopSignalHandlers() {
  std::signal(SIGTERM, DfarOnStopSignal);
  std::signal(SIGUSR1, DfarOnStopSignal);
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- flight recorder --------------------------------------------------------

FlightRecorder::FlightRecorder(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

void FlightRecorder::Start(const CollectiveRecord& record) {
  if (records_.size() == capacity_) records_.pop_front();
  records_.push_back(record);
}

void FlightRecorder::Finish(int64_t seq, double end) {
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    if (it->seq == seq) {
      it->end = end;
      return;
    }
  }
}

std::vector<CollectiveRecord> FlightRecorder::Snapshot() const {
  return {records_.begin(), records_.end()};
}

// ---- progress files ---------------------------------------------------------

std::string ProgressFileName(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "rank-%05d.json", rank);
  return buf;
}

std::string FormatProgress(const ProgressRecord& p) {
  const json j = {{"format", kProgressFormat},
                  {"version", kFormatVersion},
                  {"job", p.job},
                  {"rank", p.rank},
                  {"world_size", p.world_size},
                  {"host", p.host},
                  {"pid", p.pid},
                  {"wall", p.wall},
                  {"beat", p.beat},
                  {"started", p.started},
                  {"completed", p.completed},
                  {"kind", p.kind},
                  {"site", p.site},
                  {"pending_s", p.pending_s},
                  {"state", p.state}};
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::optional<ProgressRecord> ParseProgress(const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("format", "") != kProgressFormat || j.value("version", 0) != kFormatVersion) {
    return std::nullopt;
  }
  try {
    ProgressRecord p;
    p.job = j.at("job").get<std::string>();
    p.rank = j.at("rank").get<int>();
    p.world_size = j.at("world_size").get<int>();
    p.host = j.at("host").get<std::string>();
    p.pid = j.at("pid").get<int64_t>();
    p.wall = j.at("wall").get<double>();
    p.beat = j.at("beat").get<int64_t>();
    p.started = j.at("started").get<int64_t>();
    p.completed = j.at("completed").get<int64_t>();
    p.kind = j.at("kind").get<std::string>();
    p.site = j.at("site").get<std::string>();
    p.pending_s = j.at("pending_s").get<double>();
    p.state = j.at("state").get<std::string>();
    if (!std::isfinite(p.wall) || !std::isfinite(p.pending_s)) return std::nullopt;
    return p;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// ---- liveness ---------------------------------------------------------------

const char* LivenessName(Liveness l) {
  switch (l) {
    case Liveness::kUnknown:
      return "unknown";
    case Liveness::kAlive:
      return "alive";
    case Liveness::kStopped:
      return "stopped";
    case Liveness::kDead:
      return "dead";
  }
  return "unknown";
}

std::string HostKey() {
  static const std::string key = [] {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    char ns[128] = {};
    const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
    return std::string(host) + (n > 0 ? "/" + std::string(ns, static_cast<size_t>(n)) : "");
  }();
  return key;
}

Liveness ProbeProcess(const std::string& host, int64_t pid) {
  if (host != HostKey() || pid <= 0 || pid > std::numeric_limits<pid_t>::max()) return Liveness::kUnknown;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return Liveness::kDead;
  // Zombies (killed, not yet reaped) and stopped processes still answer kill(0).
  const auto stat = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!stat) return Liveness::kAlive;
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return Liveness::kAlive;
  const char state = (*stat)[paren + 2];
  if (state == 'Z' || state == 'X') return Liveness::kDead;
  if (state == 'T' || state == 't') return Liveness::kStopped;
  return Liveness::kAlive;
}

// ---- diagnosis --------------------------------------------------------------

std::string StallReport::Summary() const {
  return Describe(stuck) + " pending " + Seconds1(waited_s) + ": not reached by rank(s) " + RankList(not_reached) +
         "; dead or missing: rank(s) " + RankList(dead) + "; reached by " + std::to_string(reached.size()) + " of " +
         std::to_string(reached.size() + not_reached.size()) + " ranks";
}

std::string StallReport::Text() const {
  std::string out = Summary();
  for (const auto& line : lines) out += "\n  " + line;
  return out;
}

StallReport DiagnoseStall(const CollectiveRecord& stuck, double waited_s, int self, double now,
                          const std::vector<std::optional<ProgressRecord>>& progress,
                          const std::vector<Liveness>& liveness, const std::string& job, double stale_s) {
  StallReport report;
  report.stuck = stuck;
  report.waited_s = waited_s;
  size_t omitted = 0;
  for (int r = 0; r < static_cast<int>(progress.size()); ++r) {
    if (r == self) {
      report.reached.push_back(r);
      continue;
    }
    std::optional<ProgressRecord> p = progress[r];
    if (p && (p->job != job || p->rank != r)) p.reset();  // An older job's file, or a misplaced one.
    const Liveness live = r < static_cast<int>(liveness.size()) ? liveness[r] : Liveness::kUnknown;
    const double age = p ? std::max(0.0, now - p->wall) : 0;
    bool dead = false;
    const std::string verdict = PeerVerdict(p, live, age, stale_s, &dead);
    const bool reached = p && p->started >= stuck.seq;
    (reached ? report.reached : report.not_reached).push_back(r);
    if (dead) report.dead.push_back(r);
    if (reached && !dead) continue;
    if (report.lines.size() < kMaxRankLines) {
      report.lines.push_back(PeerLine(r, p, age, verdict, dead, reached));
    } else {
      ++omitted;
    }
  }
  if (omitted > 0) report.lines.push_back("... and " + std::to_string(omitted) + " more rank(s), see their logs");
  return report;
}

// ---- the watchdog -----------------------------------------------------------

CollectiveWatchdog::CollectiveWatchdog(int rank, int world_size, std::string job, std::vector<PeerInfo> peers,
                                       WatchdogOptions options, AbortFn abort, int64_t baseline_seq, bool exit_fallback)
    : rank_(rank),
      world_size_(world_size),
      job_(std::move(job)),
      peers_(std::move(peers)),
      options_(std::move(options)),
      abort_(std::move(abort)),
      exit_fallback_(exit_fallback),
      host_(HostKey()),
      recorder_(options_.recorder_capacity),
      started_(baseline_seq),
      completed_(baseline_seq) {
  DFAR_CHECK(!options_.dir.empty(), "the collective watchdog needs a directory for its progress files");
  DFAR_CHECK(options_.timeout_s > 0 && options_.tick_s > 0 && options_.heartbeat_s > 0,
             "collective watchdog: timeout, tick and heartbeat periods must be positive");
  DFAR_CHECK(static_cast<int>(peers_.size()) == world_size_, "collective watchdog: ", peers_.size(),
             " peer entries for a world of ", world_size_);
  std::error_code ec;
  fs::create_directories(fs::path(options_.dir) / "progress", ec);
  DFAR_CHECK(!ec, "cannot create ", (fs::path(options_.dir) / "progress").string(), ": ", ec.message());
  const std::string err = WriteHeartbeat("running");
  DFAR_CHECK(err.empty(), "collective watchdog: ", err);
  last_beat_steady_ = SteadySeconds();
  monitor_ = std::thread([this] { Monitor(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  if (!aborted_.load()) WriteHeartbeat("exited");
}

std::string CollectiveWatchdog::ProgressPath(int rank) const {
  return (fs::path(options_.dir) / "progress" / ProgressFileName(rank)).string();
}

std::string CollectiveWatchdog::RecorderPath() const {
  char name[48];
  std::snprintf(name, sizeof(name), "flight-recorder-rank-%05d.json", rank_);
  return (fs::path(options_.dir) / name).string();
}

void CollectiveWatchdog::Begin(CollectiveRecord record) {
  record.start = WallSeconds();
  std::lock_guard<std::mutex> lock(mu_);
  started_ = record.seq;
  recorder_.Start(record);
  pending_ = Pending{std::move(record), SteadySeconds()};
}

void CollectiveWatchdog::End(int64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  completed_ = seq;
  recorder_.Finish(seq, WallSeconds());
  if (pending_ && pending_->record.seq == seq) pending_.reset();
}

std::optional<CollectiveWatchdog::Pending> CollectiveWatchdog::CurrentPending() {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

void CollectiveWatchdog::Monitor() {
  const auto tick = std::chrono::duration<double>(options_.tick_s);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, tick);
    if (stop_) break;
    lock.unlock();
    Tick(SteadySeconds());
    lock.lock();
  }
}

// One monitor period: heartbeat, then the three reasons to speak up.
void CollectiveWatchdog::Tick(double now) {
  if (aborted_.load()) return;
  if (now - last_beat_steady_ >= options_.heartbeat_s) {
    WriteHeartbeat("");
    last_beat_steady_ = now;
  }
  const std::optional<Pending> pending = CurrentPending();
  if (!pending) return;
  const double waited = now - pending->steady_start;
  // A collective that waits more than two ticks is announced at once, so
  // that a peer's diagnosis sees this rank at it rather than a beat behind.
  if (waited >= 2 * options_.tick_s && announced_seq_ != pending->record.seq) {
    announced_seq_ = pending->record.seq;
    WriteHeartbeat("");
    last_beat_steady_ = now;
  }
  if (waited > options_.timeout_s) {
    Report(Diagnose(*pending, waited), "deadline of " + Seconds1(options_.timeout_s) + " exceeded", true);
    return;
  }
  // While finalizing, peers that already finished may have exited.
  if (pending->record.kind != "finalize" && LocalPeerDied()) {
    Report(Diagnose(*pending, waited), "a rank on this host died while this collective waits", true);
    return;
  }
  const int sig = StopSignalSeen();
  if (sig != 0 && waited > options_.signal_pending_s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (reported_seq_ == pending->record.seq) return;
      reported_seq_ = pending->record.seq;
    }
    Report(Diagnose(*pending, waited), "stop signal " + std::to_string(sig) + " received", false);
  }
}

bool CollectiveWatchdog::LocalPeerDied() {
  for (int r = 0; r < world_size_; ++r) {
    if (r != rank_ && peers_[r].host == host_ && ProbeProcess(peers_[r].host, peers_[r].pid) == Liveness::kDead) {
      return true;
    }
  }
  return false;
}

std::string CollectiveWatchdog::WriteHeartbeat(const std::string& state) {
  ProgressRecord p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    p.started = started_;
    p.completed = completed_;
    p.beat = ++beat_;
    if (pending_) {
      p.kind = pending_->record.kind;
      p.site = pending_->record.site;
      p.pending_s = SteadySeconds() - pending_->steady_start;
    }
  }
  p.job = job_;
  p.rank = rank_;
  p.world_size = world_size_;
  p.host = host_;
  p.pid = ::getpid();
  p.wall = WallSeconds();
  p.state = !state.empty() ? state : aborted_.load() ? "aborting" : p.kind == "finalize" ? "finalizing" : "running";
  const std::string err = TryWriteFileAtomic(ProgressPath(rank_), FormatProgress(p), /*durable=*/false);
  static std::atomic<bool> warned{false};
  if (!err.empty() && !warned.exchange(true)) LogWarn("collective watchdog heartbeat: {}", err);
  return err;
}

StallReport CollectiveWatchdog::Diagnose(const Pending& pending, double waited_s) {
  std::vector<std::optional<ProgressRecord>> progress(world_size_);
  std::vector<Liveness> liveness(world_size_, Liveness::kUnknown);
  for (int r = 0; r < world_size_; ++r) {
    if (r == rank_) continue;
    if (const auto text = ReadSmallFile(ProgressPath(r), kMaxProgressBytes)) progress[r] = ParseProgress(*text);
    liveness[r] = ProbeProcess(peers_[r].host, peers_[r].pid);
  }
  return DiagnoseStall(pending.record, waited_s, rank_, WallSeconds(), progress, liveness, job_, options_.stale_s);
}

void CollectiveWatchdog::Report(const StallReport& report, const std::string& why, bool fatal) {
  const std::string head = "collective watchdog on rank " + std::to_string(rank_) + ": " + why + "; ";
  const std::string text = head + report.Text();
  const std::string recorder = RecorderPath();
  const LogLevel level = fatal ? LogLevel::kCritical : LogLevel::kError;
  LogAt(level, "{}", head + report.Summary());
  for (const auto& line : report.lines) LogAt(level, "  {}", line);
  LogAt(level, "flight recorder: {}{}", recorder, fatal ? "; aborting the job" : "");
  FlushLog();
  std::fprintf(stderr, "dfar: %s\ndfar: flight recorder: %s\n", text.c_str(), recorder.c_str());
  std::fflush(stderr);
  if (fatal) aborted_.store(true);
  WriteFlightRecorder(why, text);
  if (fatal) {
    WriteHeartbeat("aborting");
    Abort();
  }
}

void CollectiveWatchdog::WriteFlightRecorder(const std::string& reason, const std::string& diagnosis) {
  json records = json::array();
  std::optional<Pending> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& r : recorder_.Snapshot()) records.push_back(RecordJson(r));
    pending = pending_;
  }
  const json j = {{"format", kRecorderFormat},
                  {"version", kFormatVersion},
                  {"job", job_},
                  {"rank", rank_},
                  {"world_size", world_size_},
                  {"host", host_},
                  {"pid", static_cast<int64_t>(::getpid())},
                  {"written_at", WallSeconds()},
                  {"reason", reason},
                  {"diagnosis", diagnosis},
                  {"pending_seq", pending ? json(pending->record.seq) : json(nullptr)},
                  {"collectives", records}};
  const std::string err =
      TryWriteFileAtomic(RecorderPath(), j.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  if (!err.empty()) LogError("flight recorder: {}", err);
}

void CollectiveWatchdog::Abort() {
  if (exit_fallback_) {
    // If the abort function hangs (MPI_Abort from a thread that does not own
    // MPI is not guaranteed to work), end this process anyway.
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::seconds(3));
      std::fflush(stderr);
      ::_exit(kWatchdogExitCode);
    }).detach();
  }
  if (abort_) abort_(kWatchdogExitCode);
  if (exit_fallback_) ::_exit(kWatchdogExitCode);
}

std::string CollectiveWatchdog::DiagnoseNow(const std::string& why) {
  const std::optional<Pending> pending = CurrentPending();
  if (!pending) return "";
  const StallReport report = Diagnose(*pending, SteadySeconds() - pending->steady_start);
  Report(report, why, false);
  return report.Summary();
}

}  // namespace dfar
