// Run under mpirun -np N: N ranks save one checkpoint, each writing its
// ZeRO-style slice of a flat optimizer buffer (rank r owns [r*n/N,
// (r+1)*n/N)) plus whole tensors owned round-robin. Every rank then reads
// everything back, and also reads the slices that ranks of a job of another
// size M would own (M = 1, N - 1, N + 1, 2N + 1, 7). Reads do not depend on
// the world size, so this proves that a checkpoint written by N ranks loads
// on M. DFAR_CKPT_TEST_DIR, if set, is where the checkpoints are written
// (and kept, for inspection); otherwise a temp dir that is removed after.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "dfar/ckpt/checkpoint.h"
#include "dfar/core/error.h"
#include "helpers/test_util.h"
#include "mpi_test_main.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kFlatNumel = 1037;  // Prime-ish: slices of unequal size.
constexpr char kFlat[] = "optimizer.exp_avg";

struct Whole {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype;
};

const std::vector<Whole>& WholeTensors() {
  static const std::vector<Whole> tensors = {
      {"model.embed_tokens.weight", {13, 7}, DType::kFloat32},
      {"model.norm.weight", {33}, DType::kBFloat16},
      {"trainer/step", {1}, DType::kInt64},
      {"lora.A", {3, 3}, DType::kFloat64},
      {"sampler.cursor", {100}, DType::kUInt8},
  };
  return tensors;
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Byte i of tensor `name` at `step`: the same on every rank, different per
// tensor and step.
std::vector<uint8_t> Contents(const std::string& name, DType dtype, int64_t numel, int64_t step) {
  std::vector<uint8_t> bytes(static_cast<size_t>(numel) * DTypeSize(dtype));
  uint32_t h = static_cast<uint32_t>(std::hash<std::string>{}(name)) ^ static_cast<uint32_t>(step * 2654435761u);
  for (auto& b : bytes) {
    h = h * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(h >> 24);
  }
  return bytes;
}

std::vector<uint8_t> FlatContents(int64_t step) {
  return Contents(kFlat, DType::kFloat32, kFlatNumel, step);
}

ChunkToWrite Chunk(const std::string& name, std::vector<int64_t> shape, DType dtype, const std::vector<uint8_t>& all,
                   int64_t begin, int64_t end) {
  ChunkToWrite c;
  c.name = name;
  c.global_shape = std::move(shape);
  c.dtype = dtype;
  c.begin = begin;
  c.end = end;
  const size_t elem = DTypeSize(dtype);
  c.bytes.assign(all.begin() + static_cast<std::ptrdiff_t>(begin * elem),
                 all.begin() + static_cast<std::ptrdiff_t>(end * elem));
  return c;
}

SaveRequest RankRequest(int64_t step, int rank, int world) {
  SaveRequest req;
  req.step = step;
  req.meta = {{"model", "tiny"}, {"world", world}};
  req.rank_meta = {{"rank", rank}, {"rng", 1000 + rank}};
  const int64_t b = kFlatNumel * rank / world, e = kFlatNumel * (rank + 1) / world;
  req.chunks.push_back(Chunk(kFlat, {kFlatNumel}, DType::kFloat32, FlatContents(step), b, e));
  const auto& whole = WholeTensors();
  for (size_t k = 0; k < whole.size(); ++k) {
    if (static_cast<int>(k) % world != rank) continue;
    const int64_t n = Numel(whole[k].shape);
    req.chunks.push_back(
        Chunk(whole[k].name, whole[k].shape, whole[k].dtype, Contents(whole[k].name, whole[k].dtype, n, step), 0, n));
  }
  return req;
}

class CkptMpiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm_ = testing::GlobalComm();
    const char* env = std::getenv("DFAR_CKPT_TEST_DIR");
    keep_ = env != nullptr && *env != '\0';
    int64_t pid = getpid();
    comm_->Broadcast(&pid, 1, DType::kInt64, 0);  // One directory for all ranks.
    const std::string base =
        keep_ ? std::string(env) + "/" : ::testing::TempDir() + "dfar-ckpt-mpi-" + std::to_string(pid) + "-";
    root_ = base + "np" + std::to_string(comm_->size()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    if (comm_->rank() == 0) fs::remove_all(root_);
    comm_->Barrier();
  }
  void TearDown() override {
    comm_->Barrier();
    if (comm_->rank() == 0 && !keep_) fs::remove_all(root_);
  }

  // Reads [b, e) of the flat tensor and compares it with what was saved.
  void ExpectFlatSlice(const CheckpointReader& reader, int64_t step, int64_t b, int64_t e, const std::string& label) {
    const auto want = FlatContents(step);
    std::vector<uint8_t> got(static_cast<size_t>(e - b) * 4);
    reader.Read(kFlat, b, e, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + b * 4)) << label << " [" << b << ", " << e << ")";
  }

  void ExpectEverything(const CheckpointReader& reader, int64_t step) {
    EXPECT_EQ(reader.ReadAll(kFlat), FlatContents(step));
    for (const Whole& w : WholeTensors()) {
      ASSERT_TRUE(reader.Has(w.name)) << w.name;
      EXPECT_EQ(reader.Tensor(w.name).global_shape, w.shape);
      EXPECT_EQ(reader.Tensor(w.name).dtype, w.dtype);
      EXPECT_EQ(reader.ReadAll(w.name), Contents(w.name, w.dtype, Numel(w.shape), step)) << w.name;
    }
  }

  Communicator* comm_ = nullptr;
  std::string root_;
  bool keep_ = false;
};

