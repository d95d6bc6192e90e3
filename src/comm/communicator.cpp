#include "dfar/comm/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "dfar/core/error.h"
#include "dfar/core/world.h"

namespace dfar {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
      return 8;
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kUInt8:
      return 1;
    case DType::kBFloat16:
      return 2;
    case DType::kFloat16:
      return 2;
  }
  DFAR_THROW("unknown DType ", static_cast<int>(dtype));
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kUInt8:
      return "uint8";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFloat16:
      return "float16";
  }
  return "unknown";
}

std::vector<std::string> Communicator::AllGatherBytes(const std::string& mine) {
  // Two rounds: sizes first, then payloads padded to the largest size.
  const int n = size();
  int64_t my_size = static_cast<int64_t>(mine.size());
  std::vector<int64_t> sizes(n);
  AllGather(&my_size, sizes.data(), 1, DType::kInt64);
  const int64_t max_size = *std::max_element(sizes.begin(), sizes.end());
  std::string padded = mine;
  padded.resize(static_cast<size_t>(max_size));
  std::string all(static_cast<size_t>(max_size) * n, '\0');
  if (max_size > 0) AllGather(padded.data(), all.data(), static_cast<size_t>(max_size), DType::kUInt8);
  std::vector<std::string> out(n);
  for (int r = 0; r < n; ++r) out[r] = all.substr(static_cast<size_t>(r * max_size), static_cast<size_t>(sizes[r]));
  return out;
}

namespace {

class DoneWork : public Work {
 public:
  void Wait() override {}
  bool Done() override { return true; }
};

// World size 1: reductions and gathers are copies.
class SingleCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  std::shared_ptr<Work> AllReduceAsync(void*, size_t, DType, ReduceOp) override { return Done(); }
  std::shared_ptr<Work> AllGatherAsync(const void* send, void* recv, size_t count, DType dtype) override {
    if (send != recv) std::memmove(recv, send, count * DTypeSize(dtype));
    return Done();
  }
  std::shared_ptr<Work> ReduceScatterAsync(const void* send, void* recv, size_t count, DType dtype, ReduceOp) override {
    if (send != recv) std::memmove(recv, send, count * DTypeSize(dtype));
    return Done();
  }
  std::shared_ptr<Work> BroadcastAsync(void*, size_t, DType, int root) override {
    DFAR_CHECK(root == 0, "broadcast root ", root, " does not exist in a world of size 1");
    return Done();
  }
  void Barrier() override {}

 private:
  static std::shared_ptr<Work> Done() { return std::make_shared<DoneWork>(); }
};

}  // namespace

std::unique_ptr<Communicator> MakeSingleCommunicator() {
  return std::make_unique<SingleCommunicator>();
}

bool LaunchedWithMultipleRanks() {
  return DiscoverWorld().size > 1;
}

// A torchrun-style environment (RANK/WORLD_SIZE) without an MPI launcher
// makes MPI_Init start N one-rank worlds; N processes would then train
// independently into one run dir. The sizes must agree, or nothing runs.
std::unique_ptr<Communicator> MakeHostCommunicator() {
  const World world = DiscoverWorld();
  if (world.size <= 1) return MakeSingleCommunicator();
  auto comm = MakeMpiCommunicator();
  DFAR_CHECK(comm->size() == world.size, "the ", world.launcher, " environment says world size ", world.size,
             " but MPI started ", comm->size(),
             " rank(s) in this world: launch dfar with mpirun or srun (an MPI "
             "launcher); RANK/WORLD_SIZE alone, as torchrun sets them, would start ",
             world.size, " separate one-rank runs");
  return comm;
}

}  // namespace dfar
