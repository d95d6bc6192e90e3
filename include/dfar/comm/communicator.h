// dfar::Communicator — the one collective interface, several backends.
//
// Owns: collectives over raw buffers (host memory for the MPI and single
// backends, device memory for NCCL). Training code talks only to this
// interface; no file outside src/comm includes mpi.h or nccl.h.
//
// Ordering: every rank must issue the same collectives in the same order (as
// with MPI and NCCL). Async calls return a Work handle; the buffer must stay
// alive and untouched until Wait() returns.
// Failure: backend errors throw dfar::Error naming the call, the rank and the
// source location. Wait() rethrows an error raised while the op ran.
// Thread-safety: issue collectives from one thread; Work::Wait may be called
// from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dfar {

struct WatchdogOptions;  // dfar/comm/watchdog.h

enum class DType { kFloat32, kFloat64, kInt32, kInt64, kUInt8, kBFloat16, kFloat16 };
enum class ReduceOp { kSum, kAvg, kMax, kMin };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);

// Handle on an in-flight collective.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the op finished; rethrows its error, if any.
  virtual void Wait() = 0;
  // Non-blocking: true once finished (Wait then returns at once).
  virtual bool Done() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "nccl", "single".

  // In place: buf holds count elements on entry and the reduction on exit.
  virtual std::shared_ptr<Work> AllReduceAsync(void* buf, size_t count, DType dtype, ReduceOp op) = 0;
  // recv holds size()*count elements; rank r's send lands at [r*count, (r+1)*count).
  virtual std::shared_ptr<Work> AllGatherAsync(const void* send, void* recv, size_t count, DType dtype) = 0;
  // send holds size()*count elements; recv gets the reduction of block rank().
  virtual std::shared_ptr<Work> ReduceScatterAsync(const void* send, void* recv, size_t count, DType dtype,
                                                   ReduceOp op) = 0;
  virtual std::shared_ptr<Work> BroadcastAsync(void* buf, size_t count, DType dtype, int root) = 0;
  virtual void Barrier() = 0;

  // Blocking forms: the async call, then Wait(). A backend may override them
  // with a faster path (MPI runs them on the calling thread when idle).
  virtual void AllReduce(void* buf, size_t count, DType dtype, ReduceOp op) {
    AllReduceAsync(buf, count, dtype, op)->Wait();
  }
  virtual void AllGather(const void* send, void* recv, size_t count, DType dtype) {
    AllGatherAsync(send, recv, count, dtype)->Wait();
  }
  virtual void ReduceScatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) {
    ReduceScatterAsync(send, recv, count, dtype, op)->Wait();
  }
  virtual void Broadcast(void* buf, size_t count, DType dtype, int root) {
    BroadcastAsync(buf, count, dtype, root)->Wait();
  }

  // Gathers variable-length byte strings to every rank (in rank order).
  std::vector<std::string> AllGatherBytes(const std::string& mine);

  // Collective (every rank calls it once, from the issuing thread): from now
  // on a collective pending longer than options.timeout_s makes this rank
  // name the ranks that did not reach it, dump its flight recorder and abort
  // the job (see dfar/comm/watchdog.h). Backends where nothing can stall
  // (single) ignore it. Throws dfar::Error if options.dir cannot be written.
  virtual void EnableWatchdog(const WatchdogOptions& options) { (void)options; }
};

// Single-process backend: size 1, every collective is the identity.
std::unique_ptr<Communicator> MakeSingleCommunicator();

// MPI backend over MPI_COMM_WORLD for host buffers. Initialises MPI on first
// use (and finalises at exit). A dedicated progress thread makes the async
// calls, so they really run while the caller computes; blocking calls run
// on the caller's thread when nothing is queued. Issue order is kept.
std::unique_ptr<Communicator> MakeMpiCommunicator();

// True if the process was started by an MPI launcher (or srun) with size > 1.
bool LaunchedWithMultipleRanks();

// The backend a CPU job should use: MPI when launched with several ranks,
// single otherwise.
std::unique_ptr<Communicator> MakeHostCommunicator();

}  // namespace dfar
