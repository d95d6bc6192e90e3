// Single-process tests of the checkpoint writer and reader: round trips,
// resharding reads, retention, async saves, and a 2-rank save run on
// threads (an in-process communicator) read back at other world sizes.
#include "dfar/ckpt/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "dfar/core/error.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

namespace fs = std::filesystem;

std::string UniqueDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "dfar-ckpt-" + std::to_string(getpid()) + "-" + info->test_suite_name() + "-" +
         info->name();
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct TestTensor {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype;
  std::vector<uint8_t> bytes;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

template <typename T>
std::vector<uint8_t> Bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// Deterministic, distinct contents per dtype and seed.
std::vector<uint8_t> Fill(DType dtype, int64_t n, int seed) {
  switch (dtype) {
    case DType::kFloat32: {
      std::vector<float> v(n);
      for (int64_t i = 0; i < n; ++i) v[i] = 0.25f * i - 3.0f + seed;
      return Bytes(v);
    }
    case DType::kFloat64: {
      std::vector<double> v(n);
      for (int64_t i = 0; i < n; ++i) v[i] = 1.0 / (i + 1) + seed;
      return Bytes(v);
    }
    case DType::kInt32: {
      std::vector<int32_t> v(n);
      for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>(i * 7 - 100 + seed);
      return Bytes(v);
    }
    case DType::kInt64: {
      std::vector<int64_t> v(n);
      for (int64_t i = 0; i < n; ++i) v[i] = (i << 33) + seed;
      return Bytes(v);
    }
    case DType::kUInt8: {
      std::vector<uint8_t> v(n);
      for (int64_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 13 + seed);
      return v;
    }
    case DType::kBFloat16:
    case DType::kFloat16: {
      std::vector<uint16_t> v(n);
      for (int64_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>(i * 257 + seed);
      return Bytes(v);
    }
  }
  return {};
}

std::vector<TestTensor> SampleTensors(int seed) {
  std::vector<TestTensor> ts = {
      {"model.embed/weight", {5, 7}, DType::kFloat32, {}},
      {"norm", {7}, DType::kFloat64, {}},
      {"step_count", {}, DType::kInt64, {}},
      {"ids", {2, 3, 4}, DType::kInt32, {}},
      {"mask", {9}, DType::kUInt8, {}},
      {"bf", {4, 4}, DType::kBFloat16, {}},
      {"half", {3}, DType::kFloat16, {}},
      {"empty", {0, 3}, DType::kFloat32, {}},
  };
  for (auto& t : ts) t.bytes = Fill(t.dtype, t.numel(), seed);
  return ts;
}

ChunkToWrite Slice(const TestTensor& t, int64_t begin, int64_t end) {
  ChunkToWrite c;
  c.name = t.name;
  c.global_shape = t.shape;
  c.dtype = t.dtype;
  c.begin = begin;
  c.end = end;
  const size_t elem = DTypeSize(t.dtype);
  c.bytes.assign(t.bytes.begin() + begin * elem, t.bytes.begin() + end * elem);
  return c;
}

// Every tensor, cut into up to `pieces` chunks.
SaveRequest MakeRequest(int64_t step, const std::vector<TestTensor>& tensors, int pieces) {
  SaveRequest req;
  req.step = step;
  req.meta = {{"model", "tiny"}, {"step", step}};
  req.rank_meta = {{"rng", 1234 + step}};
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    if (n == 0) req.chunks.push_back(Slice(t, 0, 0));
    for (int k = 0; k < pieces && n > 0; ++k) {
      const int64_t b = n * k / pieces, e = n * (k + 1) / pieces;
      if (e > b) req.chunks.push_back(Slice(t, b, e));
    }
  }
  return req;
}

void ExpectTensorsEqual(const CheckpointReader& reader, const std::vector<TestTensor>& tensors) {
  for (const auto& t : tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(reader.Has(t.name));
    const TensorInfo& info = reader.Tensor(t.name);
    EXPECT_EQ(info.global_shape, t.shape);
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.numel(), t.numel());
    EXPECT_EQ(reader.ReadAll(t.name), t.bytes);
  }
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = UniqueDir();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string root_;
  std::unique_ptr<Communicator> comm_ = MakeSingleCommunicator();
};

