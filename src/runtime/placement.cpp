// Why a probe and not CPUID alone: what matters is whether the bf16 GEMM
// that libtorch will run is fast, and that depends on the kernels the build
// dispatches to (oneDNN, MKL or OpenBLAS) and on what the environment lets
// them use (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, ATEN_CPU_CAPABILITY).
// CPUID names the hardware; the probe measures the path actually taken.
#include "dfar/runtime/placement.h"

#include <cpuid.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>

#include "dfar/core/error.h"

namespace dfar {
namespace {

bool Bit(unsigned reg, int bit) {
  return ((reg >> bit) & 1u) != 0;
}

// Best of repeated timings (ms) of fn, after one warm-up call: at least two
// runs, more while under ~15 ms in total.
template <typename Fn>
double BestMs(Fn&& fn) {
  using Clock = std::chrono::steady_clock;
  fn();
  double best = 1e30, total = 0;
  for (int rep = 0; rep < 8 && (rep < 2 || total < 15.0); ++rep) {
    const auto t0 = Clock::now();
    fn();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    best = std::min(best, ms);
    total += ms;
  }
  return best;
}

// How bf16 compares with fp32 in the probe, in words.
std::string ProbeText(const Bf16Probe& p) {
  if (!p.bf16_error.empty()) {
    const std::string first_line = p.bf16_error.substr(0, p.bf16_error.find('\n'));
    char buf[64];
    std::snprintf(buf, sizeof(buf), "probe GEMM fp32 %.2f ms", p.fp32_ms);
    return std::string(buf) + ", bf16 failed (" + first_line + ")";
  }
  char buf[160];
  std::snprintf(buf, sizeof(buf), "probe GEMM fp32 %.2f ms, bf16 %.2f ms (bf16 %.2fx the speed of fp32)", p.fp32_ms,
                p.bf16_ms, p.bf16_speedup());
  return buf;
}

// bf16 must beat fp32 by this factor to be chosen: a small margin keeps a
// tie (timing noise on a shared machine) on the exact, fp32 side.
constexpr double kBf16MinSpeedup = 1.15;

}  // namespace

std::string CpuFeatures::Text() const {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!out.empty()) out += " ";
    out += name;
  };
  add(avx2, "avx2");
  add(avx512f, "avx512f");
  add(avx512_bf16, "avx512_bf16");
  add(amx_bf16, "amx_bf16");
  return out.empty() ? "no avx2" : out;
}

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return f;
  f.avx2 = Bit(b, 5);
  f.avx512f = Bit(b, 16);
  f.amx_bf16 = Bit(d, 22);
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) != 0) f.avx512_bf16 = Bit(a1, 5);
  return f;
}

// Shapes of a small transformer projection: 128 tokens x 576 -> 576
// (SmolLM2-135M's hidden size), 85 MFLOP. At fp32 speed (~50 GFLOP/s on one
// core) a call takes ~2 ms; emulated bf16 (~1.5 GFLOP/s) ~60 ms.
Bf16Probe ProbeCpuBf16() {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const auto x = torch::randn({128, 576});
  const auto w = torch::randn({576, 576});
  Bf16Probe p;
  p.fp32_ms = BestMs([&] { (void)torch::mm(x, w); });
  const auto xb = x.to(torch::kBFloat16), wb = w.to(torch::kBFloat16);
  // A kernel library held below what the CPU reports (ONEDNN_MAX_CPU_ISA
  // under AVX-512 hardware) can refuse bf16 outright: then bf16 is unusable.
  try {
    p.bf16_ms = BestMs([&] { (void)torch::mm(xb, wb); });
  } catch (const std::exception& e) {
    p.bf16_ms = std::numeric_limits<double>::infinity();
    p.bf16_error = e.what();
  }
  return p;
}

torch::Device PickDevice(const std::string& device_key, int local_rank, int cuda_devices) {
  DFAR_CHECK(device_key == "auto" || device_key == "cpu" || device_key == "cuda",
             "model.device must be auto, cpu or cuda, not '", device_key, "'");
  if (device_key == "cpu" || (device_key == "auto" && cuda_devices == 0)) return torch::Device(torch::kCPU);
  DFAR_CHECK(cuda_devices > 0, "model.device=cuda but no CUDA device is visible (CUDA_VISIBLE_DEVICES, driver)");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % cuda_devices));
}

Placement DecideDtype(const std::string& dtype_key, const torch::Device& device, const CpuFeatures& cpu,
                      const Bf16Probe& probe) {
  DFAR_CHECK(dtype_key == "auto" || dtype_key == "fp32" || dtype_key == "bf16",
             "model.dtype must be auto, fp32 or bf16, not '", dtype_key, "'");
  Placement p;
  p.device = device;
  const bool bf16 = dtype_key == "bf16" || (dtype_key == "auto" && device.is_cuda()) ||
                    (dtype_key == "auto" && probe.bf16_speedup() >= kBf16MinSpeedup);
  p.dtype = bf16 ? torch::kBFloat16 : torch::kFloat;
  p.dtype_name = bf16 ? "bf16" : "fp32";
  if (dtype_key != "auto") {
    p.reason = "model.dtype=" + dtype_key + " (set explicitly)";
  } else if (device.is_cuda()) {
    p.reason = "auto: bf16 on CUDA";
  } else {
    p.reason = std::string("auto on CPU (") + cpu.Text() + "): " + ProbeText(probe) +
               (bf16 ? ", bf16 is faster" : ", fp32 is faster");
  }
  if (!device.is_cuda() && dtype_key == "bf16" && !probe.bf16_error.empty()) {
    p.warning = "model.dtype=bf16, but a bf16 GEMM fails on this CPU and kernel setup (" + cpu.Text() + "; " +
                ProbeText(probe) + "); model.dtype=auto would pick fp32";
  } else if (!device.is_cuda() && dtype_key == "bf16" && probe.bf16_speedup() > 0 && probe.bf16_speedup() < 1.0) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "model.dtype=bf16 on a CPU where bf16 GEMMs run %.1fx slower than fp32 (%s; %s); "
                  "model.dtype=auto would pick fp32",
                  1.0 / probe.bf16_speedup(), cpu.Text().c_str(), ProbeText(probe).c_str());
    p.warning = buf;
  }
  return p;
}

Placement ResolvePlacement(const std::string& device_key, const std::string& dtype_key, int local_rank,
                           Communicator& comm) {
  const bool wants_cuda = device_key == "cuda" || device_key == "auto";
  const int gpus = wants_cuda ? (torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0) : 0;
  const torch::Device device = PickDevice(device_key, local_rank, gpus);
  // Every CPU rank probes at once (as they will train); averaging the
  // timings makes the one decision identical on every rank.
  Bf16Probe probe;
  int32_t cpu_ranks = device.is_cpu() ? 1 : 0;
  comm.AllReduce(&cpu_ranks, 1, DType::kInt32, ReduceOp::kSum);
  const bool probe_needed = device.is_cpu() && dtype_key != "fp32";
  if (probe_needed) probe = ProbeCpuBf16();
  double sums[2] = {probe.fp32_ms, probe.bf16_ms};
  comm.AllReduce(sums, 2, DType::kFloat64, ReduceOp::kSum);
  if (probe_needed && cpu_ranks > 0) {
    probe.fp32_ms = sums[0] / cpu_ranks;
    probe.bf16_ms = sums[1] / cpu_ranks;
  }
  return DecideDtype(dtype_key, device, DetectCpuFeatures(), probe);
}

}  // namespace dfar
