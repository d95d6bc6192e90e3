// NCCL backend: see include/dfar/comm/nccl_communicator.h. The events-on-
// streams protocol (record on compute, wait on comm, and back) is what lets
// all-reduce of bucket k overlap the backward kernels of bucket k+1.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <cstring>

#include "dfar/comm/nccl_communicator.h"
#include "dfar/core/error.h"

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

class NcclWork : public Work {
 public:
  NcclWork(cudaEvent_t done, cudaStream_t compute, int rank) : done_(done), compute_(compute), rank_(rank) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void Wait() override { DFAR_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0), rank_); }
  bool Done() override { return cudaEventQuery(done_) == cudaSuccess; }

 private:
  cudaEvent_t done_;
  cudaStream_t compute_;
  int rank_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(Communicator& host, int device, cudaStream_t compute)
      : rank_(host.rank()), size_(host.size()), device_(device), compute_(compute) {
    DFAR_CUDA_CHECK(cudaSetDevice(device_), rank_);
    ncclUniqueId id;
    if (rank_ == 0) DFAR_NCCL_CHECK(ncclGetUniqueId(&id), rank_);
    host.Broadcast(&id, sizeof(id), DType::kUInt8, 0);
    DFAR_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_), rank_);
    DFAR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), rank_);
  }
  ~NcclCommunicator() override {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  std::shared_ptr<Work> AllReduceAsync(void* buf, size_t count, DType dtype, ReduceOp op) override {
    BeginOnCommStream();
    DFAR_NCCL_CHECK(ncclAllReduce(buf, buf, count, ToNccl(dtype), ToNccl(op), comm_, stream_), rank_);
    return EndOnCommStream();
  }
  std::shared_ptr<Work> AllGatherAsync(const void* send, void* recv, size_t count, DType dtype) override {
    BeginOnCommStream();
    DFAR_NCCL_CHECK(ncclAllGather(send, recv, count, ToNccl(dtype), comm_, stream_), rank_);
    return EndOnCommStream();
  }
  std::shared_ptr<Work> ReduceScatterAsync(const void* send, void* recv, size_t count, DType dtype,
                                           ReduceOp op) override {
    BeginOnCommStream();
    DFAR_NCCL_CHECK(ncclReduceScatter(send, recv, count, ToNccl(dtype), ToNccl(op), comm_, stream_), rank_);
    return EndOnCommStream();
  }
  std::shared_ptr<Work> BroadcastAsync(void* buf, size_t count, DType dtype, int root) override {
    BeginOnCommStream();
    DFAR_NCCL_CHECK(ncclBroadcast(buf, buf, count, ToNccl(dtype), root, comm_, stream_), rank_);
    return EndOnCommStream();
  }
  void Barrier() override {
    // A one-element all-reduce, then wait on the host: NCCL has no barrier.
    void* scratch = nullptr;
    DFAR_CUDA_CHECK(cudaMalloc(&scratch, sizeof(float)), rank_);
    AllReduceAsync(scratch, 1, DType::kFloat32, ReduceOp::kSum);
    DFAR_CUDA_CHECK(cudaStreamSynchronize(stream_), rank_);
    cudaFree(scratch);
  }

 private:
  void BeginOnCommStream() {
    cudaEvent_t ready;
    DFAR_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), rank_);
    DFAR_CUDA_CHECK(cudaEventRecord(ready, compute_), rank_);
    DFAR_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0), rank_);
    cudaEventDestroy(ready);  // Safe: destruction is deferred until the event completes.
  }
  std::shared_ptr<Work> EndOnCommStream() {
    cudaEvent_t done;
    DFAR_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), rank_);
    DFAR_CUDA_CHECK(cudaEventRecord(done, stream_), rank_);
    return std::make_shared<NcclWork>(done, compute_, rank_);
  }

  int rank_, size_, device_;
  cudaStream_t compute_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(Communicator& host, int device, void* compute_stream) {
  DFAR_CHECK(CudaDevicesVisible() > device, "NCCL backend: CUDA device ", device, " is not visible (",
             CudaDevicesVisible(), " devices)");
  return std::make_unique<NcclCommunicator>(host, device, static_cast<cudaStream_t>(compute_stream));
}

CudaDeviceInfo GetCudaDeviceInfo(int device) {
  CudaDeviceInfo info;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return info;
  info.name = prop.name;
  // Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets.
  const struct {
    const char* key;
    double tflops;
  } peaks[] = {{"H200", 989}, {"H100", 989}, {"GH200", 989}, {"B200", 2250}, {"A100", 312},
               {"L40S", 362}, {"A10G", 70},  {"L4", 121},    {"A6000", 155}};
  for (const auto& p : peaks) {
    if (info.name.find(p.key) != std::string::npos) {
      info.peak_bf16_flops = p.tflops * 1e12;
      break;
    }
  }
  return info;
}

int64_t CudaMemoryInUseBytes(int device) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(device) != cudaSuccess) return -1;
  size_t free_bytes = 0, total = 0;
  const bool ok = cudaMemGetInfo(&free_bytes, &total) == cudaSuccess;
  cudaSetDevice(previous);
  return ok ? static_cast<int64_t>(total - free_bytes) : -1;
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
