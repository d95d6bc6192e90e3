// MPI backend. Why a progress thread: OpenMPI's non-blocking collectives
// advance only while some thread is inside the MPI library, so an
// MPI_Iallreduce issued before backward and waited on after it makes little
// progress in between. Here one thread owns MPI (MPI_THREAD_SERIALIZED: never
// two threads in MPI at once) and runs queued collectives in issue order
// while the caller keeps computing. Issue order is the same on every rank, so
// the queues stay matched without extra coordination.
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "dfar/core/error.h"
#include "dfar/dist/communicator.h"

namespace dfar {
namespace {

std::string MpiErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

#define DFAR_MPI_CHECK(call, rank)                                                                                 \
  do {                                                                                                             \
    const int dfar_mpi_rc = (call);                                                                                \
    DFAR_CHECK(dfar_mpi_rc == MPI_SUCCESS, "MPI call ", #call, " failed on rank ", (rank), ": ",                   \
               MpiErrorText(dfar_mpi_rc));                                                                         \
  } while (0)

MPI_Datatype ToMpi(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return MPI_FLOAT;
    case DType::kFloat64: return MPI_DOUBLE;
    case DType::kInt32: return MPI_INT32_T;
    case DType::kInt64: return MPI_INT64_T;
    case DType::kUInt8: return MPI_UINT8_T;
    default: break;
  }
  DFAR_THROW("the MPI backend does not reduce ", DTypeName(dtype), " buffers; convert to float32 first");
}

MPI_Op ToMpi(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kAvg: return MPI_SUM;  // Divided by size afterwards.
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
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

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    thread_ = std::thread([this] { Loop(); });
    Enqueue([this] { Initialize(); })->Wait();
  }

  ~MpiCommunicator() override {
    // Finalize runs on the MPI thread, after every queued op.
    auto fin = Enqueue([] { MPI_Finalize(); });
    fin->Wait();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  std::shared_ptr<Work> AllReduceAsync(void* buf, size_t count, DType dtype, ReduceOp op) override {
    const MPI_Datatype type = ToMpi(dtype);
    return Enqueue([=] {
      DFAR_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, Count(count), type, ToMpi(op), MPI_COMM_WORLD), rank_);
      if (op == ReduceOp::kAvg) DivideInPlace(buf, count, dtype, size_);
    });
  }

  std::shared_ptr<Work> AllGatherAsync(const void* send, void* recv, size_t count, DType dtype) override {
    const MPI_Datatype type = ToMpi(dtype);
    // The rank's block may already sit in place inside recv (ZeRO's
    // parameter gather does this); MPI then needs MPI_IN_PLACE.
    const bool in_place = send == static_cast<const uint8_t*>(recv) + rank_ * count * DTypeSize(dtype);
    return Enqueue([=] {
      DFAR_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send, Count(count), type, recv, Count(count), type,
                                   MPI_COMM_WORLD),
                     rank_);
    });
  }

  std::shared_ptr<Work> ReduceScatterAsync(const void* send, void* recv, size_t count, DType dtype,
                                           ReduceOp op) override {
    const MPI_Datatype type = ToMpi(dtype);
    return Enqueue([=] {
      DFAR_MPI_CHECK(MPI_Reduce_scatter_block(send, recv, Count(count), type, ToMpi(op), MPI_COMM_WORLD), rank_);
      if (op == ReduceOp::kAvg) DivideInPlace(recv, count, dtype, size_);
    });
  }

  std::shared_ptr<Work> BroadcastAsync(void* buf, size_t count, DType dtype, int root) override {
    DFAR_CHECK(root >= 0 && root < size_, "broadcast root ", root, " is outside world size ", size_);
    const MPI_Datatype type = ToMpi(dtype);
    return Enqueue([=] { DFAR_MPI_CHECK(MPI_Bcast(buf, Count(count), type, root, MPI_COMM_WORLD), rank_); });
  }

  void Barrier() override {
    Enqueue([this] { DFAR_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD), rank_); })->Wait();
  }

 private:
  static int Count(size_t count) {
    DFAR_CHECK(count <= static_cast<size_t>(INT32_MAX), "MPI collective of ", count,
               " elements exceeds INT32_MAX; split it into buckets");
    return static_cast<int>(count);
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

  std::shared_ptr<QueuedWork> Enqueue(std::function<void()> fn) {
    auto work = std::make_shared<QueuedWork>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.emplace_back(std::move(fn), work);
    }
    cv_.notify_one();
    return work;
  }

  void Loop() {
    for (;;) {
      std::pair<std::function<void()>, std::shared_ptr<QueuedWork>> item;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      std::exception_ptr error;
      try {
        item.first();
      } catch (...) {
        error = std::current_exception();
      }
      item.second->Finish(error);
    }
  }

  int rank_ = 0;
  int size_ = 1;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<QueuedWork>>> queue_;
  bool stop_ = false;
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace dfar
