// The NCCL communicator's collectives, exact, in fp32 and bf16, at any world
// size: alone (world size 1, as scripts/gpu_check.sh runs it on a one-GPU
// host) or under mpirun -np N with N GPUs. Rank r takes cuda:(r mod devices).
//
// Why exact: every value is a small integer (or a half) that bf16 holds
// without rounding (|v| <= 256 with at most 8 significant bits), so a sum
// over up to 8 ranks, a max, an average, a gather or a broadcast has one
// right answer bit for bit, whatever order NCCL reduces in. A wrong dtype
// mapping, offset, count or stream ordering shows up as a mismatch.
//
// Also a real hang (NcclHangTest): a collective that cannot finish must end
// its process with kWatchdogExitCode, naming the collective, within seconds
// of the deadline rather than never.
//
// Compiled wherever CUDA and NCCL are found; skipped (and said so) on a
// host without a CUDA device, such as the build machine.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mpi_test_main.h"

extern char** environ;

#ifdef DFAR_WITH_NCCL
#include <cuda_runtime.h>

#include "dfar/comm/nccl_communicator.h"
#include "dfar/comm/watchdog.h"
#include "dfar/core/error.h"

namespace dfar {
namespace {

Communicator& Host() {
  return *testing::GlobalComm();
}

// The values are exact in bf16, so truncating fp32 to its top 16 bits is exact.
uint16_t ToBf16(float v) {
  uint32_t bits = 0;
  std::memcpy(&bits, &v, sizeof(bits));
  return static_cast<uint16_t>(bits >> 16);
}
float FromBf16(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float v = 0;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

// A device buffer of `count` elements of `dtype` (fp32 or bf16) holding
// floats, copied in and out through the host.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t count, DType dtype) : count_(count), dtype_(dtype) {
    EXPECT_EQ(cudaMalloc(&ptr_, count * ElementBytes()), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void Fill(const std::function<float(size_t)>& value) {
    if (dtype_ == DType::kFloat32) {
      std::vector<float> h(count_);
      for (size_t i = 0; i < count_; ++i) h[i] = value(i);
      EXPECT_EQ(cudaMemcpy(ptr_, h.data(), h.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    } else {
      std::vector<uint16_t> h(count_);
      for (size_t i = 0; i < count_; ++i) h[i] = ToBf16(value(i));
      EXPECT_EQ(cudaMemcpy(ptr_, h.data(), h.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    }
  }

  std::vector<float> Read() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> out(count_);
    if (dtype_ == DType::kFloat32) {
      EXPECT_EQ(cudaMemcpy(out.data(), ptr_, count_ * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    } else {
      std::vector<uint16_t> h(count_);
      EXPECT_EQ(cudaMemcpy(h.data(), ptr_, count_ * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      for (size_t i = 0; i < count_; ++i) out[i] = FromBf16(h[i]);
    }
    return out;
  }

  void* get() { return ptr_; }

 private:
  size_t ElementBytes() const { return dtype_ == DType::kFloat32 ? 4 : 2; }
  size_t count_;
  DType dtype_;
  void* ptr_ = nullptr;
};

// Counts the mismatches of `got` against `want(i)`, naming the first few.
void ExpectExact(const std::vector<float>& got, const std::function<float(size_t)>& want, const std::string& what) {
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want(i)) {
      if (wrong < 3) ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << want(i);
      ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0u) << what << ": " << wrong << " of " << got.size() << " elements wrong";
}

class NcclMpiTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const int devices = CudaDevicesVisible();
    if (devices == 0) GTEST_SKIP() << "no CUDA device on this host: NCCL backend compiled, not run";
    ASSERT_EQ(cudaSetDevice(Host().rank() % devices), cudaSuccess);
    nccl_ = MakeNcclCommunicator(Host(), Host().rank() % devices);
  }
  std::string Name(const char* op) const {
    return std::string(op) + (GetParam() == DType::kFloat32 ? " fp32" : " bf16") + " at world size " +
           std::to_string(Host().size());
  }
  std::unique_ptr<Communicator> nccl_;
};

// One element over a whole number of 256-byte lines plus an odd tail, so
// NCCL's chunking and the remainder are both crossed.
constexpr size_t kCount = (1u << 20) + 3;

TEST_P(NcclMpiTest, AllReduceSumMaxAvgAreExact) {
  const int n = Host().size(), r = Host().rank();
  ASSERT_LE(n, 8) << "values stay exact in bf16 for up to 8 ranks";
  DeviceBuffer buf(kCount, GetParam());
  buf.Fill([&](size_t i) { return static_cast<float>((r + 1) * (i % 8)); });
  nccl_->AllReduceAsync(buf.get(), kCount, GetParam(), ReduceOp::kSum)->Wait();
  ExpectExact(
      buf.Read(), [&](size_t i) { return static_cast<float>(n * (n + 1) / 2 * (i % 8)); }, Name("sum"));

  buf.Fill([&](size_t i) { return static_cast<float>(r + i % 8); });
  nccl_->AllReduceAsync(buf.get(), kCount, GetParam(), ReduceOp::kMax)->Wait();
  ExpectExact(
      buf.Read(), [&](size_t i) { return static_cast<float>(n - 1 + i % 8); }, Name("max"));

  // NCCL averages floats by scaling each input by 1/n before the sum: exact
  // only where 1/n is (a power of two).
  if ((n & (n - 1)) == 0) {
    buf.Fill([&](size_t i) { return static_cast<float>(2 * r + i % 8); });
    nccl_->AllReduceAsync(buf.get(), kCount, GetParam(), ReduceOp::kAvg)->Wait();  // mean of 2r is n - 1
    ExpectExact(
        buf.Read(), [&](size_t i) { return static_cast<float>(n - 1 + i % 8); }, Name("avg"));
  }
}

TEST_P(NcclMpiTest, ReduceScatterSumIsExact) {
  const int n = Host().size(), r = Host().rank();
  DeviceBuffer send(kCount * n, GetParam()), recv(kCount, GetParam());
  send.Fill([&](size_t j) { return static_cast<float>((r + 1) * (j % 8)); });
  nccl_->ReduceScatterAsync(send.get(), recv.get(), kCount, GetParam(), ReduceOp::kSum)->Wait();
  ExpectExact(
      recv.Read(), [&](size_t i) { return static_cast<float>(n * (n + 1) / 2 * ((r * kCount + i) % 8)); },
      Name("reduce-scatter"));
}

TEST_P(NcclMpiTest, AllGatherIsExact) {
  const int n = Host().size(), r = Host().rank();
  DeviceBuffer send(kCount, GetParam()), recv(kCount * n, GetParam());
  send.Fill([&](size_t i) { return static_cast<float>(8 * r + i % 8); });
  nccl_->AllGatherAsync(send.get(), recv.get(), kCount, GetParam())->Wait();
  ExpectExact(
      recv.Read(), [&](size_t j) { return static_cast<float>(8 * (j / kCount) + j % kCount % 8); }, Name("all-gather"));
}

TEST_P(NcclMpiTest, BroadcastFromTheLastRankIsExact) {
  const int n = Host().size(), r = Host().rank();
  DeviceBuffer buf(kCount, GetParam());
  buf.Fill([&](size_t i) { return r == n - 1 ? static_cast<float>(1 + i % 8) : -1.0f; });
  nccl_->BroadcastAsync(buf.get(), kCount, GetParam(), n - 1)->Wait();
  ExpectExact(
      buf.Read(), [&](size_t i) { return static_cast<float>(1 + i % 8); }, Name("broadcast"));
  nccl_->Barrier();
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NcclMpiTest, ::testing::Values(DType::kFloat32, DType::kBFloat16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return info.param == DType::kFloat32 ? std::string("fp32") : std::string("bf16");
                         });

// ---- a real hang ------------------------------------------------------------
//
// The child (this binary re-executed with kHangChildEnv set to a device
// index) opens a world-1 NCCL communicator with a 2 s deadline, runs an
// all-reduce and a barrier, blocks its compute stream with a host function
// that sleeps 20 s, and launches an all-reduce (#3) behind it, which
// therefore cannot finish. The monitor must then
// log the collective and _exit(kWatchdogExitCode). A fresh exec, not a bare
// fork: CUDA does not survive fork() in a process that already used it, as
// the tests above have.
//
// Timing: child start-up (exec, CUDA context, a one-rank NCCL init) takes
// about 1-3 s on an H100/H200; then the 2 s deadline, one 50 ms tick, and
// at most the fail path's 3 s grace if ncclCommAbort blocks behind the
// sleeping host function (it frees device memory): about 8 s at worst. The
// parent allows 15 s, still below the host function's 20 s, so a child that
// ended only because the all-reduce finished could not pass (and it would
// exit 1, not kWatchdogExitCode).
constexpr const char* kHangChildEnv = "DFAR_NCCL_HANG_CHILD";
constexpr double kHangTimeoutS = 2;
constexpr int kHostSleepS = 20;
constexpr double kParentWaitS = 15;

void CUDART_CB SleepOnStream(void*) {
  std::this_thread::sleep_for(std::chrono::seconds(kHostSleepS));
}

// The child's whole life: exits kWatchdogExitCode through the monitor, or 1.
[[noreturn]] void RunHangChild(int device) {
  try {
    DFAR_CHECK(cudaSetDevice(device) == cudaSuccess, "cudaSetDevice(", device, ") failed");
    cudaStream_t compute = nullptr;
    DFAR_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking) == cudaSuccess,
               "cudaStreamCreateWithFlags failed");
    auto host = MakeSingleCommunicator();
    auto nccl = MakeNcclCommunicator(*host, device, compute, kHangTimeoutS);
    void* buf = nullptr;
    DFAR_CHECK(cudaMalloc(&buf, 1024 * sizeof(float)) == cudaSuccess, "cudaMalloc failed");
    // Collectives #1 and #2 finish: NCCL's lazy connection setup is done
    // before the stream is blocked, so #3 is stuck only on the device.
    nccl->AllReduceAsync(buf, 1024, DType::kFloat32, ReduceOp::kSum)->Wait();
    nccl->Barrier();
    DFAR_CHECK(cudaLaunchHostFunc(compute, SleepOnStream, nullptr) == cudaSuccess, "cudaLaunchHostFunc failed");
    {
      CollectiveSite site("hang test bucket 1/1");
      nccl->AllReduceAsync(buf, 1024, DType::kFloat32, ReduceOp::kSum);
    }
    std::fprintf(stderr, "hang child: all_reduce launched behind a %d s host function\n", kHostSleepS);
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::seconds(kHostSleepS + 5));
    std::fprintf(stderr, "hang child: still alive, the monitor did not end the process\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hang child: %s\n", e.what());
  }
  std::fflush(stderr);
  ::_exit(1);  // No destructors: they would wait for the stuck stream.
}

// This environment minus the launcher's (the child is a one-rank job of its
// own: it must not join the parent's MPI world), plus kHangChildEnv.
std::vector<std::string> ChildEnvironment(int device) {
  const char* launcher[] = {"OMPI_", "PMIX_",       "PMI_",        "SLURM_",
                            "RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE="};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var = *e;
    bool drop = false;
    for (const char* prefix : launcher) drop = drop || var.rfind(prefix, 0) == 0;
    if (!drop) env.push_back(var);
  }
  env.push_back(std::string(kHangChildEnv) + "=" + std::to_string(device));
  return env;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(NcclHangTest, StuckAllReduceEndsTheProcessWithTheWatchdogCode) {
  const int devices = CudaDevicesVisible();
  if (devices == 0) GTEST_SKIP() << "no CUDA device on this host: NCCL backend compiled, not run";
  char exe[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", exe, sizeof(exe) - 1), 0);
  const std::string log =
      ::testing::TempDir() + "dfar-nccl-hang-" + std::to_string(::getpid()) + "-rank" + std::to_string(Host().rank());
  std::vector<std::string> env = ChildEnvironment(Host().rank() % devices);
  std::vector<char*> envp, argv = {exe, nullptr};
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = posix_spawn(&pid, exe, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ASSERT_EQ(rc, 0) << "posix_spawn " << exe << ": " << std::strerror(rc);
  int status = 0;
  double waited = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (waited > kParentWaitS) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "the child was still alive after " << kParentWaitS << " s; its output:\n" << ReadAll(log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string out = ReadAll(log);
  std::printf("hang child ended after %.1f s (deadline %.0f s)\n", waited, kHangTimeoutS);
  ASSERT_TRUE(WIFEXITED(status)) << "the child did not exit normally (signal " << WTERMSIG(status) << "):\n" << out;
  EXPECT_EQ(WEXITSTATUS(status), kWatchdogExitCode) << out;
  EXPECT_NE(out.find("all_reduce #3"), std::string::npos) << out;
  EXPECT_NE(out.find("\"hang test bucket 1/1\""), std::string::npos) << out;
  EXPECT_NE(out.find("on rank 0"), std::string::npos) << out;
  EXPECT_NE(out.find("timed out after"), std::string::npos) << out;
}

}  // namespace
}  // namespace dfar

// The hang test's child runs no test: see RunHangChild.
int main(int argc, char** argv) {
  if (const char* device = std::getenv(dfar::kHangChildEnv)) dfar::RunHangChild(std::atoi(device));
  return ::dfar::testing::RunMpiTests(argc, argv);
}
#else
TEST(NcclMpiTest, NotBuilt) {
  GTEST_SKIP() << "CUDA/NCCL not found at configure time: NCCL backend not built";
}

DFAR_MPI_TEST_MAIN
#endif
