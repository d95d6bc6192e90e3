// How a CPU rank's threads wait: OpenMP's wait policy, chosen by dfar per
// compute dtype and fp32 GEMM library at start-up.
//
// Why: with Debian's libtorch the fp32 GEMMs run on OpenBLAS's own pthreads,
// while every other op runs on libgomp's OpenMP workers, which spin after
// each parallel region (libgomp's default). The spinning workers take the
// cores OpenBLAS's threads need. OMP_WAIT_POLICY=PASSIVE (workers sleep at
// once) removes the fight for fp32; bf16 GEMMs run on oneDNN inside OpenMP,
// where spinning workers are what keeps the next region cheap. The measured
// figures are in docs/benchmarks.md ("threads").
//
// How: libgomp reads OMP_WAIT_POLICY once, while it loads, before main runs,
// so dfar sets it by re-executing itself (execv of its own binary, the same
// arguments) before MPI starts, with DFAR_WAIT_POLICY_REASON saying why.
// A user's own OMP_WAIT_POLICY always wins, and DFAR_THREAD_POLICY=off turns
// the choice off. CUDA ranks are left alone.
//
// Failure: a failed execv is logged and the run continues under the old
// policy (it only costs speed).
// Thread-safety: call from main, before any thread or MPI starts.
#pragma once

#include <string>

#include "dfar/core/config.h"

namespace dfar {

// Which library runs this libtorch's fp32 GEMMs on the CPU.
enum class CpuGemmLibrary { kOpenBlas, kMkl, kOther };
CpuGemmLibrary DetectCpuGemmLibrary();
const char* CpuGemmLibraryName(CpuGemmLibrary lib);

struct WaitPolicyChoice {
  std::string value;   // "PASSIVE", or "" to leave libgomp's default.
  std::string reason;  // One line: why.
};

// The pure rule (testable without a process): `dtype_name` fp32 | bf16.
WaitPolicyChoice ChooseWaitPolicy(const std::string& dtype_name, bool on_cuda, CpuGemmLibrary fp32_gemm);

// main() hands its arguments over once, for the re-execution.
void RememberCommandLine(int argc, char** argv);

// Resolves this rank's device and dtype as RunSetup will (model.device,
// model.dtype, the bf16 probe where dtype is auto), and re-executes the
// process when the policy chosen for them is not the one in force. Returns
// when nothing needs to change.
void ApplyWaitPolicy(const ModelSection& model);

// Sets this process's CPU compute threads: libtorch's intra-op pool (and
// MKL's, which libtorch sets with it) and, where fp32 GEMMs run on OpenBLAS,
// OpenBLAS's own pool, which torch::set_num_threads leaves at every core.
void SetCpuThreads(int n);

// "OMP_WAIT_POLICY=PASSIVE (dfar: ...)" / "(yours)" / "unset (...)", for the
// run's log.
std::string WaitPolicyLine();

}  // namespace dfar
