// MPI backend. Why a progress thread: OpenMPI's non-blocking collectives
// advance only while some thread is inside the MPI library, so an
// MPI_Iallreduce issued before backward and waited on after it makes little
// progress in between. Here one thread owns MPI (MPI_THREAD_SERIALIZED: never
// two threads in MPI at once) and runs queued collectives in issue order
// while the caller keeps computing. Issue order is the same on every rank, so
// the queues stay matched without extra coordination.
//
// Blocking calls skip the hand-off when nothing is queued or running: the
// caller's thread then makes the MPI call itself (SERIALIZED allows any one
// thread at a time; `busy_` is that one-at-a-time), which saves two thread
// wake-ups (~7 us on the reference machine) per small collective.
//
// The same ordering makes every collective's sequence number (assigned at
// issue) name the same collective on every rank, which is what the watchdog
// (watchdog.h) compares when it explains a stall. The progress thread tells
// the watchdog when each collective starts and ends; the watchdog's own
// monitor thread never enters MPI except to abort.
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "dfar/comm/communicator.h"
#include "dfar/comm/watchdog.h"
#include "dfar/core/error.h"

namespace dfar {
namespace {

std::string MpiErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

#define DFAR_MPI_CHECK(call, rank)                                                               \
  do {                                                                                           \
    const int dfar_mpi_rc = (call);                                                              \
    DFAR_CHECK(dfar_mpi_rc == MPI_SUCCESS, "MPI call ", #call, " failed on rank ", (rank), ": ", \
               MpiErrorText(dfar_mpi_rc));                                                       \
  } while (0)

MPI_Datatype ToMpi(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return MPI_FLOAT;
    case DType::kFloat64:
      return MPI_DOUBLE;
    case DType::kInt32:
      return MPI_INT32_T;
    case DType::kInt64:
      return MPI_INT64_T;
    case DType::kUInt8:
      return MPI_UINT8_T;
    case DType::kBFloat16:
      return MPI_UINT16_T;  // Reduced by BFloat16SumOp.
    default:
      break;
  }
  DFAR_THROW("the MPI backend does not move ", DTypeName(dtype), " buffers; convert to float32 first");
}

// bfloat16 has no MPI type: sum in float, round to nearest even.
void BFloat16Sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    uint32_t x = static_cast<uint32_t>(a[i]) << 16, y = static_cast<uint32_t>(b[i]) << 16;
    float fx, fy;
    std::memcpy(&fx, &x, 4);
    std::memcpy(&fy, &y, 4);
    const float sum = fx + fy;
    uint32_t bits;
    std::memcpy(&bits, &sum, 4);
    bits += 0x7fff + ((bits >> 16) & 1);
    b[i] = static_cast<uint16_t>(bits >> 16);
  }
}

MPI_Op BFloat16SumOp() {
  static MPI_Op op = [] {
    MPI_Op o;
    MPI_Op_create(&BFloat16Sum, /*commute=*/1, &o);
    return o;
  }();
  return op;
}