TEST_F(CheckpointTest, RoundTripsEveryDtypeAndShape) {
  const auto tensors = SampleTensors(1);
  CheckpointWriter writer(root_, *comm_);
  const std::string dir = writer.Save(MakeRequest(42, tensors, 3));
  EXPECT_EQ(dir, root_ + "/step-00000042");
  EXPECT_EQ(FindLatestCheckpoint(root_), dir);
  const auto reader = CheckpointReader::Open(dir);
  EXPECT_EQ(reader.step(), 42);
  EXPECT_EQ(reader.world_size(), 1);
  EXPECT_EQ(reader.meta()["model"], "tiny");
  EXPECT_EQ(reader.index()["ranks"][0]["rng"], 1234 + 42);
  EXPECT_EQ(reader.tensors().size(), tensors.size());
  ExpectTensorsEqual(reader, tensors);
  EXPECT_EQ(reader.Tensor("model.embed/weight").chunks.size(), 3u);
  EXPECT_TRUE(reader.Tensor("empty").chunks.empty());
  EXPECT_TRUE(VerifyCheckpoint(dir).empty());
}

TEST_F(CheckpointTest, WritesTheDocumentedLayout) {
  CheckpointWriter writer(root_, *comm_);
  const std::string dir = writer.Save(MakeRequest(7, SampleTensors(0), 2));
  EXPECT_EQ(ReadText(root_ + "/latest"), "step-00000007\n");
  EXPECT_TRUE(fs::is_regular_file(dir + "/index.json"));
  EXPECT_TRUE(fs::is_regular_file(dir + "/shard-00000-of-00001.h5"));
  EXPECT_FALSE(fs::exists(dir + ".tmp"));
  EXPECT_FALSE(fs::exists(root_ + "/latest.tmp"));
  const auto index = nlohmann::json::parse(ReadText(dir + "/index.json"));
  EXPECT_EQ(index["format"], "dfar-checkpoint");
  EXPECT_EQ(index["version"], 1);
  EXPECT_EQ(index["step"], 7);
  EXPECT_EQ(index["world_size"], 1);
  const auto& chunk = index["tensors"]["model.embed/weight"]["chunks"][1];
  EXPECT_EQ(chunk["file"], "shard-00000-of-00001.h5");
  EXPECT_EQ(chunk["dataset"], "/t/model.embed%2Fweight/17");
  EXPECT_EQ(chunk["begin"], 17);
  EXPECT_EQ(chunk["end"], 35);
  EXPECT_EQ(chunk["rank"], 0);
  EXPECT_TRUE(chunk["crc32c"].is_number_unsigned());
  EXPECT_EQ(index["tensors"]["bf"]["dtype"], "bfloat16");
  EXPECT_EQ(index["tensors"]["step_count"]["shape"], nlohmann::json::array());
}

TEST_F(CheckpointTest, ReadsEverySubRangeAcrossChunkBoundaries) {
  TestTensor t{"flat", {17}, DType::kFloat32, Fill(DType::kFloat32, 17, 5)};
  SaveRequest req;
  req.step = 1;
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 5}, {5, 6}, {6, 17}}) req.chunks.push_back(Slice(t, b, e));
  CheckpointWriter writer(root_, *comm_);
  const std::string dir = writer.Save(std::move(req));
  const float* want = reinterpret_cast<const float*>(t.bytes.data());
  // Two passes over one reader: first partial touches read whole chunks,
  // later ones read only the overlap; both must give the same values.
  const auto reader = CheckpointReader::Open(dir);
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t b = 0; b <= 17; ++b) {
      for (int64_t e = b; e <= 17; ++e) {
        std::vector<float> got(static_cast<size_t>(e - b), -1.0f);
        reader.Read("flat", b, e, got.data());
        EXPECT_EQ(got, std::vector<float>(want + b, want + e)) << "[" << b << ", " << e << ") pass " << pass;
      }
    }
  }
  std::vector<float> buf(20);
  EXPECT_THROW(reader.Read("flat", 10, 18, buf.data()), Error);
  EXPECT_THROW(reader.Read("flat", -1, 3, buf.data()), Error);
  EXPECT_THROW(reader.Read("flat", 5, 4, buf.data()), Error);
  try {
    reader.Read("nope", 0, 1, buf.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("no tensor 'nope'"), std::string::npos) << e.message();
  }
}

