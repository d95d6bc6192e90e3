// NCCL backend: see include/dfar/comm/nccl_communicator.h. The events-on-
// streams protocol (record on compute, wait on comm, and back) is what lets
// all-reduce of bucket k overlap the backward kernels of bucket k+1.
//
// Why non-blocking NCCL: a blocking communicator waits inside NCCL calls
// (init, and any call once the device is wedged) where no deadline can reach
// them, and ncclCommDestroy after cudaStreamSynchronize hangs forever behind
// a stuck collective. With config.blocking = 0 every wait is a poll of
// ncclCommGetAsyncError that this file bounds, and ncclCommAbort can always
// be called. NCCL's rule (user guide, "Fault Tolerance" / nonblocking
// communicators): after ncclInProgress, poll ncclCommGetAsyncError until it
// is no longer ncclInProgress before the next NCCL call or any CUDA work on
// NCCL's stream; on an error, abort the communicator.
//
// Why the done event is shared: the monitor polls it on its own thread after
// the caller may have dropped its Work handle, so the event lives until both
// are done with it.
#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "dfar/comm/nccl_communicator.h"
#include "dfar/comm/watchdog.h"
#include "dfar/comm/work_monitor.h"
#include "dfar/core/error.h"
#include "dfar/core/logging.h"

namespace dfar {
namespace {

#define DFAR_CUDA_CHECK(call, rank)                                                                \
  do {                                                                                             \
    const cudaError_t dfar_cuda_rc = (call);                                                       \
    DFAR_CHECK(dfar_cuda_rc == cudaSuccess, "CUDA call ", #call, " failed on rank ", (rank), ": ", \
               cudaGetErrorString(dfar_cuda_rc));                                                  \
  } while (0)

#define DFAR_NCCL_CHECK(call, rank)                                                                \
  do {                                                                                             \
    const ncclResult_t dfar_nccl_rc = (call);                                                      \
    DFAR_CHECK(dfar_nccl_rc == ncclSuccess, "NCCL call ", #call, " failed on rank ", (rank), ": ", \
               ncclGetErrorString(dfar_nccl_rc));                                                  \
  } while (0)

// The monitor's period: how late a finished collective is dropped, and a
// hang past the deadline noticed. 50 ms is below anything a person waits
// for, and costs one cudaEventQuery per collective in flight per tick.
constexpr double kMonitorTickS = 0.05;
// How long ncclCommAbort may take in the fail path before the process ends
// anyway (it frees device memory, which waits for the device).
constexpr int kAbortGraceS = 3;

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Backs off from spinning to 1 ms sleeps: an ncclInProgress usually clears
// within microseconds, a finalize can take seconds.
void Pause(int* spins) {
  if (++*spins < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(*spins < 256 ? 100 : 1000));
  }
}

// The error code's text, plus NCCL's last message when it has one.
std::string NcclErrorText(ncclComm_t comm, ncclResult_t rc) {
  std::string text = ncclGetErrorString(rc);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (last != nullptr && *last != '\0') text += std::string(" (") + last + ")";
  return text;
}

ncclDataType_t ToNccl(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return ncclFloat32;
    case DType::kFloat64:
      return ncclFloat64;
    case DType::kInt32:
      return ncclInt32;
    case DType::kInt64:
      return ncclInt64;
    case DType::kUInt8:
      return ncclUint8;
    case DType::kBFloat16:
      return ncclBfloat16;
    case DType::kFloat16:
      return ncclFloat16;
  }
  return ncclFloat32;
}

ncclRedOp_t ToNccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

// A collective's completion event, shared by its Work handle and the monitor.
struct DoneEvent {
  cudaEvent_t event = nullptr;
  ~DoneEvent() {
    if (event != nullptr) cudaEventDestroy(event);
  }
};

