#include "dfar/comm/communicator.h"

#include <gtest/gtest.h>

#include <vector>

namespace dfar {
namespace {

TEST(CommunicatorTest, SingleBackendIsIdentity) {
  auto comm = MakeSingleCommunicator();
  EXPECT_EQ(comm->size(), 1);
  std::vector<float> v = {1, 2, 3};
  comm->AllReduce(v.data(), v.size(), DType::kFloat32, ReduceOp::kAvg);
  EXPECT_EQ(v, (std::vector<float>{1, 2, 3}));
  std::vector<float> out(3);
  comm->AllGather(v.data(), out.data(), 3, DType::kFloat32);
  EXPECT_EQ(out, v);
  const auto bytes = comm->AllGatherBytes("hello");
  ASSERT_EQ(bytes.size(), 1u);
  EXPECT_EQ(bytes[0], "hello");
}

TEST(CommunicatorTest, DTypeSizes) {
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kInt64), 8u);
  EXPECT_STREQ(DTypeName(DType::kFloat32), "float32");
}

}  // namespace
}  // namespace dfar
