// NCCL backend of Communicator, for CUDA device buffers.
//
// Bootstrap: rank 0 creates the ncclUniqueId and broadcasts it over the host
// (MPI) communicator; every rank then joins on its own device with a
// non-blocking ncclCommInitRankConfig (config.blocking = 0) and polls
// ncclCommGetAsyncError until init is done, at most timeout_s. Past that (a
// peer never joined) or on an error, the communicator is aborted and
// MakeNcclCommunicator throws dfar::Error naming the rank and the device.
// Collectives run on a dedicated stream. Ordering against compute: each call
// records an event on the caller's compute stream and makes the NCCL stream
// wait for it (so the buffer is complete), and Work::Wait() makes the compute
// stream wait for the collective's completion event (the host is not
// blocked; kernels queued after Wait see the result). Work::Done() polls the
// event. Barrier() blocks the host until its all-reduce is done.
//
// Non-blocking NCCL: a call may return ncclInProgress, which means started,
// not failed; the call then polls ncclCommGetAsyncError until the
// communicator leaves ncclInProgress (as NCCL requires before the next NCCL
// call or any work on NCCL's stream), at most timeout_s. An error there, or
// that deadline, aborts the communicator and throws dfar::Error naming the
// call, the rank and the device; every later call then throws.
//
// Hangs: a WorkMonitor (dfar/comm/work_monitor.h) tracks every collective
// launched (operation, CollectiveSite label, sequence number, bytes) and
// polls its done event and ncclCommGetAsyncError every 50 ms. A collective
// pending longer than timeout_s (dist.collective_timeout_s), or an async
// NCCL error, makes it log one critical line naming the operation, the site,
// the sequence number, the rank and the reason (also on stderr), call
// ncclCommAbort, and end the process with kWatchdogExitCode
// (dfar/comm/watchdog.h); the process _exit()s 3 s later if ncclCommAbort
// itself blocks. As with the MPI watchdog, this is library code that ends
// the process: a rank stuck on the device has nobody to return an error to.
//
// Shutdown: the destructor waits up to timeout_s for the collectives in
// flight; if all finished, it finalizes (ncclCommFinalize, polled up to
// timeout_s) and destroys the communicator, else (or after a failure) it
// aborts it. It never synchronizes a stream without a bound.
//
// Compiled whenever CUDA and NCCL are found (also on hosts without a GPU);
// MakeNcclCommunicator throws on a host with no CUDA device. Thread-safety:
// as Communicator (issue collectives from one thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"

namespace dfar {

// `compute_stream` is the cudaStream_t (as void*) that produces and consumes
// the buffers; nullptr means the legacy default stream. `timeout_s` bounds
// init, each call's ncclInProgress wait, each collective (the monitor's
// deadline) and the shutdown (dist.collective_timeout_s).
std::unique_ptr<Communicator> MakeNcclCommunicator(Communicator& host, int device, void* compute_stream = nullptr,
                                                   double timeout_s = 600);

// Number of CUDA devices visible (0 if none, no driver, or a CPU-only build).
int CudaDevicesVisible();

// Facts about a CUDA device for the trainer's metrics (compiled with the
// NCCL backend, which is where dfar links the CUDA runtime).
struct CudaDeviceInfo {
  std::string name;            // e.g. "NVIDIA H100 80GB HBM3".
  double peak_bf16_flops = 0;  // Dense bf16 peak from a table of known GPUs; 0 if unknown.
};
CudaDeviceInfo GetCudaDeviceInfo(int device);
// The dense bf16 tensor-core peak, in FLOP/s, of the GPU that
// cudaGetDeviceProperties names `name` ("NVIDIA H100 PCIe"); 0 if unknown.
// The most specific key wins ("H100 PCIe" over "H100", "L40S" over "L40"
// over "L4"). Pure and CUDA-free: defined in src/comm/device_peaks.cpp,
// which every build compiles.
double PeakBf16FlopsForDeviceName(const std::string& name);

// The CUDA driver, runtime and NCCL versions and every visible device, one
// fact per line ("cuda driver 13.0", "nccl 2.28.9", "cuda device 0: NVIDIA
// H200, 139.8 GiB, sm_90"), for `dfar version`. Without a driver the device
// line says why none is listed.
std::vector<std::string> DescribeCudaRuntime();

}  // namespace dfar