// The monitor's poll of one collective, on the monitor thread.
WorkState PollDone(const DoneEvent& done, int device, std::string* error) {
  thread_local int current = -1;  // The monitor thread's device, set once.
  if (current != device && cudaSetDevice(device) == cudaSuccess) current = device;
  const cudaError_t rc = cudaEventQuery(done.event);
  if (rc == cudaSuccess) return WorkState::kDone;
  if (rc == cudaErrorNotReady) return WorkState::kPending;
  *error = std::string("cudaEventQuery on its done event: ") + cudaGetErrorString(rc);
  return WorkState::kError;
}

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<DoneEvent> done, cudaStream_t compute, int rank)
      : done_(std::move(done)), compute_(compute), rank_(rank) {}
  void Wait() override { DFAR_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_->event, 0), rank_); }
  bool Done() override { return cudaEventQuery(done_->event) == cudaSuccess; }
  cudaError_t Query() const { return cudaEventQuery(done_->event); }

 private:
  std::shared_ptr<DoneEvent> done_;
  cudaStream_t compute_;
  int rank_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(Communicator& host, int device, cudaStream_t compute, double timeout_s)
      : rank_(host.rank()), size_(host.size()), device_(device), compute_(compute), timeout_s_(timeout_s) {
    DFAR_CUDA_CHECK(cudaSetDevice(device_), rank_);
    InitComm(host);  // On failure it has aborted comm_ already.
    try {
      DFAR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), rank_);
      DFAR_CUDA_CHECK(cudaMalloc(&scratch_, sizeof(float)), rank_);
      WorkMonitorOptions options;
      options.rank = rank_;
      options.timeout_s = timeout_s_;
      options.tick_s = kMonitorTickS;
      monitor_ = std::make_unique<WorkMonitor>(
          options, [this] { return AsyncError(); }, [this](const std::string& message) { FailAndExit(message); });
    } catch (...) {
      ncclCommAbort(comm_);
      if (stream_ != nullptr) cudaStreamDestroy(stream_);
      throw;
    }
  }

  ~NcclCommunicator() override {
    // A monitor that failed has already aborted the communicator (and, in
    // the fail function dfar installs, ended the process).
    const bool failed = !monitor_ || monitor_->failed();
    const bool idle = !failed && monitor_->WaitIdle(timeout_s_);
    monitor_.reset();  // Joins the monitor thread: nothing polls comm_ from here on.
    if (!aborted_ && !failed) {
      if (idle && Finalize()) {
        Locked([&] { return ncclCommDestroy(comm_); });
        cudaFree(scratch_);  // Only now: cudaFree waits for the device, which is idle.
      } else {
        if (!idle) LogError("NCCL on rank {}: collectives still pending at shutdown; aborting the communicator", rank_);
        Locked([&] { return ncclCommAbort(comm_); });
      }
    }
    cudaStreamDestroy(stream_);  // Returns at once; released when the stream's work is done.
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  std::shared_ptr<Work> AllReduceAsync(void* buf, size_t count, DType dtype, ReduceOp op) override {
    return Launch("all_reduce", DTypeName(dtype), count * DTypeSize(dtype), "ncclAllReduce",
                  [&] { return ncclAllReduce(buf, buf, count, ToNccl(dtype), ToNccl(op), comm_, stream_); });
  }
  std::shared_ptr<Work> AllGatherAsync(const void* send, void* recv, size_t count, DType dtype) override {
    return Launch("all_gather", DTypeName(dtype), count * DTypeSize(dtype) * size_, "ncclAllGather",
                  [&] { return ncclAllGather(send, recv, count, ToNccl(dtype), comm_, stream_); });
  }
  std::shared_ptr<Work> ReduceScatterAsync(const void* send, void* recv, size_t count, DType dtype,
                                           ReduceOp op) override {
    return Launch("reduce_scatter", DTypeName(dtype), count * DTypeSize(dtype) * size_, "ncclReduceScatter",
                  [&] { return ncclReduceScatter(send, recv, count, ToNccl(dtype), ToNccl(op), comm_, stream_); });
  }
  std::shared_ptr<Work> BroadcastAsync(void* buf, size_t count, DType dtype, int root) override {
    DFAR_CHECK(root >= 0 && root < size_, "broadcast root ", root, " is outside world size ", size_);
    return Launch("broadcast", DTypeName(dtype), count * DTypeSize(dtype), "ncclBroadcast",
                  [&] { return ncclBroadcast(buf, buf, count, ToNccl(dtype), root, comm_, stream_); });
  }
  void Barrier() override {
    // A one-element all-reduce, then wait on the host: NCCL has no barrier.
    auto work = Launch("barrier", "", 0, "ncclAllReduce",
                       [&] { return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_); });
    WaitOnHost(*work, "barrier");
  }

 private:
  void InitComm(Communicator& host);
  // Waits until the communicator leaves ncclInProgress after `call` returned
  // `rc`, at most timeout_s; aborts and throws on an error or the deadline.
  void Settle(ncclResult_t rc, const char* call, const char* hint = "");
  std::shared_ptr<NcclWork> Launch(const char* op, const char* dtype, uint64_t bytes, const char* call,
                                   const std::function<ncclResult_t()>& enqueue);
  // Runs one NCCL call on comm_ under nccl_mu_.
  template <typename F>
  ncclResult_t Locked(F call) {
    std::lock_guard<std::mutex> lock(nccl_mu_);
    return call();
  }
  // ncclCommGetAsyncError under nccl_mu_; the query's own failure counts as the state.
  ncclResult_t QueryState();
  void WaitOnHost(const NcclWork& work, const char* what);
  std::string AsyncError();
  bool Finalize();
  void Abort();
  [[noreturn]] void FailAndExit(const std::string& message);

  void BeginOnCommStream() {
    cudaEvent_t ready;
    DFAR_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), rank_);
    DFAR_CUDA_CHECK(cudaEventRecord(ready, compute_), rank_);
    DFAR_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0), rank_);
    cudaEventDestroy(ready);  // Safe: destruction is deferred until the event completes.
  }
  std::shared_ptr<DoneEvent> EndOnCommStream() {
    auto done = std::make_shared<DoneEvent>();
    DFAR_CUDA_CHECK(cudaEventCreateWithFlags(&done->event, cudaEventDisableTiming), rank_);
    DFAR_CUDA_CHECK(cudaEventRecord(done->event, stream_), rank_);
    return done;
  }

  const int rank_, size_, device_;
  const cudaStream_t compute_;
  const double timeout_s_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  void* scratch_ = nullptr;  // The barrier's one float.
  int64_t seq_ = 0;          // Collectives launched.
  bool aborted_ = false;     // Set by Abort(): comm_ is gone.
  // Held around every NCCL call on comm_ from the issuing thread, and by the
  // fail path from ncclCommAbort until the process ends: the monitor thread
  // never frees comm_ under a call in flight, and a call issued after it
  // waits for the exit instead of touching a freed communicator. The
  // monitor's own ncclCommGetAsyncError skips it (that query is thread-safe,
  // and a tick must not wait behind the issuing thread).
  std::mutex nccl_mu_;
  std::unique_ptr<WorkMonitor> monitor_;
};

