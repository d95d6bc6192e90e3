// OpenMP wait-policy rule and its log line (dfar/runtime/thread_policy.h).
// The re-execution itself is checked end to end by tests/cli/thread_policy_cli.sh.
#include "dfar/runtime/thread_policy.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cstdlib>

namespace dfar {
namespace {

TEST(ThreadPolicyTest, Fp32OnOpenBlasSleepsTheOpenMpWorkers) {
  const auto c = ChooseWaitPolicy("fp32", false, CpuGemmLibrary::kOpenBlas);
  EXPECT_EQ(c.value, "PASSIVE");
  EXPECT_NE(c.reason.find("OpenBLAS"), std::string::npos) << c.reason;
}

TEST(ThreadPolicyTest, Bf16AndOpenMpGemmsKeepTheDefault) {
  EXPECT_EQ(ChooseWaitPolicy("bf16", false, CpuGemmLibrary::kOpenBlas).value, "");
  EXPECT_EQ(ChooseWaitPolicy("bf16", false, CpuGemmLibrary::kMkl).value, "");
  EXPECT_EQ(ChooseWaitPolicy("fp32", false, CpuGemmLibrary::kMkl).value, "");
  EXPECT_NE(ChooseWaitPolicy("fp32", false, CpuGemmLibrary::kMkl).reason.find("MKL"), std::string::npos);
}

TEST(ThreadPolicyTest, CudaRanksAreLeftAlone) {
  EXPECT_EQ(ChooseWaitPolicy("fp32", true, CpuGemmLibrary::kOpenBlas).value, "");
}

TEST(ThreadPolicyTest, ThisLibtorchsGemmLibraryIsKnown) {
  // The two builds dfar tests: Debian's libtorch 1.13 runs fp32 GEMMs on
  // OpenBLAS, the torch 2.11 x86-64 wheel on MKL.
  const CpuGemmLibrary want = TORCH_VERSION_MAJOR == 1 ? CpuGemmLibrary::kOpenBlas : CpuGemmLibrary::kMkl;
  EXPECT_EQ(DetectCpuGemmLibrary(), want) << at::show_config();
}

TEST(ThreadPolicyTest, LineSaysWhoseSettingItIs) {
  const char* saved_policy = std::getenv("OMP_WAIT_POLICY");
  const std::string keep = saved_policy ? saved_policy : "";
  ::setenv("OMP_WAIT_POLICY", "ACTIVE", 1);
  ::unsetenv("DFAR_WAIT_POLICY_REASON");
  EXPECT_EQ(WaitPolicyLine(), "OMP_WAIT_POLICY=ACTIVE (yours)");
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::setenv("DFAR_WAIT_POLICY_REASON", "because", 1);
  EXPECT_EQ(WaitPolicyLine(), "OMP_WAIT_POLICY=PASSIVE (dfar: because)");
  ::unsetenv("OMP_WAIT_POLICY");
  EXPECT_EQ(WaitPolicyLine(), "OMP_WAIT_POLICY unset, libgomp's default (dfar: because)");
  ::unsetenv("DFAR_WAIT_POLICY_REASON");
  if (saved_policy) ::setenv("OMP_WAIT_POLICY", keep.c_str(), 1);
}

TEST(ThreadPolicyTest, WithoutACommandLineNothingIsReexecuted) {
  // Library users (tests, benchmarks) that never call RememberCommandLine
  // keep running in place.
  ::unsetenv("OMP_WAIT_POLICY");
  ModelSection m;
  m.device = "cpu";
  m.dtype = "fp32";
  ApplyWaitPolicy(m);
  SUCCEED();
}

}  // namespace
}  // namespace dfar
