// The collective watchdog without MPI: the bookkeeping (progress files,
// staleness, naming of missing ranks, the flight recorder ring) and the
// monitor's three triggers (deadline, a dead peer on this host, a stop
// signal) with a fake abort function.
#include "dfar/comm/watchdog.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "dfar/core/error.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string FreshDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string dir = ::testing::TempDir() + "dfar-watchdog-" + std::to_string(getpid()) + "-" + info->name();
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ProgressRecord Progress(int rank, int64_t started, int64_t completed, double wall, const std::string& job = "job") {
  ProgressRecord p;
  p.job = job;
  p.rank = rank;
  p.world_size = 4;
  p.host = "h";
  p.pid = 100 + rank;
  p.wall = wall;
  p.started = started;
  p.completed = completed;
  p.kind = "all_reduce";
  p.state = "running";
  return p;
}

CollectiveRecord Stuck(int64_t seq) {
  CollectiveRecord r;
  r.seq = seq;
  r.kind = "all_reduce";
  r.dtype = "float32";
  r.bytes = 4096;
  r.site = "grad sync";
  return r;
}

// Polls `cond` for up to `seconds`.
template <typename F>
bool Eventually(F cond, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

WatchdogOptions FastOptions(const std::string& dir, double timeout_s) {
  WatchdogOptions o;
  o.dir = dir;
  o.timeout_s = timeout_s;
  o.tick_s = 0.01;
  o.heartbeat_s = 0.05;
  o.signal_pending_s = 0.1;
  return o;
}

// A pid that certainly belongs to no process: a child that exited and was reaped.
int64_t ReapedPid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  return child;
}

TEST(FlightRecorderTest, KeepsTheLastCapacityRecordsOldestFirst) {
  FlightRecorder fr(4);
  for (int64_t seq = 1; seq <= 10; ++seq) {
    fr.Start(Stuck(seq));
    if (seq != 10) fr.Finish(seq, 100.0 + seq);
  }
  fr.Finish(2, 1.0);  // Left the ring long ago: ignored.
  const auto snap = fr.Snapshot();
  ASSERT_EQ(snap.size(), 4u);
  EXPECT_EQ(snap.front().seq, 7);
  EXPECT_EQ(snap.back().seq, 10);
  EXPECT_DOUBLE_EQ(snap[0].end, 107.0);
  EXPECT_EQ(snap.back().end, 0.0);  // Still pending.
}

TEST(ProgressFileTest, RoundTripsAndNamesRanksInFiveDigits) {
  ProgressRecord p = Progress(3, 41, 40, 1700000000.25);
  p.site = "stop \"flag\"";
  p.pending_s = 2.5;
  const auto back = ParseProgress(FormatProgress(p));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->rank, 3);
  EXPECT_EQ(back->started, 41);
  EXPECT_EQ(back->completed, 40);
  EXPECT_EQ(back->site, p.site);
  EXPECT_DOUBLE_EQ(back->wall, p.wall);
  EXPECT_EQ(back->state, "running");
  EXPECT_EQ(ProgressFileName(12), "rank-00012.json");
  const json j = json::parse(FormatProgress(p));
  EXPECT_EQ(j["format"], "dfar-progress");
  EXPECT_EQ(j["version"], 1);
}

TEST(ProgressFileTest, RejectsDamagedFiles) {
  EXPECT_FALSE(ParseProgress("").has_value());
  EXPECT_FALSE(ParseProgress("{\"format\": \"dfar-progress\", \"version\": 1").has_value());  // Truncated.
  EXPECT_FALSE(ParseProgress("[1, 2]").has_value());
  json j = json::parse(FormatProgress(Progress(1, 1, 1, 5)));
  j["version"] = 2;
  EXPECT_FALSE(ParseProgress(j.dump()).has_value());
  j["version"] = 1;
  j["started"] = "seven";
  EXPECT_FALSE(ParseProgress(j.dump()).has_value());
  j.erase("started");
  EXPECT_FALSE(ParseProgress(j.dump()).has_value());
}