void NcclCommunicator::InitComm(Communicator& host) {
  ncclUniqueId id;
  if (rank_ == 0) DFAR_NCCL_CHECK(ncclGetUniqueId(&id), rank_);
  host.Broadcast(&id, sizeof(id), DType::kUInt8, 0);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t rc = Locked([&] { return ncclCommInitRankConfig(&comm_, size_, id, rank_, &config); });
  DFAR_CHECK(comm_ != nullptr, "NCCL call ncclCommInitRankConfig failed on rank ", rank_, " (device ", device_,
             ", world size ", size_, "): ", ncclGetErrorString(rc));
  Settle(rc, "ncclCommInitRankConfig", "; a rank that never joins (not started, crashed, or on another job) stalls it");
}

void NcclCommunicator::Settle(ncclResult_t rc, const char* call, const char* hint) {
  const double deadline = SteadySeconds() + timeout_s_;
  int spins = 0;
  ncclResult_t state = rc;
  while (state == ncclInProgress) {
    if (SteadySeconds() > deadline) {
      Abort();
      DFAR_THROW("NCCL call ", call, " on rank ", rank_, " (device ", device_, ") still in progress after ", timeout_s_,
                 " s (dist.collective_timeout_s)", hint, "; communicator aborted");
    }
    Pause(&spins);
    state = QueryState();
  }
  if (state == ncclSuccess) return;
  std::string why;
  Locked([&] {
    why = NcclErrorText(comm_, state);
    return ncclSuccess;
  });
  Abort();
  DFAR_THROW("NCCL call ", call, " failed on rank ", rank_, " (device ", device_, "): ", why, "; communicator aborted");
}

ncclResult_t NcclCommunicator::QueryState() {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t query = Locked([&] { return ncclCommGetAsyncError(comm_, &state); });
  return query != ncclSuccess ? query : state;
}

std::shared_ptr<NcclWork> NcclCommunicator::Launch(const char* op, const char* dtype, uint64_t bytes, const char* call,
                                                   const std::function<ncclResult_t()>& enqueue) {
  DFAR_CHECK(!aborted_, "NCCL ", op, " on rank ", rank_, ": the communicator was aborted after an earlier error");
  MonitoredWork work;
  work.op = op;
  work.site = CollectiveSite::Current();
  work.dtype = dtype;
  work.seq = ++seq_;
  work.bytes = bytes;
  BeginOnCommStream();
  // ncclInProgress: enqueued, not failed, but the kernel may not be on the
  // stream yet; the done event must come after it.
  Settle(Locked(enqueue), call);
  auto done = EndOnCommStream();
  work.poll = [done, device = device_](std::string* error) { return PollDone(*done, device, error); };
  monitor_->Track(std::move(work));
  return std::make_shared<NcclWork>(done, compute_, rank_);
}

// Bounded by the monitor: past the deadline it fails (and ends the process);
// the extra second only guards a fail function that returned.
void NcclCommunicator::WaitOnHost(const NcclWork& work, const char* what) {
  const double deadline = SteadySeconds() + timeout_s_ + 1;
  int spins = 0;
  for (cudaError_t rc = work.Query(); rc != cudaSuccess; rc = work.Query()) {
    DFAR_CHECK(rc == cudaErrorNotReady, "NCCL ", what, " on rank ", rank_, ": ", cudaGetErrorString(rc));
    DFAR_CHECK(!monitor_->failed(), monitor_->failure());
    DFAR_CHECK(SteadySeconds() < deadline, "NCCL ", what, " on rank ", rank_, " (device ", device_, ") not done after ",
               timeout_s_, " s (dist.collective_timeout_s)");
    Pause(&spins);
  }
}

