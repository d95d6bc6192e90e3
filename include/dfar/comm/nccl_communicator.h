// NCCL backend of Communicator, for CUDA device buffers.
//
// Bootstrap: rank 0 creates the ncclUniqueId and broadcasts it over the host
// (MPI) communicator; every rank then joins with ncclCommInitRank on its own
// device. Collectives run on a dedicated stream. Ordering against compute:
// each call records an event on the caller's compute stream and makes the
// NCCL stream wait for it (so the buffer is complete), and Work::Wait() makes
// the compute stream wait for the collective's completion event (the host is
// not blocked; kernels queued after Wait see the result). Work::Done() polls
// the event.
// Compiled whenever CUDA and NCCL are found (also on hosts without a GPU);
// MakeNcclCommunicator throws on a host with no CUDA device.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"

namespace dfar {

// `compute_stream` is the cudaStream_t (as void*) that produces and consumes
// the buffers; nullptr means the legacy default stream.
std::unique_ptr<Communicator> MakeNcclCommunicator(Communicator& host, int device, void* compute_stream = nullptr);

// Number of CUDA devices visible (0 if none, no driver, or a CPU-only build).
int CudaDevicesVisible();

// Facts about a CUDA device for the trainer's metrics (compiled with the
// NCCL backend, which is where dfar links the CUDA runtime).
struct CudaDeviceInfo {
  std::string name;            // e.g. "NVIDIA H100 80GB HBM3".
  double peak_bf16_flops = 0;  // Dense bf16 peak from a table of known GPUs; 0 if unknown.
};
CudaDeviceInfo GetCudaDeviceInfo(int device);
// Bytes in use on the device (total - free, cudaMemGetInfo): the caching
// allocator's reservations plus the CUDA context; -1 on error.
int64_t CudaMemoryInUseBytes(int device);

// The CUDA driver, runtime and NCCL versions and every visible device, one
// fact per line ("cuda driver 13.0", "nccl 2.28.9", "cuda device 0: NVIDIA
// H200, 139.8 GiB, sm_90"), for `dfar version`. Without a driver the device
// line says why none is listed.
std::vector<std::string> DescribeCudaRuntime();

}  // namespace dfar