TEST_F(CheckpointTest, RetentionKeepsTheNewestTwo) {
  SaveOptions options;
  options.keep_last = 2;
  CheckpointWriter writer(root_, *comm_, options);
  for (int64_t step = 1; step <= 4; ++step) {
    if (step == 3) {
      // Leftovers of crashed saves: an older one is cleaned, a newer one kept.
      fs::create_directories(root_ + "/step-00000002.tmp");
      fs::create_directories(root_ + "/step-00000009.tmp");
    }
    writer.Save(MakeRequest(step, SampleTensors(static_cast<int>(step)), 1));
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root_)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step-00000003", "step-00000004", "step-00000009.tmp"}));
  EXPECT_EQ(FindLatestCheckpoint(root_), root_ + "/step-00000004");
  ExpectTensorsEqual(CheckpointReader::Open(root_ + "/step-00000003"), SampleTensors(3));
}

TEST_F(CheckpointTest, ResavingAStepReplacesIt) {
  CheckpointWriter writer(root_, *comm_);
  writer.Save(MakeRequest(5, SampleTensors(1), 1));
  const std::string dir = writer.Save(MakeRequest(5, SampleTensors(2), 2));
  ExpectTensorsEqual(CheckpointReader::Open(dir), SampleTensors(2));
  EXPECT_FALSE(fs::exists(dir + ".replaced.tmp"));
}

TEST_F(CheckpointTest, AsyncSaveMatchesSyncSaveAndCommitsOnWait) {
  const auto tensors = SampleTensors(3);
  CheckpointWriter sync_writer(root_ + "/sync", *comm_);
  sync_writer.Save(MakeRequest(10, tensors, 2));
  SaveOptions options;
  options.async = true;
  {
    CheckpointWriter writer(root_ + "/async", *comm_, options);
    const std::string dir = writer.Save(MakeRequest(10, tensors, 2));
    EXPECT_GE(writer.last_blocking_seconds(), 0.0);
    EXPECT_EQ(FindLatestCheckpoint(root_ + "/async"), "") << "committed before Wait()";
    writer.Wait();
    EXPECT_EQ(FindLatestCheckpoint(root_ + "/async"), dir);
    const auto a = CheckpointReader::Open(dir);
    const auto s = CheckpointReader::Open(root_ + "/sync/step-00000010");
    ExpectTensorsEqual(a, tensors);
    EXPECT_EQ(a.index(), s.index()) << "async and sync saves give the same index";
    // The next Save commits the previous one; the destructor commits the last.
    writer.Save(MakeRequest(11, SampleTensors(11), 1));
    writer.Save(MakeRequest(12, SampleTensors(12), 1));
    EXPECT_EQ(FindLatestCheckpoint(root_ + "/async"), root_ + "/async/step-00000011");
  }
  EXPECT_EQ(FindLatestCheckpoint(root_ + "/async"), root_ + "/async/step-00000012");
  ExpectTensorsEqual(CheckpointReader::Open(root_ + "/async/step-00000012"), SampleTensors(12));
}

TEST_F(CheckpointTest, H5dumpReadsAShard) {
  if (!fs::exists("/usr/bin/h5dump")) GTEST_SKIP() << "h5dump not installed (apt-get install hdf5-tools)";
  CheckpointWriter writer(root_, *comm_);
  const std::string dir = writer.Save(MakeRequest(3, SampleTensors(0), 2));
  const std::string shard = dir + "/shard-00000-of-00001.h5", out = root_ + "/h5dump.txt";
  const auto h5dump = [&](const std::string& args) {
    const std::string cmd = "/usr/bin/h5dump " + args + " '" + shard + "' > '" + out + "' 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << ReadText(out);
    return ReadText(out);
  };
  const std::string header = h5dump("-H");
  EXPECT_NE(header.find("ATTRIBUTE \"format\""), std::string::npos) << header;
  EXPECT_NE(header.find("GROUP \"model.embed%2Fweight\""), std::string::npos) << header;
  EXPECT_NE(header.find("DATASET \"17\""), std::string::npos) << header;
  EXPECT_NE(header.find("H5T_IEEE_F32LE"), std::string::npos) << header;
  EXPECT_NE(h5dump("-a /format").find("\"dfar-checkpoint-shard\""), std::string::npos) << ReadText(out);
  EXPECT_NE(h5dump("-a /t/bf/0/dtype").find("\"bfloat16\""), std::string::npos) << ReadText(out);
}

