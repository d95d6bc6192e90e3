// The NCCL backend compiles and links wherever CUDA + NCCL are found (CI has
// no GPU); it runs only where a device exists, and says so when skipped.
#include <gtest/gtest.h>

#ifdef DFAR_WITH_NCCL
#include <cuda_runtime.h>

#include <vector>

#include "dfar/comm/nccl_communicator.h"

namespace dfar {
namespace {

TEST(NcclTest, WorldSizeOneAllReduceAndGatherOnDevice) {
  if (CudaDevicesVisible() == 0) GTEST_SKIP() << "no CUDA device on this host: NCCL backend compiled, not run";
  auto host = MakeSingleCommunicator();
  auto nccl = MakeNcclCommunicator(*host, 0);
  std::vector<float> h = {1, 2, 3, 4};
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 4 * sizeof(float)), cudaSuccess);
  cudaMemcpy(d, h.data(), 4 * sizeof(float), cudaMemcpyHostToDevice);
  nccl->AllReduceAsync(d, 4, DType::kFloat32, ReduceOp::kSum)->Wait();
  std::vector<float> out(4);
  cudaDeviceSynchronize();
  cudaMemcpy(out.data(), d, 4 * sizeof(float), cudaMemcpyDeviceToHost);
  EXPECT_EQ(out, h);
  nccl->Barrier();
  cudaFree(d);
}

}  // namespace
}  // namespace dfar
#else
TEST(NcclTest, NotBuilt) {
  GTEST_SKIP() << "CUDA/NCCL not found at configure time: NCCL backend not built";
}
#endif
