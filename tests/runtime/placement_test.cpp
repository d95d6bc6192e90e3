// The one device rule and the one dtype rule (dfar/runtime/placement.h).
#include "dfar/runtime/placement.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "dfar/core/error.h"

namespace dfar {
namespace {

std::string ErrorText(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PlacementTest, CpuNeverLooksAtGpus) {
  EXPECT_TRUE(PickDevice("cpu", 5, 0).is_cpu());
  EXPECT_TRUE(PickDevice("cpu", 5, 1).is_cpu());  // More ranks than GPUs is fine on CPU.
  EXPECT_TRUE(PickDevice("auto", 3, 0).is_cpu());
}

TEST(PlacementTest, CudaRanksTakeLocalRankModuloVisibleDevices) {
  // mpirun on one node: every rank sees all 8 GPUs.
  EXPECT_EQ(PickDevice("cuda", 3, 8), torch::Device(torch::kCUDA, 3));
  EXPECT_EQ(PickDevice("auto", 7, 8), torch::Device(torch::kCUDA, 7));
  // SLURM --gpus-per-task=1 or one GPU per pod: each rank sees one device.
  for (int local = 0; local < 4; ++local) EXPECT_EQ(PickDevice("cuda", local, 1), torch::Device(torch::kCUDA, 0));
  // Two GPUs per task.
  EXPECT_EQ(PickDevice("cuda", 3, 2), torch::Device(torch::kCUDA, 1));
}

TEST(PlacementTest, CudaWithoutADeviceSaysSo) {
  EXPECT_NE(ErrorText([] { PickDevice("cuda", 0, 0); }).find("no CUDA device is visible"), std::string::npos);
  EXPECT_NE(ErrorText([] { PickDevice("gpu", 0, 0); }).find("model.device must be auto, cpu or cuda"),
            std::string::npos);
}

CpuFeatures Avx2Only() {
  CpuFeatures f;
  f.avx2 = true;
  return f;
}

TEST(PlacementTest, AutoOnCpuFollowsTheProbe) {
  Bf16Probe slow;  // AVX2 without native bf16: emulated bf16 ~40x slower.
  slow.fp32_ms = 1.6;
  slow.bf16_ms = 64.0;
  const Placement p = DecideDtype("auto", torch::Device(torch::kCPU), Avx2Only(), slow);
  EXPECT_EQ(p.dtype, torch::kFloat);
  EXPECT_EQ(p.dtype_name, "fp32");
  EXPECT_NE(p.reason.find("fp32 is faster"), std::string::npos) << p.reason;
  EXPECT_NE(p.reason.find("avx2"), std::string::npos) << p.reason;
  EXPECT_TRUE(p.warning.empty());

  Bf16Probe fast;  // AVX512_BF16 / AMX.
  fast.fp32_ms = 1.6;
  fast.bf16_ms = 0.8;
  const Placement q = DecideDtype("auto", torch::Device(torch::kCPU), Avx2Only(), fast);
  EXPECT_EQ(q.dtype, torch::kBFloat16);
  EXPECT_NE(q.reason.find("bf16 is faster"), std::string::npos) << q.reason;

  Bf16Probe tie;  // Within the margin: stay exact.
  tie.fp32_ms = 1.0;
  tie.bf16_ms = 0.95;
  EXPECT_EQ(DecideDtype("auto", torch::Device(torch::kCPU), Avx2Only(), tie).dtype, torch::kFloat);
}

TEST(PlacementTest, ExplicitBf16OnASlowCpuWarnsWithTheMeasuredSlowdown) {
  Bf16Probe slow;
  slow.fp32_ms = 2.0;
  slow.bf16_ms = 60.0;
  const Placement p = DecideDtype("bf16", torch::Device(torch::kCPU), Avx2Only(), slow);
  EXPECT_EQ(p.dtype, torch::kBFloat16);  // Honoured.
  EXPECT_NE(p.warning.find("30.0x slower"), std::string::npos) << p.warning;
  EXPECT_NE(p.reason.find("set explicitly"), std::string::npos) << p.reason;
}

TEST(PlacementTest, CudaAutoIsBf16AndFp32IsAlwaysHonoured) {
  const Bf16Probe none;
  EXPECT_EQ(DecideDtype("auto", torch::Device(torch::kCUDA, 0), CpuFeatures{}, none).dtype, torch::kBFloat16);
  EXPECT_EQ(DecideDtype("fp32", torch::Device(torch::kCUDA, 0), CpuFeatures{}, none).dtype, torch::kFloat);
  EXPECT_EQ(DecideDtype("fp32", torch::Device(torch::kCPU), CpuFeatures{}, none).dtype, torch::kFloat);
  EXPECT_NE(ErrorText([&] {
              DecideDtype("fp16", torch::Device(torch::kCPU), CpuFeatures{}, none);
            }).find("model.dtype must be auto, fp32 or bf16"),
            std::string::npos);
}

TEST(PlacementTest, ProbeTimesBothDtypesAndResolveAgreesWithIt) {
  const Bf16Probe probe = ProbeCpuBf16();
  EXPECT_GT(probe.fp32_ms, 0);
  EXPECT_GT(probe.bf16_ms, 0);
  auto comm = MakeSingleCommunicator();
  const Placement p = ResolvePlacement("cpu", "auto", 0, *comm);
  EXPECT_TRUE(p.device.is_cpu());
  EXPECT_NE(p.reason.find("probe GEMM"), std::string::npos) << p.reason;
  // The CPU's own flags, as CPUID reports them, are part of the reason.
  EXPECT_NE(p.reason.find(DetectCpuFeatures().Text()), std::string::npos) << p.reason;
  EXPECT_EQ(ResolvePlacement("cpu", "fp32", 0, *comm).reason, "model.dtype=fp32 (set explicitly)");
}

TEST(PlacementTest, CpuidAgreesWithProcCpuinfo) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      flags = line + " ";
      break;
    }
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags line";
  const CpuFeatures f = DetectCpuFeatures();
  EXPECT_EQ(f.avx2, flags.find(" avx2 ") != std::string::npos);
  EXPECT_EQ(f.avx512f, flags.find(" avx512f ") != std::string::npos);
  EXPECT_EQ(f.avx512_bf16, flags.find(" avx512_bf16 ") != std::string::npos);
  EXPECT_EQ(f.amx_bf16, flags.find(" amx_bf16 ") != std::string::npos);
}

}  // namespace
}  // namespace dfar