TEST_F(CheckpointTest, RejectsInvalidChunksBeforeWritingAnything) {
  CheckpointWriter writer(root_, *comm_);
  SaveRequest req = MakeRequest(1, SampleTensors(0), 1);
  req.chunks[0].bytes.pop_back();
  EXPECT_THROW(writer.Save(std::move(req)), Error);
  req = MakeRequest(1, SampleTensors(0), 1);
  req.chunks[0].end += 1;
  EXPECT_THROW(writer.Save(std::move(req)), Error);
  req = MakeRequest(1, SampleTensors(0), 2);
  req.chunks.erase(req.chunks.begin());  // A gap: the tensor is not fully written.
  try {
    writer.Save(std::move(req));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("are in no chunk"), std::string::npos) << e.message();
  }
  EXPECT_EQ(FindLatestCheckpoint(root_), "");
}

// ---- several ranks in one process -------------------------------------------

// Collectives among threads: enough of Communicator for the checkpoint code.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), slots_(static_cast<size_t>(size)) {}
  int size() const { return size_; }

  void AllGather(int rank, const void* send, void* recv, size_t bytes) {
    std::unique_lock<std::mutex> lock(mu_);
    const auto* p = static_cast<const uint8_t*>(send);
    slots_[static_cast<size_t>(rank)].assign(p, p + bytes);
    ArriveAndWait(lock);
    for (int r = 0; r < size_; ++r) {
      const auto& s = slots_[static_cast<size_t>(r)];
      if (!s.empty()) std::memcpy(static_cast<uint8_t*>(recv) + r * bytes, s.data(), bytes);
    }
    ArriveAndWait(lock);
  }

  void Barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    ArriveAndWait(lock);
  }

 private:
  void ArriveAndWait(std::unique_lock<std::mutex>& lock) {
    const int64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    const bool done = cv_.wait_for(lock, std::chrono::seconds(60), [&] { return generation_ != generation; });
    if (!done) throw std::runtime_error("thread collective timed out (a rank skipped a collective)");
  }

  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  std::vector<std::vector<uint8_t>> slots_;
};

class DoneWork : public Work {
 public:
  void Wait() override {}
  bool Done() override { return true; }
};

class ThreadComm : public Communicator {
 public:
  ThreadComm(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_.size(); }
  std::string backend() const override { return "threads"; }
  std::shared_ptr<Work> AllGatherAsync(const void* send, void* recv, size_t count, DType dtype) override {
    group_.AllGather(rank_, send, recv, count * DTypeSize(dtype));
    return std::make_shared<DoneWork>();
  }
  void Barrier() override { group_.Barrier(); }
  std::shared_ptr<Work> AllReduceAsync(void*, size_t, DType, ReduceOp) override { DFAR_THROW("unused"); }
  std::shared_ptr<Work> ReduceScatterAsync(const void*, void*, size_t, DType, ReduceOp) override {
    DFAR_THROW("unused");
  }
  std::shared_ptr<Work> BroadcastAsync(void*, size_t, DType, int) override { DFAR_THROW("unused"); }

 private:
  ThreadGroup& group_;
  int rank_;
};

