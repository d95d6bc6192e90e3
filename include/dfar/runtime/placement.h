// Where a rank computes and in which dtype: the one device rule and the one
// dtype rule that train, eval, generate and the step benchmark share.
//
// Device: model.device = cpu | cuda | auto. CUDA ranks take
// cuda:(local_rank mod visible devices), so both "every rank sees all GPUs"
// (mpirun on one node) and "each rank sees its own GPU" (SLURM
// --gpus-per-task=1, one GPU per pod) give every rank a distinct or its own
// device. The device count is consulted only when the device is CUDA.
//
// Dtype: model.dtype = auto | fp32 | bf16. On CUDA, auto is bf16. On a CPU,
// auto is bf16 only where a probe GEMM (fp32 against bf16, shapes of a small
// transformer layer; tens of ms, ~0.2 s where bf16 is emulated) shows bf16
// really faster; elsewhere fp32. Where bf16 GEMMs fall back to emulation (AVX2 without AVX512_BF16/AMX) they run
// 30-50x slower than fp32. An explicit bf16 on such a CPU is honoured with a
// warning that quotes the measured slowdown.
//
// Failure: throws dfar::Error for an unknown key value, cuda with no CUDA
// device, or (through the communicator) a rank that disagrees.
// Thread-safety: call from the main thread before training starts.
#pragma once

#include <torch/torch.h>

#include <string>

#include "dfar/comm/communicator.h"

namespace dfar {

// The CPU's instruction-set flags that decide bf16 speed, from CPUID.
struct CpuFeatures {
  bool avx2 = false, avx512f = false, avx512_bf16 = false, amx_bf16 = false;
  bool native_bf16() const { return avx512_bf16 || amx_bf16; }
  std::string Text() const;  // "avx2 avx512f avx512_bf16" (those present).
};
CpuFeatures DetectCpuFeatures();

// One timing of the probe GEMM on this rank's threads.
struct Bf16Probe {
  double fp32_ms = 0, bf16_ms = 0;  // bf16_ms is infinite when the bf16 GEMM threw.
  std::string bf16_error;           // What it threw.
  double bf16_speedup() const { return bf16_ms > 0 ? fp32_ms / bf16_ms : 0; }
};
Bf16Probe ProbeCpuBf16();

// The resolved placement of one rank and why.
struct Placement {
  torch::Device device{torch::kCPU};
  torch::ScalarType dtype = torch::kFloat;
  std::string dtype_name = "fp32";  // fp32 | bf16
  std::string reason;               // One line: why this dtype.
  std::string warning;              // Non-empty when an explicit choice is slow here.
};

// model.device for the rank with this local rank; `cuda_devices` is the
// visible device count (read only when CUDA is asked for or auto).
torch::Device PickDevice(const std::string& device_key, int local_rank, int cuda_devices);

// Pure dtype rule from a probe (testable without timing). `probe` is
// ignored on CUDA.
Placement DecideDtype(const std::string& dtype_key, const torch::Device& device, const CpuFeatures& cpu,
                      const Bf16Probe& probe);

// The placement every rank agrees on: on a CPU each rank probes, the
// timings are averaged over ranks, and the one decision is taken from the
// averages, so ranks never train in different dtypes.
Placement ResolvePlacement(const std::string& device_key, const std::string& dtype_key, int local_rank,
                           Communicator& comm);

}  // namespace dfar
