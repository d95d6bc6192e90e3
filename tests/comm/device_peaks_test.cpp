// The dense bf16 peak table, looked up by the names cudaGetDeviceProperties
// reports on each GPU (as nvidia-smi prints them). The nested names are the
// point: "NVIDIA L40S" holds "L40" which holds "L4", "NVIDIA H100 PCIe"
// holds "H100", and "NVIDIA GH200 480GB" holds "H200".
#include <gtest/gtest.h>

#include <string>

#include "dfar/comm/nccl_communicator.h"

namespace dfar {
namespace {

double Tflops(const std::string& name) {
  return PeakBf16FlopsForDeviceName(name) / 1e12;
}

TEST(DevicePeaksTest, HopperVariantsAreTold) {
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA H100 80GB HBM3"), 989.4);  // SXM
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA H100 PCIe"), 756.5);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA H100 NVL"), 835.5);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA H200"), 989.4);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA H200 NVL"), 835.5);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA GH200 480GB"), 989.4);
}

TEST(DevicePeaksTest, AmpereAdaAndBlackwell) {
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA A100-SXM4-80GB"), 312);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA A100 80GB PCIe"), 312);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA A100-SXM4-40GB"), 312);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA A10G"), 70);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA RTX A6000"), 154.8);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA B200"), 2250);
}

TEST(DevicePeaksTest, MostSpecificAdaNameWins) {
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA L40S"), 362.05);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA L40"), 181.05);
  EXPECT_DOUBLE_EQ(Tflops("NVIDIA L4"), 121);
}

TEST(DevicePeaksTest, UnknownOrPartialNamesGiveZero) {
  EXPECT_EQ(PeakBf16FlopsForDeviceName(""), 0);
  EXPECT_EQ(PeakBf16FlopsForDeviceName("NVIDIA GeForce RTX 4090"), 0);
  EXPECT_EQ(PeakBf16FlopsForDeviceName("NVIDIA A10"), 0);  // Not the A10G, and not an A100.
  EXPECT_EQ(PeakBf16FlopsForDeviceName("NVIDIA RTX 6000 Ada Generation"), 0);
  EXPECT_EQ(PeakBf16FlopsForDeviceName("Tesla T4"), 0);
  EXPECT_EQ(PeakBf16FlopsForDeviceName("NVIDIA L40X"), 0);  // "L40" only as a whole word.
}

TEST(DevicePeaksTest, CaseDoesNotMatter) {
  EXPECT_DOUBLE_EQ(Tflops("nvidia h100 pcie"), 756.5);
}

}  // namespace
}  // namespace dfar