TEST(DiagnoseStallTest, NamesRanksThatDidNotReachTheCollectiveAndStaleOnes) {
  const double now = 1000;
  std::vector<std::optional<ProgressRecord>> progress(4);
  progress[1] = Progress(1, 7, 6, now - 0.4);  // Reached #7, heartbeat fresh.
  progress[2] = Progress(2, 6, 6, now - 0.4);  // Still before #7, alive: a straggler.
  progress[3] = Progress(3, 6, 6, now - 9.0);  // Before #7 and silent for 9 s.
  const std::vector<Liveness> live(4, Liveness::kUnknown);
  const StallReport r = DiagnoseStall(Stuck(7), 5.0, 0, now, progress, live, "job", 3.0);
  EXPECT_EQ(r.reached, (std::vector<int>{0, 1}));
  EXPECT_EQ(r.not_reached, (std::vector<int>{2, 3}));
  EXPECT_EQ(r.dead, (std::vector<int>{3}));
  ASSERT_EQ(r.lines.size(), 2u);
  EXPECT_NE(r.lines[0].find("rank 2: alive; has NOT reached it"), std::string::npos) << r.lines[0];
  EXPECT_NE(r.lines[1].find("rank 3: STALE heartbeat"), std::string::npos) << r.lines[1];
  EXPECT_NE(r.lines[1].find("9.0 s ago"), std::string::npos) << r.lines[1];
  const std::string summary = r.Summary();
  EXPECT_NE(summary.find("collective #7 all_reduce float32 4.0 KiB (site \"grad sync\")"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("not reached by rank(s) 2-3; dead or missing: rank(s) 3"), std::string::npos) << summary;
}

TEST(DiagnoseStallTest, DeadProcessMissingFileAndOlderJobAreNamed) {
  const double now = 50;
  std::vector<std::optional<ProgressRecord>> progress(4);
  progress[1] = Progress(1, 2, 2, now - 0.1);           // Fresh file, but the process is gone.
  progress[3] = Progress(3, 9, 9, now - 0.1, "older");  // A previous job's file: as good as none.
  std::vector<Liveness> live(4, Liveness::kUnknown);
  live[1] = Liveness::kDead;
  const StallReport r = DiagnoseStall(Stuck(3), 1.0, 0, now, progress, live, "job", 3.0);
  EXPECT_EQ(r.not_reached, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(r.dead, (std::vector<int>{1, 2, 3}));
  EXPECT_NE(r.Text().find("rank 1: DEAD"), std::string::npos) << r.Text();
  EXPECT_NE(r.Text().find("rank 2: MISSING"), std::string::npos) << r.Text();
  EXPECT_NE(r.Text().find("rank 3: MISSING"), std::string::npos) << r.Text();
}

TEST(DiagnoseStallTest, ManyRanksAreCompressedAndCapped) {
  std::vector<std::optional<ProgressRecord>> progress(200);
  const StallReport r = DiagnoseStall(Stuck(1), 1.0, 0, 10, progress, {}, "job", 3.0);
  EXPECT_NE(r.Summary().find("not reached by rank(s) 1-199"), std::string::npos) << r.Summary();
  EXPECT_EQ(r.lines.size(), 65u);
  EXPECT_NE(r.lines.back().find("135 more"), std::string::npos);
}

TEST(LivenessTest, ProbesProcessesOnThisHostOnly) {
  EXPECT_EQ(ProbeProcess(HostKey(), getpid()), Liveness::kAlive);
  EXPECT_EQ(ProbeProcess("another-host", getpid()), Liveness::kUnknown);
  EXPECT_EQ(ProbeProcess(HostKey(), ReapedPid()), Liveness::kDead);
  const pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  EXPECT_TRUE(Eventually([&] { return ProbeProcess(HostKey(), zombie) == Liveness::kDead; }, 5));
  waitpid(zombie, nullptr, 0);
  const pid_t sleeper = fork();
  if (sleeper == 0) {
    pause();
    _exit(0);
  }
  kill(sleeper, SIGSTOP);
  EXPECT_TRUE(Eventually([&] { return ProbeProcess(HostKey(), sleeper) == Liveness::kStopped; }, 5));
  kill(sleeper, SIGKILL);
  waitpid(sleeper, nullptr, 0);
}

TEST(CollectiveSiteTest, NestsPerThread) {
  EXPECT_STREQ(CollectiveSite::Current(), "");
  {
    CollectiveSite outer("outer");
    {
      CollectiveSite inner("inner");
      EXPECT_STREQ(CollectiveSite::Current(), "inner");
      std::thread([] { EXPECT_STREQ(CollectiveSite::Current(), ""); }).join();
    }
    EXPECT_STREQ(CollectiveSite::Current(), "outer");
  }
  EXPECT_STREQ(CollectiveSite::Current(), "");
}

TEST(CollectiveWatchdogTest, HeartbeatTracksProgress) {
  const std::string dir = FreshDir();
  std::vector<PeerInfo> peers = {{HostKey(), getpid()}};
  CollectiveWatchdog wd(0, 1, "job", peers, FastOptions(dir, 60), nullptr, /*baseline_seq=*/4, false);
  auto read = [&] { return ParseProgress(ReadText(wd.ProgressPath(0))); };
  ASSERT_TRUE(read().has_value());
  EXPECT_EQ(read()->completed, 4);
  CollectiveRecord r = Stuck(5);
  wd.Begin(r);
  EXPECT_TRUE(Eventually(
      [&] {
        auto p = read();
        return p && p->started == 5 && p->completed == 4;
      },
      5));
  EXPECT_EQ(read()->kind, "all_reduce");
  EXPECT_EQ(read()->site, "grad sync");
  wd.End(5);
  EXPECT_TRUE(Eventually(
      [&] {
        auto p = read();
        return p && p->completed == 5 && p->pending_s == 0;
      },
      5));
  const int64_t beat = read()->beat;
  EXPECT_TRUE(Eventually(
      [&] {
        auto p = read();
        return p && p->beat > beat;
      },
      5));
  EXPECT_FALSE(wd.aborted());
}

TEST(CollectiveWatchdogTest, DeadlineNamesTheSilentPeerDumpsTheRecorderAndAborts) {
  const std::string dir = FreshDir();
  // Rank 1 of "this job" last wrote a heartbeat 10 s ago, before collective #3.
  fs::create_directories(dir + "/progress");
  ProgressRecord silent = Progress(1, 2, 2, WallSeconds() - 10, "job");
  std::ofstream(dir + "/progress/rank-00001.json") << FormatProgress(silent);
  std::vector<PeerInfo> peers = {{HostKey(), getpid()}, {"elsewhere", 1}};
  std::atomic<int> abort_code{0};
  CollectiveWatchdog wd(
      0, 2, "job", peers, FastOptions(dir, 0.3), [&](int code) { abort_code = code; }, 2, false);
  wd.Begin(Stuck(1));
  wd.End(1);
  wd.Begin(Stuck(3));
  ASSERT_TRUE(Eventually([&] { return abort_code.load() != 0; }, 10));
  EXPECT_EQ(abort_code.load(), kWatchdogExitCode);
  EXPECT_TRUE(wd.aborted());
  const json fr = json::parse(ReadText(wd.RecorderPath()));
  EXPECT_EQ(fr["format"], "dfar-flight-recorder");
  EXPECT_EQ(fr["rank"], 0);
  EXPECT_EQ(fr["pending_seq"], 3);
  ASSERT_EQ(fr["collectives"].size(), 2u);
  EXPECT_EQ(fr["collectives"][0]["state"], "completed");
  EXPECT_EQ(fr["collectives"][1]["seq"], 3);
  EXPECT_EQ(fr["collectives"][1]["state"], "pending");
  EXPECT_TRUE(fr["collectives"][1]["end"].is_null());
  const std::string diagnosis = fr["diagnosis"];
  EXPECT_NE(diagnosis.find("deadline"), std::string::npos) << diagnosis;
  EXPECT_NE(diagnosis.find("rank 1: STALE heartbeat"), std::string::npos) << diagnosis;
  EXPECT_NE(diagnosis.find("had NOT reached it by its last heartbeat"), std::string::npos) << diagnosis;
  EXPECT_EQ(ParseProgress(ReadText(wd.ProgressPath(0)))->state, "aborting");
}

TEST(CollectiveWatchdogTest, DeadPeerOnThisHostAbortsLongBeforeTheDeadline) {
  const std::string dir = FreshDir();
  std::vector<PeerInfo> peers = {{HostKey(), getpid()}, {HostKey(), ReapedPid()}};
  std::atomic<int> abort_code{0};
  CollectiveWatchdog wd(
      0, 2, "job", peers, FastOptions(dir, 600), [&](int code) { abort_code = code; }, 0, false);
  const auto t0 = std::chrono::steady_clock::now();
  wd.Begin(Stuck(1));
  ASSERT_TRUE(Eventually([&] { return abort_code.load() != 0; }, 10));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  const std::string diagnosis = json::parse(ReadText(wd.RecorderPath()))["diagnosis"];
  EXPECT_NE(diagnosis.find("died"), std::string::npos) << diagnosis;
  EXPECT_NE(diagnosis.find("rank 1: DEAD"), std::string::npos) << diagnosis;
}

TEST(CollectiveWatchdogTest, FinalizeIgnoresPeersThatAlreadyLeft) {
  const std::string dir = FreshDir();
  std::vector<PeerInfo> peers = {{HostKey(), getpid()}, {HostKey(), ReapedPid()}};
  std::atomic<int> abort_code{0};
  CollectiveWatchdog wd(
      0, 2, "job", peers, FastOptions(dir, 600), [&](int code) { abort_code = code; }, 0, false);
  CollectiveRecord fin;
  fin.seq = 1;
  fin.kind = "finalize";
  wd.Begin(fin);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(abort_code.load(), 0);
  EXPECT_EQ(ParseProgress(ReadText(wd.ProgressPath(0)))->state, "finalizing");
  wd.End(1);
}

TEST(CollectiveWatchdogTest, StopSignalWithPendingCollectiveLogsDiagnosisWithoutAborting) {
  const std::string dir = FreshDir();
  std::vector<PeerInfo> peers = {{HostKey(), getpid()}, {"elsewhere", 1}};
  std::atomic<int> abort_code{0};
  NotifyStopSignal(0);  // No signal seen.
  {
    CollectiveWatchdog wd(
        0, 2, "job", peers, FastOptions(dir, 600), [&](int code) { abort_code = code; }, 0, false);
    wd.Begin(Stuck(1));
    NotifyStopSignal(SIGTERM);
    ASSERT_TRUE(Eventually([&] { return fs::exists(wd.RecorderPath()); }, 10));
    const std::string diagnosis = json::parse(ReadText(wd.RecorderPath()))["diagnosis"];
    EXPECT_NE(diagnosis.find("stop signal 15"), std::string::npos) << diagnosis;
    EXPECT_NE(diagnosis.find("rank 1: MISSING"), std::string::npos) << diagnosis;
    wd.End(1);
  }
  NotifyStopSignal(0);  // No signal seen.
  EXPECT_EQ(abort_code.load(), 0);
  EXPECT_EQ(ParseProgress(ReadText(dir + "/progress/rank-00000.json"))->state, "exited");
}

TEST(CollectiveWatchdogTest, RefusesAnUnwritableDirectory) {
  const std::string dir = FreshDir();
  std::ofstream(dir + "/file") << "x";  // A file where the run dir should be: fails even for root.
  std::vector<PeerInfo> peers = {{HostKey(), getpid()}};
  EXPECT_THROW(CollectiveWatchdog(0, 1, "job", peers, FastOptions(dir + "/file", 1), nullptr, 0, false), Error);
}

}  // namespace
}  // namespace dfar
