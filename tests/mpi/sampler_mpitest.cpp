// Run under mpirun -np N: every rank computes its own shard of the real DFAR
// train set; the shards are gathered and checked for disjointness and cover.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "dfar/core/config.h"
#include "dfar/data/dataset.h"
#include "dfar/data/sampler.h"
#include "mpi_test_main.h"

namespace dfar {
namespace {

std::string Serialize(const std::vector<int64_t>& v) {
  std::ostringstream os;
  for (int64_t x : v) os << x << ' ';
  return os.str();
}

std::vector<int64_t> Deserialize(const std::string& s) {
  std::istringstream is(s);
  std::vector<int64_t> v;
  for (int64_t x; is >> x;) v.push_back(x);
  return v;
}

std::vector<int64_t> StatementLengths() {
  const Config config = LoadConfig("");
  const auto examples = LoadExamples(std::string(DFAR_SHARED_DIR) + "/data/dfar/DFAR_trainset.csv", config.data);
  std::vector<int64_t> lengths;
  for (const auto& ex : examples) lengths.push_back(static_cast<int64_t>(ex.statement.size() + ex.reason.size()));
  return lengths;
}

TEST(SamplerMpiTest, TrainShardsAreDisjointEqualAndCoverAllButRemainder) {
  Communicator& comm = *testing::GlobalComm();
  const auto lengths = StatementLengths();
  SamplerConfig sc;
  sc.micro_batch = 4;
  ShardedSampler sampler(lengths, comm.rank(), comm.size(), sc, /*seed=*/11);
  std::vector<int64_t> mine;
  for (const auto& batch : sampler.EpochBatches(0)) mine.insert(mine.end(), batch.begin(), batch.end());
  const auto all = comm.AllGatherBytes(Serialize(mine));
  std::set<int64_t> seen;
  size_t total = 0;
  for (const auto& s : all) {
    const auto shard = Deserialize(s);
    EXPECT_EQ(shard.size(), mine.size()) << "shards must be equal in size";
    for (int64_t i : shard) EXPECT_TRUE(seen.insert(i).second) << "example " << i << " is in two shards";
    total += shard.size();
  }
  const int64_t global_batch = sc.micro_batch * comm.size();
  const int64_t n = static_cast<int64_t>(lengths.size());
  EXPECT_EQ(static_cast<int64_t>(total), n / global_batch * global_batch);
}

TEST(SamplerMpiTest, EvalShardsCoverEveryExampleExactlyOnce) {
  Communicator& comm = *testing::GlobalComm();
  for (int64_t n : {0, 1, 7, 500, 4501}) {
    const Range r = EvalShard(n, comm.rank(), comm.size());
    std::vector<int64_t> mine;
    for (int64_t i = r.begin; i < r.end; ++i) mine.push_back(i);
    const auto all = comm.AllGatherBytes(Serialize(mine));
    std::vector<int64_t> joined;
    for (const auto& s : all) {
      const auto shard = Deserialize(s);
      joined.insert(joined.end(), shard.begin(), shard.end());
    }
    ASSERT_EQ(static_cast<int64_t>(joined.size()), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(joined[static_cast<size_t>(i)], i) << "order restored by rank";
  }
}

}  // namespace
}  // namespace dfar

DFAR_MPI_TEST_MAIN