TEST_F(CkptMpiTest, SavedOnNRanksLoadsOnAnyM) {
  const int n = comm_->size(), rank = comm_->rank();
  CheckpointWriter writer(root_, *comm_);
  const std::string dir = writer.Save(RankRequest(5, rank, n));
  EXPECT_EQ(FindLatestCheckpoint(root_), dir);
  const auto reader = CheckpointReader::Open(dir);
  EXPECT_EQ(reader.world_size(), n);
  EXPECT_EQ(reader.step(), 5);
  EXPECT_EQ(reader.meta()["world"], n);
  ASSERT_EQ(reader.index()["ranks"].size(), static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) EXPECT_EQ(reader.index()["ranks"][r]["rng"], 1000 + r);
  EXPECT_EQ(reader.Tensor(kFlat).chunks.size(), static_cast<size_t>(n));
  ExpectEverything(reader, 5);
  // The slices a job of M ranks would read; this rank plays every virtual
  // rank v with v % N == rank.
  for (int m : {1, n - 1, n + 1, 2 * n + 1, 7}) {
    if (m < 1) continue;
    for (int v = rank; v < m; v += n) {
      ExpectFlatSlice(reader, 5, kFlatNumel * v / m, kFlatNumel * (v + 1) / m,
                      "M=" + std::to_string(m) + " rank " + std::to_string(v));
    }
  }
  // Odd ranges straddling every chunk boundary.
  for (int r = 1; r < n; ++r) {
    const int64_t boundary = kFlatNumel * r / n;
    ExpectFlatSlice(reader, 5, boundary - 1 - rank, boundary + 2 + rank, "boundary");
  }
  if (rank == 0) {
    EXPECT_TRUE(VerifyCheckpoint(dir).empty());
  }
}

TEST_F(CkptMpiTest, AsyncSaveCommitsOnWaitAndMatchesSync) {
  const int n = comm_->size(), rank = comm_->rank();
  SaveOptions options;
  options.async = true;
  CheckpointWriter writer(root_ + "/async", *comm_, options);
  writer.Save(RankRequest(8, rank, n));
  writer.Wait();
  CheckpointWriter sync_writer(root_ + "/sync", *comm_);
  sync_writer.Save(RankRequest(8, rank, n));
  const auto a = CheckpointReader::Open(FindLatestCheckpoint(root_ + "/async"));
  const auto s = CheckpointReader::Open(FindLatestCheckpoint(root_ + "/sync"));
  EXPECT_EQ(a.index(), s.index());
  ExpectEverything(a, 8);
}

TEST_F(CkptMpiTest, FailureOnOneRankFailsEveryRankAndKeepsThePrevious) {
  const int n = comm_->size(), rank = comm_->rank();
  CheckpointWriter(root_, *comm_).Save(RankRequest(1, rank, n));
  const std::string previous = FindLatestCheckpoint(root_);

  {
    testing::FaultyFileSystem crash_last;
    if (rank == n - 1) crash_last.FailOn(testing::FaultyFileSystem::Op::kSync, "step-00000002.tmp/shard-");
    ScopedFileSystem scoped(&crash_last);
    try {
      CheckpointWriter(root_, *comm_).Save(RankRequest(2, rank, n));
      ADD_FAILURE() << "save with a crashed rank succeeded";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("rank " + std::to_string(n - 1) + ": fsync of"), std::string::npos) << e.message();
    }
  }
  comm_->Barrier();
  EXPECT_EQ(FindLatestCheckpoint(root_), previous);

  {
    testing::FaultyFileSystem crash_root;
    if (rank == 0) crash_root.FailOn(testing::FaultyFileSystem::Op::kRename, "step-00000003.tmp");
    ScopedFileSystem scoped(&crash_root);
    try {
      CheckpointWriter(root_, *comm_).Save(RankRequest(3, rank, n));
      ADD_FAILURE() << "save with a failed commit succeeded";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("not committed: cannot rename"), std::string::npos) << e.message();
    }
  }
  comm_->Barrier();
  EXPECT_EQ(FindLatestCheckpoint(root_), previous);
  ExpectEverything(CheckpointReader::Open(previous), 1);
}

TEST_F(CkptMpiTest, OverlappingClaimsAreRefusedOnEveryRank) {
  SaveRequest req;
  req.step = 4;
  const auto all = Contents("dup", DType::kInt32, 10, 4);
  req.chunks.push_back(Chunk("dup", {10}, DType::kInt32, all, 0, 10));  // Every rank claims it all.
  try {
    CheckpointWriter(root_, *comm_).Save(std::move(req));
    EXPECT_EQ(comm_->size(), 1) << "overlapping chunks were accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("overlaps"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace dfar

DFAR_MPI_TEST_MAIN