MPI_Op ToMpi(ReduceOp op, DType dtype) {
  if (dtype == DType::kBFloat16) {
    DFAR_CHECK(op == ReduceOp::kSum, "the MPI backend reduces bfloat16 by sum only");
    return BFloat16SumOp();
  }
  switch (op) {
    case ReduceOp::kSum:
      return MPI_SUM;
    case ReduceOp::kAvg:
      return MPI_SUM;  // Divided by size afterwards.
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}

// Divides count elements by n in place (the second half of kAvg).
void DivideInPlace(void* buf, size_t count, DType dtype, int n) {
  if (dtype == DType::kFloat32) {
    float* p = static_cast<float*>(buf);
    for (size_t i = 0; i < count; ++i) p[i] /= static_cast<float>(n);
  } else if (dtype == DType::kFloat64) {
    double* p = static_cast<double*>(buf);
    for (size_t i = 0; i < count; ++i) p[i] /= n;
  } else {
    DFAR_THROW("ReduceOp::kAvg needs a floating-point buffer, got ", DTypeName(dtype));
  }
}

class QueuedWork : public Work {
 public:
  void Wait() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
  }
  bool Done() override {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  void Finish(std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      error_ = error;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

// One MPI call and what the watchdog knows of it. seq 0 marks bookkeeping
// that is not a collective (initialisation, installing the watchdog).
struct Call {
  CollectiveRecord record;
  std::function<void()> fn;
};

// A queued call and the Work its issuer waits on.
struct Op {
  Call call;
  std::shared_ptr<QueuedWork> work;
};

std::string MakeJobNonce() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                     static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
                     (static_cast<uint64_t>(::getpid()) << 16);
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// "host\npid\nnonce" from every rank -> one PeerInfo per rank.
std::vector<PeerInfo> ParsePeers(const std::vector<std::string>& lines, std::string* job) {
  std::vector<PeerInfo> peers;
  for (size_t r = 0; r < lines.size(); ++r) {
    std::istringstream in(lines[r]);
    std::string host, pid, nonce;
    std::getline(in, host);
    std::getline(in, pid);
    std::getline(in, nonce);
    peers.push_back(PeerInfo{host, std::strtoll(pid.c_str(), nullptr, 10)});
    if (r == 0) *job = nonce;
  }
  return peers;
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    thread_ = std::thread([this] { Loop(); });
    Enqueue({{}, [this] { Initialize(); }})->Wait();
  }

  ~MpiCommunicator() override {
    // Finalize runs on the MPI thread, after every queued op. It is watched
    // like a collective: OpenMPI's finalize waits for every rank.
    auto fin = Enqueue({Record("finalize", nullptr, 0), [] { MPI_Finalize(); }});
    fin->Wait();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    watchdog_.reset();  // Joins the monitor; the last heartbeat says "exited".
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  std::shared_ptr<Work> AllReduceAsync(void* buf, size_t count, DType dtype, ReduceOp op) override {
    return Enqueue(AllReduceCall(buf, count, dtype, op));
  }
  std::shared_ptr<Work> AllGatherAsync(const void* send, void* recv, size_t count, DType dtype) override {
    return Enqueue(AllGatherCall(send, recv, count, dtype));
  }
  std::shared_ptr<Work> ReduceScatterAsync(const void* send, void* recv, size_t count, DType dtype,
                                           ReduceOp op) override {
    return Enqueue(ReduceScatterCall(send, recv, count, dtype, op));
  }
  std::shared_ptr<Work> BroadcastAsync(void* buf, size_t count, DType dtype, int root) override {
    return Enqueue(BroadcastCall(buf, count, dtype, root));
  }

  void AllReduce(void* buf, size_t count, DType dtype, ReduceOp op) override {
    RunBlocking(AllReduceCall(buf, count, dtype, op));
  }
  void AllGather(const void* send, void* recv, size_t count, DType dtype) override {
    RunBlocking(AllGatherCall(send, recv, count, dtype));
  }
  void ReduceScatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) override {
    RunBlocking(ReduceScatterCall(send, recv, count, dtype, op));
  }
  void Broadcast(void* buf, size_t count, DType dtype, int root) override {
    RunBlocking(BroadcastCall(buf, count, dtype, root));
  }
  void Barrier() override {
    RunBlocking({Record("barrier", nullptr, 0), [this] { DFAR_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD), rank_); }});
  }

  void EnableWatchdog(const WatchdogOptions& options) override {
    std::string job;
    std::vector<PeerInfo> peers;
    {
      CollectiveSite site("watchdog setup");
      const std::string me = HostKey() + "\n" + std::to_string(::getpid()) + "\n" + (rank_ == 0 ? MakeJobNonce() : "");
      peers = ParsePeers(AllGatherBytes(me), &job);
    }
    int64_t baseline = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      baseline = issued_;
    }
    // MPI_Abort from the monitor thread: MPI_THREAD_SERIALIZED does not
    // promise it works while the progress thread is inside MPI, hence the
    // watchdog's _exit fallback.
    auto watchdog = std::make_shared<CollectiveWatchdog>(
        rank_, size_, job, std::move(peers), options, [](int code) { MPI_Abort(MPI_COMM_WORLD, code); }, baseline);
    // A second call (another run in the same process) replaces the first.
    Enqueue({{}, [this, watchdog] { watchdog_ = watchdog; }})->Wait();
  }

 private:
  static int Count(size_t count) {
    DFAR_CHECK(count <= static_cast<size_t>(INT32_MAX), "MPI collective of ", count,
               " elements exceeds INT32_MAX; split it into buckets");
    return static_cast<int>(count);
  }

  Call AllReduceCall(void* buf, size_t count, DType dtype, ReduceOp op) {
    const MPI_Datatype type = ToMpi(dtype);
    return {Record("all_reduce", &dtype, count * DTypeSize(dtype)), [=] {
              DFAR_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, Count(count), type, ToMpi(op, dtype), MPI_COMM_WORLD),
                             rank_);
              if (op == ReduceOp::kAvg) DivideInPlace(buf, count, dtype, size_);
            }};
  }

  Call AllGatherCall(const void* send, void* recv, size_t count, DType dtype) {
    const MPI_Datatype type = ToMpi(dtype);
    // The rank's block may already sit in place inside recv (ZeRO's
    // parameter gather does this); MPI then needs MPI_IN_PLACE.
    const bool in_place = send == static_cast<const uint8_t*>(recv) + rank_ * count * DTypeSize(dtype);
    return {Record("all_gather", &dtype, count * DTypeSize(dtype) * size_), [=] {
              DFAR_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send, Count(count), type, recv, Count(count), type,
                                           MPI_COMM_WORLD),
                             rank_);
            }};
  }

  Call ReduceScatterCall(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) {
    const MPI_Datatype type = ToMpi(dtype);
    return {Record("reduce_scatter", &dtype, count * DTypeSize(dtype) * size_), [=] {
              DFAR_MPI_CHECK(MPI_Reduce_scatter_block(send, recv, Count(count), type, ToMpi(op, dtype), MPI_COMM_WORLD),
                             rank_);
              if (op == ReduceOp::kAvg) DivideInPlace(recv, count, dtype, size_);
            }};
  }

  Call BroadcastCall(void* buf, size_t count, DType dtype, int root) {
    DFAR_CHECK(root >= 0 && root < size_, "broadcast root ", root, " is outside world size ", size_);
    const MPI_Datatype type = ToMpi(dtype);
    return {Record("broadcast", &dtype, count * DTypeSize(dtype)),
            [=] { DFAR_MPI_CHECK(MPI_Bcast(buf, Count(count), type, root, MPI_COMM_WORLD), rank_); }};
  }

  static CollectiveRecord Record(const char* kind, const DType* dtype, uint64_t bytes) {
    CollectiveRecord r;
    r.kind = kind;
    r.dtype = dtype != nullptr ? DTypeName(*dtype) : "";
    r.bytes = bytes;
    r.site = CollectiveSite::Current();
    return r;
  }

  void Initialize() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    DFAR_CHECK(!initialized, "MPI is already initialised in this process; create one MPI communicator only");
    int provided = 0;
    DFAR_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), -1);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }

  // An empty record (kind "") is bookkeeping and gets no sequence number.
  // Caller holds mu_.
  std::shared_ptr<QueuedWork> EnqueueLocked(Call call) {
    auto work = std::make_shared<QueuedWork>();
    if (!call.record.kind.empty()) call.record.seq = ++issued_;
    queue_.push_back(Op{std::move(call), work});
    return work;
  }

  std::shared_ptr<QueuedWork> Enqueue(Call call) {
    std::shared_ptr<QueuedWork> work;
    {
      std::lock_guard<std::mutex> lock(mu_);
      work = EnqueueLocked(std::move(call));
    }
    cv_.notify_all();
    return work;
  }

  // The fast path for blocking calls: with nothing queued or running, this
  // thread takes the MPI "token" (busy_) and calls MPI itself; otherwise the
  // call queues behind the others, keeping issue order.
  void RunBlocking(Call call) {
    std::shared_ptr<QueuedWork> queued;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (busy_ || !queue_.empty()) {
        queued = EnqueueLocked(std::move(call));
      } else {
        busy_ = true;
        if (!call.record.kind.empty()) call.record.seq = ++issued_;
      }
    }
    if (queued) {
      cv_.notify_all();
      queued->Wait();
      return;
    }
    const std::exception_ptr error = Run(call);
    bool queued_behind = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_ = false;
      queued_behind = !queue_.empty();
    }
    // Wake the progress thread only for ops queued behind this one: a wake-up
    // per call would cost a context switch per small collective.
    if (queued_behind) cv_.notify_all();
    if (error) std::rethrow_exception(error);
  }

  void Loop() {
    for (;;) {
      Op op;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return (stop_ && queue_.empty()) || (!busy_ && !queue_.empty()); });
        if (queue_.empty()) return;
        op = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      const std::exception_ptr error = Run(op.call);
      {
        std::lock_guard<std::mutex> lock(mu_);
        busy_ = false;
      }
      op.work->Finish(error);
    }
  }

  // Runs one call on the thread holding busy_, under the watchdog's eye.
  std::exception_ptr Run(const Call& call) {
    const bool watched = watchdog_ != nullptr && call.record.seq > 0;
    if (watched) watchdog_->Begin(call.record);
    std::exception_ptr error;
    try {
      call.fn();
    } catch (const Error& e) {
      error = std::current_exception();
      if (watched) error = WithDiagnosis(e);
    } catch (...) {
      error = std::current_exception();
    }
    if (watched) watchdog_->End(call.record.seq);
    return error;
  }

  // A failed collective usually means a peer is gone: say which.
  std::exception_ptr WithDiagnosis(const Error& e) {
    const std::string summary = watchdog_->DiagnoseNow("collective failed: " + e.message());
    if (summary.empty()) return std::make_exception_ptr(e);
    return std::make_exception_ptr(Error(e.message() + " (collective watchdog: " + summary + ")", __FILE__, __LINE__));
  }

  int rank_ = 0;
  int size_ = 1;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool busy_ = false;  // A thread is inside MPI (the progress thread or a blocking caller). Guarded by mu_.
  bool stop_ = false;
  int64_t issued_ = 0;                            // Guarded by mu_.
  std::shared_ptr<CollectiveWatchdog> watchdog_;  // Only the busy_ holder (and the destructor, after the join).
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator() {
  return std::make_unique<MpiCommunicator>();
}

}  // namespace dfar
