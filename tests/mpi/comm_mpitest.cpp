// Run under mpirun -np N: the MPI backend's collectives give exact results,
// and blocking calls (which run on the caller's thread when the progress
// thread is idle) keep issue order with async calls still in flight.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "mpi_test_main.h"

namespace dfar {
namespace {

Communicator& Comm() {
  return *testing::GlobalComm();
}

TEST(CommMpiTest, BlockingCollectivesAreExact) {
  Communicator& c = Comm();
  const int n = c.size(), r = c.rank();
  std::vector<double> sum(5, r + 1.0);
  c.AllReduce(sum.data(), sum.size(), DType::kFloat64, ReduceOp::kSum);
  for (double v : sum) EXPECT_EQ(v, n * (n + 1) / 2.0);

  std::vector<float> avg(3, static_cast<float>(2 * r));
  c.AllReduce(avg.data(), avg.size(), DType::kFloat32, ReduceOp::kAvg);
  for (float v : avg) EXPECT_FLOAT_EQ(v, static_cast<float>(n - 1));

  int32_t mx = r;
  c.AllReduce(&mx, 1, DType::kInt32, ReduceOp::kMax);
  EXPECT_EQ(mx, n - 1);

  std::vector<int64_t> gathered(static_cast<size_t>(2 * n), -1);
  const int64_t mine[2] = {10 * r, 10 * r + 1};
  c.AllGather(mine, gathered.data(), 2, DType::kInt64);
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(gathered[2 * k], 10 * k);
    EXPECT_EQ(gathered[2 * k + 1], 10 * k + 1);
  }

  std::vector<float> send(static_cast<size_t>(3 * n)), recv(3);
  for (size_t i = 0; i < send.size(); ++i) send[i] = static_cast<float>(i + r);
  c.ReduceScatter(send.data(), recv.data(), 3, DType::kFloat32, ReduceOp::kSum);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(recv[i], n * (3.0f * r + i) + n * (n - 1) / 2.0f);

  uint8_t bytes[4] = {0, 0, 0, 0};
  if (r == n - 1) std::memcpy(bytes, "dfar", 4);
  c.Broadcast(bytes, 4, DType::kUInt8, n - 1);
  EXPECT_EQ(std::memcmp(bytes, "dfar", 4), 0);
  c.Barrier();
}

TEST(CommMpiTest, BlockingCallsQueueBehindAsyncCallsInFlight) {
  Communicator& c = Comm();
  const int n = c.size(), r = c.rank();
  constexpr size_t kBig = size_t{1} << 20;  // 4 MB each: still running when the blocking call arrives.
  std::vector<std::vector<float>> big(3, std::vector<float>(kBig));
  std::vector<std::shared_ptr<Work>> works;
  for (size_t b = 0; b < big.size(); ++b) {
    for (size_t i = 0; i < kBig; i += 4096) big[b][i] = static_cast<float>(b + r);
    works.push_back(c.AllReduceAsync(big[b].data(), kBig, DType::kFloat32, ReduceOp::kSum));
  }
  double scalar = r;
  c.AllReduce(&scalar, 1, DType::kFloat64, ReduceOp::kSum);  // Returns only after the three before it.
  for (const auto& w : works) EXPECT_TRUE(w->Done());
  EXPECT_EQ(scalar, n * (n - 1) / 2.0);
  for (size_t b = 0; b < big.size(); ++b) {
    works[b]->Wait();
    EXPECT_EQ(big[b][0], n * static_cast<float>(b) + n * (n - 1) / 2.0f);
    EXPECT_EQ(big[b][1], 0.0f);
  }
}

TEST(CommMpiTest, ThousandsOfMixedSmallCollectivesStayMatched) {
  Communicator& c = Comm();
  const int n = c.size(), r = c.rank();
  for (int i = 0; i < 2000; ++i) {
    int64_t a = i + r, b = i * r;
    auto w = c.AllReduceAsync(&a, 1, DType::kInt64, ReduceOp::kSum);
    if (i % 3 == 0) w->Wait();  // Sometimes idle when the blocking call comes, sometimes not.
    c.AllReduce(&b, 1, DType::kInt64, ReduceOp::kSum);
    w->Wait();
    ASSERT_EQ(a, int64_t{n} * i + n * (n - 1) / 2) << "iteration " << i;
    ASSERT_EQ(b, int64_t{i} * (n * (n - 1) / 2)) << "iteration " << i;
  }
}

}  // namespace
}  // namespace dfar

DFAR_MPI_TEST_MAIN
