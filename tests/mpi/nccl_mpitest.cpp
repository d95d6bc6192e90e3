// The NCCL communicator's collectives, exact, in fp32 and bf16, at any world
// size: alone (world size 1, as scripts/gpu_check.sh runs it on a one-GPU
// host) or under mpirun -np N with N GPUs. Rank r takes cuda:(r mod devices).
//
// Why exact: every value is a small integer (or a half) that bf16 holds
// without rounding (|v| <= 256 with at most 8 significant bits), so a sum
// over up to 8 ranks, a max, an average, a gather or a broadcast has one
// right answer bit for bit, whatever order NCCL reduces in. A wrong dtype
// mapping, offset, count or stream ordering shows up as a mismatch.
//
// Compiled wherever CUDA and NCCL are found; skipped (and said so) on a
// host without a CUDA device, such as the build machine.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "mpi_test_main.h"

#ifdef DFAR_WITH_NCCL
#include <cuda_runtime.h>

#include "dfar/comm/nccl_communicator.h"

namespace dfar {
namespace {

Communicator& Host() {
  return *testing::GlobalComm();
}

// The values are exact in bf16, so truncating fp32 to its top 16 bits is exact.
uint16_t ToBf16(float v) {
  uint32_t bits = 0;
  std::memcpy(&bits, &v, sizeof(bits));
  return static_cast<uint16_t>(bits >> 16);
}
float FromBf16(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float v = 0;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

// A device buffer of `count` elements of `dtype` (fp32 or bf16) holding
// floats, copied in and out through the host.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t count, DType dtype) : count_(count), dtype_(dtype) {
    EXPECT_EQ(cudaMalloc(&ptr_, count * ElementBytes()), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void Fill(const std::function<float(size_t)>& value) {
    if (dtype_ == DType::kFloat32) {
      std::vector<float> h(count_);
      for (size_t i = 0; i < count_; ++i) h[i] = value(i);
      EXPECT_EQ(cudaMemcpy(ptr_, h.data(), h.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    } else {
      std::vector<uint16_t> h(count_);
      for (size_t i = 0; i < count_; ++i) h[i] = ToBf16(value(i));
      EXPECT_EQ(cudaMemcpy(ptr_, h.data(), h.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    }
  }

  std::vector<float> Read() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> out(count_);
    if (dtype_ == DType::kFloat32) {
      EXPECT_EQ(cudaMemcpy(out.data(), ptr_, count_ * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    } else {
      std::vector<uint16_t> h(count_);
      EXPECT_EQ(cudaMemcpy(h.data(), ptr_, count_ * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      for (size_t i = 0; i < count_; ++i) out[i] = FromBf16(h[i]);
    }
    return out;
  }

  void* get() { return ptr_; }

 private:
  size_t ElementBytes() const { return dtype_ == DType::kFloat32 ? 4 : 2; }
  size_t count_;
  DType dtype_;
  void* ptr_ = nullptr;
};

// Counts the mismatches of `got` against `want(i)`, naming the first few.
void ExpectExact(const std::vector<float>& got, const std::function<float(size_t)>& want, const std::string& what) {
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want(i)) {
      if (wrong < 3) ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << want(i);
      ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0u) << what << ": " << wrong << " of " << got.size() << " elements wrong";
}

class NcclMpiTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const int devices = CudaDevicesVisible();
    if (devices == 0) GTEST_SKIP() << "no CUDA device on this host: NCCL backend compiled, not run";
    ASSERT_EQ(cudaSetDevice(Host().rank() % devices), cudaSuccess);
    nccl_ = MakeNcclCommunicator(Host(), Host().rank() % devices);
  }
  std::string Name(const char* op) const {
    return std::string(op) + (GetParam() == DType::kFloat32 ? " fp32" : " bf16") + " at world size " +
           std::to_string(Host().size());
  }
  std::unique_ptr<Communicator> nccl_;
};

// One element over a whole number of 256-byte lines plus an odd tail, so
// NCCL's chunking and the remainder are both crossed.
constexpr size_t kCount = (1u << 20) + 3;

TEST_P(NcclMpiTest, AllReduceSumMaxAvgAreExact) {
  const int n = Host().size(), r = Host().rank();
  ASSERT_LE(n, 8) << "values stay exact in bf16 for up to 8 ranks";
  DeviceBuffer buf(kCount, GetParam());
  buf.Fill([&](size_t i) { return static_cast<float>((r + 1) * (i % 8)); });
  nccl_->AllReduceAsync(buf.get(), kCount, GetParam(), ReduceOp::kSum)->Wait();
  ExpectExact(
      buf.Read(), [&](size_t i) { return static_cast<float>(n * (n + 1) / 2 * (i % 8)); }, Name("sum"));

  buf.Fill([&](size_t i) { return static_cast<float>(r + i % 8); });
  nccl_->AllReduceAsync(buf.get(), kCount, GetParam(), ReduceOp::kMax)->Wait();
  ExpectExact(
      buf.Read(), [&](size_t i) { return static_cast<float>(n - 1 + i % 8); }, Name("max"));

  // NCCL averages floats by scaling each input by 1/n before the sum: exact
  // only where 1/n is (a power of two).
  if ((n & (n - 1)) == 0) {
    buf.Fill([&](size_t i) { return static_cast<float>(2 * r + i % 8); });
    nccl_->AllReduceAsync(buf.get(), kCount, GetParam(), ReduceOp::kAvg)->Wait();  // mean of 2r is n - 1
    ExpectExact(
        buf.Read(), [&](size_t i) { return static_cast<float>(n - 1 + i % 8); }, Name("avg"));
  }
}

TEST_P(NcclMpiTest, ReduceScatterSumIsExact) {
  const int n = Host().size(), r = Host().rank();
  DeviceBuffer send(kCount * n, GetParam()), recv(kCount, GetParam());
  send.Fill([&](size_t j) { return static_cast<float>((r + 1) * (j % 8)); });
  nccl_->ReduceScatterAsync(send.get(), recv.get(), kCount, GetParam(), ReduceOp::kSum)->Wait();
  ExpectExact(
      recv.Read(), [&](size_t i) { return static_cast<float>(n * (n + 1) / 2 * ((r * kCount + i) % 8)); },
      Name("reduce-scatter"));
}

TEST_P(NcclMpiTest, AllGatherIsExact) {
  const int n = Host().size(), r = Host().rank();
  DeviceBuffer send(kCount, GetParam()), recv(kCount * n, GetParam());
  send.Fill([&](size_t i) { return static_cast<float>(8 * r + i % 8); });
  nccl_->AllGatherAsync(send.get(), recv.get(), kCount, GetParam())->Wait();
  ExpectExact(
      recv.Read(), [&](size_t j) { return static_cast<float>(8 * (j / kCount) + j % kCount % 8); }, Name("all-gather"));
}

TEST_P(NcclMpiTest, BroadcastFromTheLastRankIsExact) {
  const int n = Host().size(), r = Host().rank();
  DeviceBuffer buf(kCount, GetParam());
  buf.Fill([&](size_t i) { return r == n - 1 ? static_cast<float>(1 + i % 8) : -1.0f; });
  nccl_->BroadcastAsync(buf.get(), kCount, GetParam(), n - 1)->Wait();
  ExpectExact(
      buf.Read(), [&](size_t i) { return static_cast<float>(1 + i % 8); }, Name("broadcast"));
  nccl_->Barrier();
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NcclMpiTest, ::testing::Values(DType::kFloat32, DType::kBFloat16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return info.param == DType::kFloat32 ? std::string("fp32") : std::string("bf16");
                         });

}  // namespace
}  // namespace dfar
#else
TEST(NcclMpiTest, NotBuilt) {
  GTEST_SKIP() << "CUDA/NCCL not found at configure time: NCCL backend not built";
}
#endif

DFAR_MPI_TEST_MAIN