// Monitor thread. ncclInProgress is an enqueue or finalize under way, not an error.
std::string NcclCommunicator::AsyncError() {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
  if (rc != ncclSuccess) return std::string("ncclCommGetAsyncError failed: ") + ncclGetErrorString(rc);
  if (state == ncclSuccess || state == ncclInProgress) return "";
  return NcclErrorText(comm_, state);
}

// Collective (every rank finalizes); bounded, so a peer that never does
// costs timeout_s, not the job.
bool NcclCommunicator::Finalize() {
  ncclResult_t state = Locked([&] { return ncclCommFinalize(comm_); });
  const double deadline = SteadySeconds() + timeout_s_;
  int spins = 0;
  while (state == ncclInProgress && SteadySeconds() < deadline) {
    Pause(&spins);
    state = QueryState();
  }
  if (state == ncclSuccess) return true;
  LogError(
      "NCCL finalize on rank {} (device {}): {}; aborting the communicator", rank_, device_,
      state == ncclInProgress ? "not done after " + std::to_string(timeout_s_) + " s" : NcclErrorText(comm_, state));
  return false;
}

// Caller thread, after an error or a deadline: no NCCL call may follow.
void NcclCommunicator::Abort() {
  // Joins the monitor first (its async-error poll must not touch comm_ once
  // it is gone), and without nccl_mu_: a monitor in its fail path needs it.
  monitor_.reset();
  if (comm_ != nullptr) Locked([&] { return ncclCommAbort(comm_); });
  comm_ = nullptr;
  aborted_ = true;
}

// Monitor thread, once. The log line and stderr come first, and the grace
// thread starts before anything that can block: ncclCommAbort frees device
// memory, which waits behind the stuck kernel, and nccl_mu_ waits for a call
// in flight on the issuing thread.
void NcclCommunicator::FailAndExit(const std::string& message) {
  LogCritical("{}; aborting the NCCL communicator, exit status {}", message, kWatchdogExitCode);
  FlushLog();
  std::fprintf(stderr, "dfar: %s\n", message.c_str());
  std::fflush(stderr);
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(kAbortGraceS));
    ::_exit(kWatchdogExitCode);
  }).detach();
  nccl_mu_.lock();  // Never released: the process ends holding it.
  ncclCommAbort(comm_);
  FlushLog();
  ::_exit(kWatchdogExitCode);
}

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(Communicator& host, int device, void* compute_stream,
                                                   double timeout_s) {
  DFAR_CHECK(CudaDevicesVisible() > device, "NCCL backend: CUDA device ", device, " is not visible (",
             CudaDevicesVisible(), " devices)");
  DFAR_CHECK(timeout_s > 0, "NCCL backend: timeout must be positive, got ", timeout_s, " s");
  return std::make_unique<NcclCommunicator>(host, device, static_cast<cudaStream_t>(compute_stream), timeout_s);
}

CudaDeviceInfo GetCudaDeviceInfo(int device) {
  CudaDeviceInfo info;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return info;
  info.name = prop.name;
  info.peak_bf16_flops = PeakBf16FlopsForDeviceName(info.name);
  return info;
}

int CudaDevicesVisible() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

namespace {
// CUDA encodes versions as 1000 * major + 10 * minor.
std::string CudaVersionText(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}
}  // namespace

std::vector<std::string> DescribeCudaRuntime() {
  std::vector<std::string> lines;
  int driver = 0, runtime = 0, nccl = 0;
  lines.push_back("cuda driver " + (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0 ? CudaVersionText(driver)
                                                                                               : std::string("none")));
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) lines.push_back("cuda runtime " + CudaVersionText(runtime));
  // NCCL_VERSION_CODE: 10000 * major + 100 * minor + patch (2.9 and later).
  if (ncclGetVersion(&nccl) == ncclSuccess) {
    lines.push_back("nccl " + std::to_string(nccl / 10000) + "." + std::to_string(nccl / 100 % 100) + "." +
                    std::to_string(nccl % 100));
  }
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    lines.push_back(std::string("cuda devices: none (") + cudaGetErrorString(rc) + ")");
    return lines;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    char line[256];
    std::snprintf(line, sizeof(line), "cuda device %d: %s, %.1f GiB, sm_%d%d", d, prop.name,
                  static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), prop.major, prop.minor);
    lines.push_back(line);
  }
  return lines;
}

}  // namespace dfar
