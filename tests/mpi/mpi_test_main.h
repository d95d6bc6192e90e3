// Shared main() for tests run under mpirun: one communicator for the
// process, printed results from rank 0 only, and a non-zero exit on any
// rank's failure (mpirun then exits non-zero too).
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "dfar/comm/communicator.h"

namespace dfar::testing {

inline Communicator*& GlobalComm() {
  static Communicator* comm = nullptr;
  return comm;
}

inline int RunMpiTests(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto comm = MakeHostCommunicator();
  GlobalComm() = comm.get();
  if (comm->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int local = RUN_ALL_TESTS();
  int32_t failed = local != 0 ? 1 : 0;
  comm->AllReduce(&failed, 1, DType::kInt32, ReduceOp::kMax);
  GlobalComm() = nullptr;
  return failed;
}

}  // namespace dfar::testing

#define DFAR_MPI_TEST_MAIN                           \
  int main(int argc, char** argv) {                  \
    return ::dfar::testing::RunMpiTests(argc, argv); \
  }