// Runs fn(comm) on `n` threads, one per rank; returns each rank's error text.
std::vector<std::string> RunRanks(int n, const std::function<void(Communicator&)>& fn) {
  ThreadGroup group(n);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      ThreadComm comm(group, r);
      try {
        fn(comm);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// Rank r of n: its ZeRO-style slice of the flat tensor, plus whole tensors
// owned round-robin.
SaveRequest RankRequest(int64_t step, const std::vector<TestTensor>& tensors, const TestTensor& flat, int r, int n) {
  SaveRequest req;
  req.step = step;
  req.meta = {{"writer", "threads"}};
  req.rank_meta = {{"rank", r}};
  const int64_t numel = flat.numel();
  req.chunks.push_back(Slice(flat, numel * r / n, numel * (r + 1) / n));
  for (size_t k = 0; k < tensors.size(); ++k) {
    if (static_cast<int>(k % static_cast<size_t>(n)) == r)
      req.chunks.push_back(Slice(tensors[k], 0, tensors[k].numel()));
  }
  return req;
}

TEST_F(CheckpointTest, TwoRankSaveLoadsAtAnyWorldSize) {
  const auto tensors = SampleTensors(4);
  const TestTensor flat{"optimizer.exp_avg", {1001}, DType::kFloat32, Fill(DType::kFloat32, 1001, 9)};
  for (bool async : {false, true}) {
    SCOPED_TRACE(async ? "async" : "sync");
    const std::string root = root_ + (async ? "/async" : "/sync");
    SaveOptions options;
    options.async = async;
    const auto errors = RunRanks(2, [&](Communicator& comm) {
      CheckpointWriter writer(root, comm, options);
      writer.Save(RankRequest(20, tensors, flat, comm.rank(), comm.size()));
      writer.Wait();
    });
    EXPECT_EQ(errors, (std::vector<std::string>{"", ""}));
    const auto reader = CheckpointReader::Open(FindLatestCheckpoint(root));
    EXPECT_EQ(reader.world_size(), 2);
    EXPECT_EQ(reader.index()["ranks"], nlohmann::json::parse(R"([{"rank":0},{"rank":1}])"));
    ExpectTensorsEqual(reader, tensors);
    ASSERT_EQ(reader.Tensor(flat.name).chunks.size(), 2u);
    // Read as M = 1, 3 and 4 ranks would: each virtual rank's own slice.
    const float* want = reinterpret_cast<const float*>(flat.bytes.data());
    for (int m : {1, 3, 4}) {
      for (int v = 0; v < m; ++v) {
        const int64_t b = 1001 * v / m, e = 1001 * (v + 1) / m;
        std::vector<float> got(static_cast<size_t>(e - b));
        reader.Read(flat.name, b, e, got.data());
        EXPECT_EQ(got, std::vector<float>(want + b, want + e)) << "M=" << m << " rank " << v;
      }
    }
  }
}

TEST_F(CheckpointTest, OneRanksFailureFailsEveryRankWithoutHanging) {
  const auto tensors = SampleTensors(4);
  const TestTensor flat{"flat", {10}, DType::kFloat32, Fill(DType::kFloat32, 10, 0)};
  auto errors = RunRanks(2, [&](Communicator& comm) {
    CheckpointWriter writer(root_, comm);
    writer.Save(RankRequest(1, tensors, flat, comm.rank(), 2));
  });
  // Ranks are threads here: the fault names rank 1's shard of step 2 only.
  testing::FaultyFileSystem faulty;
  faulty.FailOn(testing::FaultyFileSystem::Op::kSync, "step-00000002.tmp/shard-00001-of-00002");
  {
    ScopedFileSystem scoped(&faulty);
    errors = RunRanks(2, [&](Communicator& comm) {
      CheckpointWriter failing(root_, comm);
      failing.Save(RankRequest(2, tensors, flat, comm.rank(), 2));
    });
  }
  for (const auto& e : errors) EXPECT_NE(e.find("rank 1: fsync of"), std::string::npos) << e;
  EXPECT_EQ(FindLatestCheckpoint(root_), root_ + "/step-00000001");

  // Two ranks claiming the same elements: refused at save time.
  errors = RunRanks(2, [&](Communicator& comm) {
    CheckpointWriter writer(root_, comm);
    SaveRequest req;
    req.step = 3;
    req.chunks.push_back(Slice(flat, 0, 10));
    writer.Save(std::move(req));
  });
  for (const auto& e : errors) EXPECT_NE(e.find("overlaps"), std::string::npos) << e;
  EXPECT_EQ(FindLatestCheckpoint(root_), root_ + "/step-00000001");
}

}  // namespace
}  // namespace dfar
