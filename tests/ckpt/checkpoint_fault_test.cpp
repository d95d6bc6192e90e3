// The hard paths of checkpointing: crashes at each point of the commit,
// corrupted, truncated and missing shards, and forged or damaged indexes.
// Every failure must leave the previous checkpoint loadable and must surface
// as a dfar::Error naming what is wrong, never as a crash.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "dfar/ckpt/checkpoint.h"
#include "dfar/core/error.h"
#include "helpers/test_util.h"

namespace dfar {
namespace {

using testing::ErrorOf;
using testing::ErrorOrEmpty;

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

ChunkToWrite Chunk(const std::string& name, std::vector<int64_t> shape, const std::vector<uint8_t>& all, int64_t begin,
                   int64_t end) {
  ChunkToWrite c;
  c.name = name;
  c.global_shape = std::move(shape);
  c.dtype = DType::kUInt8;
  c.begin = begin;
  c.end = end;
  c.bytes.assign(all.begin() + begin, all.begin() + end);
  return c;
}

// A byte pattern unlikely to occur anywhere else in an HDF5 file.
std::vector<uint8_t> Pattern(int seed) {
  std::vector<uint8_t> p(4096);
  std::mt19937 rng(static_cast<unsigned>(seed));
  for (auto& b : p) b = static_cast<uint8_t>(rng());
  return p;
}

const char kFlat[] = "optimizer/flat";
const char kBias[] = "bias";

// A checkpoint of two uint8 tensors: flat (2 chunks) and bias (1 chunk).
SaveRequest Request(int64_t step) {
  SaveRequest req;
  req.step = step;
  req.meta = {{"step", step}};
  const auto flat = Pattern(static_cast<int>(step));
  const auto bias = Pattern(static_cast<int>(step) + 1000);
  req.chunks.push_back(Chunk(kFlat, {64, 64}, flat, 0, 1000));
  req.chunks.push_back(Chunk(kFlat, {64, 64}, flat, 1000, 4096));
  req.chunks.push_back(Chunk(kBias, {4096}, bias, 0, 4096));
  return req;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class CheckpointFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = ::testing::TempDir() + "dfar-ckpt-" + std::to_string(getpid()) + "-" + info->test_suite_name() + "-" +
            info->name();
    fs::remove_all(root_);
    CheckpointWriter writer(root_, *comm_);
    dir_ = writer.Save(Request(1));
    shard_ = dir_ + "/shard-00000-of-00001.h5";
  }
  void TearDown() override { fs::remove_all(root_); }

  // The previous checkpoint is still the latest and loads intact.
  void ExpectStepOneIntact() {
    EXPECT_EQ(ReadText(root_ + "/latest"), "step-00000001\n");
    ASSERT_EQ(FindLatestCheckpoint(root_), dir_);
    const auto reader = CheckpointReader::Open(dir_);
    EXPECT_EQ(reader.ReadAll(kFlat), Pattern(1));
    EXPECT_EQ(reader.ReadAll(kBias), Pattern(1001));
    EXPECT_TRUE(VerifyCheckpoint(dir_).empty());
  }

  void EditIndex(const std::function<void(json&)>& edit) {
    json index = json::parse(ReadText(dir_ + "/index.json"));
    edit(index);
    WriteText(dir_ + "/index.json", index.dump());
  }

  // Opens the checkpoint and reads every tensor; returns the first error.
  std::string LoadError() {
    return ErrorOrEmpty([&] {
      const auto reader = CheckpointReader::Open(dir_);
      for (const auto& [name, t] : reader.tensors()) reader.ReadAll(name);
    });
  }

  // Offset of `bytes` in the shard file.
  size_t FindInShard(const std::vector<uint8_t>& bytes) {
    const std::string file = ReadText(shard_);
    const auto it = std::search(file.begin(), file.end(), bytes.begin(), bytes.end(),
                                [](char a, uint8_t b) { return static_cast<uint8_t>(a) == b; });
    EXPECT_NE(it, file.end()) << "pattern not found in " << shard_;
    return static_cast<size_t>(it - file.begin());
  }

  std::string root_, dir_, shard_;
  std::unique_ptr<Communicator> comm_ = MakeSingleCommunicator();
};

TEST_F(CheckpointFaultTest, CrashBeforeRenameLeavesThePreviousCheckpoint) {
  testing::FaultyFileSystem faulty;
  faulty.FailOn(testing::FaultyFileSystem::Op::kRename, "step-00000002.tmp");
  std::string message;
  {
    ScopedFileSystem scoped(&faulty);
    CheckpointWriter writer(root_, *comm_);
    message = ErrorOf([&] { writer.Save(Request(2)); });
  }
  EXPECT_TRUE(Contains(message, "cannot rename")) << message;
  EXPECT_TRUE(Contains(message, "step-00000002.tmp")) << message;
  // The tmp dir is complete (it even holds an index) yet never taken.
  EXPECT_TRUE(fs::exists(root_ + "/step-00000002.tmp/index.json"));
  EXPECT_FALSE(fs::exists(root_ + "/step-00000002"));
  ExpectStepOneIntact();
  // The next successful save cleans the stale tmp dir.
  CheckpointWriter(root_, *comm_).Save(Request(3));
  EXPECT_FALSE(fs::exists(root_ + "/step-00000002.tmp"));
  EXPECT_EQ(FindLatestCheckpoint(root_), root_ + "/step-00000003");
}

TEST_F(CheckpointFaultTest, CrashMidShardWriteLeavesThePreviousCheckpoint) {
  for (bool async : {false, true}) {
    SCOPED_TRACE(async ? "async" : "sync");
    SaveOptions options;
    options.async = async;
    testing::FaultyFileSystem faulty;
    // The shard's fsync fails after the file was cut in half, as a process
    // dying mid-write (or a lost write-back) leaves it.
    faulty.FailOn(testing::FaultyFileSystem::Op::kSync, "step-00000002.tmp/shard-",
                  [](const std::string& path) { fs::resize_file(path, fs::file_size(path) / 2); });
    std::string message;
    {
      ScopedFileSystem scoped(&faulty);
      CheckpointWriter writer(root_, *comm_, options);
      message = ErrorOf([&] {
        writer.Save(Request(2));
        writer.Wait();
      });
    }
    EXPECT_TRUE(Contains(message, "fsync of")) << message;
    EXPECT_TRUE(Contains(message, "shard-00000-of-00001.h5")) << message;
    EXPECT_TRUE(fs::exists(root_ + "/step-00000002.tmp/shard-00000-of-00001.h5"));
    EXPECT_FALSE(fs::exists(root_ + "/step-00000002.tmp/index.json"));
    ExpectStepOneIntact();
  }
}

TEST_F(CheckpointFaultTest, BitFlipIsCaughtByReadAndVerify) {
  const auto flat = Pattern(1);
  // Inside flat's second chunk, [1000, 4096), stored contiguously.
  const size_t offset = FindInShard(std::vector<uint8_t>(flat.begin() + 1000, flat.end())) + 1500;
  std::string bytes = ReadText(shard_);
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x10);
  WriteText(shard_, bytes);

  const auto reader = CheckpointReader::Open(dir_);
  const std::string message = ErrorOrEmpty([&] { reader.ReadAll(kFlat); });
  EXPECT_TRUE(Contains(message, "tensor 'optimizer/flat'") && Contains(message, "checksum mismatch") &&
              Contains(message, "shard-00000-of-00001.h5"))
      << message;
  // A partial read of the damaged chunk is caught too; the clean chunk and
  // the other tensor still read.
  std::vector<uint8_t> part(10);
  EXPECT_TRUE(Contains(ErrorOrEmpty([&] { reader.Read(kFlat, 2000, 2010, part.data()); }), "checksum mismatch"));
  std::vector<uint8_t> first(1000);
  EXPECT_EQ(ErrorOrEmpty([&] { reader.Read(kFlat, 0, 1000, first.data()); }), "");
  EXPECT_EQ(first, std::vector<uint8_t>(flat.begin(), flat.begin() + 1000));
  EXPECT_EQ(reader.ReadAll(kBias), Pattern(1001));

  const auto problems = VerifyCheckpoint(dir_);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_TRUE(Contains(problems[0], "tensor 'optimizer/flat'") && Contains(problems[0], "[1000, 4096)") &&
              Contains(problems[0], "shard-00000-of-00001.h5") && Contains(problems[0], "checksum mismatch"))
      << problems[0];
}

TEST_F(CheckpointFaultTest, TruncatedShardFailsClearly) {
  const auto size = fs::file_size(shard_);
  const std::string original = ReadText(shard_);
  for (uintmax_t keep : {uintmax_t{100}, size / 2, size - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(keep) + " of " + std::to_string(size));
    WriteText(shard_, original.substr(0, keep));
    const std::string message = LoadError();
    EXPECT_TRUE(Contains(message, "truncated") && Contains(message, "shard-00000-of-00001.h5")) << message;
    const auto problems = VerifyCheckpoint(dir_);
    ASSERT_FALSE(problems.empty());
    for (const auto& p : problems) {
      EXPECT_TRUE(Contains(p, "tensor '") && Contains(p, "shard-00000-of-00001.h5") && Contains(p, "truncated")) << p;
    }
  }
}

TEST_F(CheckpointFaultTest, MissingShardIsNamed) {
  fs::remove(shard_);
  const std::string message = LoadError();
  EXPECT_TRUE(Contains(message, "missing shard shard-00000-of-00001.h5")) << message;
  const auto problems = VerifyCheckpoint(dir_);
  ASSERT_EQ(problems.size(), 3u);  // One per chunk.
  for (const auto& p : problems) EXPECT_TRUE(Contains(p, "is missing") && Contains(p, "tensor '")) << p;
}

TEST_F(CheckpointFaultTest, ShardThatIsNotHdf5IsRefused) {
  WriteText(shard_, std::string(5000, 'x'));
  EXPECT_TRUE(Contains(LoadError(), "cannot open shard")) << LoadError();
}

TEST_F(CheckpointFaultTest, NewerIndexVersionIsRefused) {
  EditIndex([](json& index) { index["version"] = 2; });
  const std::string message = LoadError();
  EXPECT_TRUE(Contains(message, "index version 2 is newer than this dfar supports (1)")) << message;
  const auto problems = VerifyCheckpoint(dir_);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_TRUE(Contains(problems[0], "index version 2 is newer")) << problems[0];
}

TEST_F(CheckpointFaultTest, ForgedIndexesFailCleanly) {
  const std::string pristine = ReadText(dir_ + "/index.json");
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    const char* expect;
  };
  auto chunks = [](json& index, const char* name) -> json& { return index["tensors"][name]["chunks"]; };
  const std::vector<Case> cases = {
      {"wrong format", [](json& i) { i["format"] = "something-else"; }, "not a dfar checkpoint index"},
      {"version 0", [](json& i) { i["version"] = 0; }, "invalid index version"},
      {"version as string", [](json& i) { i["version"] = "1"; }, "'version' is not an integer"},
      {"no tensors", [](json& i) { i.erase("tensors"); }, "missing 'tensors'"},
      {"tensors is a list", [](json& i) { i["tensors"] = json::array(); }, "'tensors' is not an object"},
      {"overlapping chunks", [&](json& i) { chunks(i, kFlat)[1]["begin"] = 900; }, "overlaps"},
      {"duplicated chunk", [&](json& i) { chunks(i, kFlat).push_back(chunks(i, kFlat)[0]); }, "overlaps"},
      {"gap", [&](json& i) { chunks(i, kFlat).erase(0); }, "are in no chunk"},
      {"short of numel", [&](json& i) { i["tensors"][kBias]["shape"] = {5000}; }, "are in no chunk"},
      {"huge numel, one chunk claims it all",
       [&](json& i) {
         i["tensors"][kBias]["shape"] = {int64_t{1} << 50};
         chunks(i, kBias)[0]["end"] = int64_t{1} << 50;
       },
       "elements but the index says"},
      {"numel overflows",
       [&](json& i) {
         i["tensors"][kBias]["shape"] = {int64_t{1} << 40, int64_t{1} << 40};
       },
       "too large"},
      {"negative dim", [&](json& i) { i["tensors"][kBias]["shape"] = {-4096}; }, "negative dimension"},
      {"empty range", [&](json& i) { chunks(i, kBias)[0]["end"] = 0; }, "empty or outside"},
      {"end past numel", [&](json& i) { chunks(i, kBias)[0]["end"] = 5000; }, "empty or outside"},
      {"begin negative", [&](json& i) { chunks(i, kFlat)[0]["begin"] = -1; }, "empty or outside"},
      {"begin as float", [&](json& i) { chunks(i, kFlat)[0]["begin"] = 0.5; }, "'begin' is not an integer"},
      {"huge unsigned", [&](json& i) { chunks(i, kFlat)[0]["end"] = UINT64_MAX; }, "out of range"},
      {"escaping file", [&](json& i) { chunks(i, kBias)[0]["file"] = "../../etc/passwd"; }, "not a plain file name"},
      {"unknown shard", [&](json& i) { chunks(i, kBias)[0]["file"] = "shard-00007-of-00008.h5"; }, "missing shard"},
      {"unknown dtype", [&](json& i) { i["tensors"][kBias]["dtype"] = "complex64"; }, "unknown dtype"},
      {"dtype mismatch",
       [&](json& i) {
         i["tensors"][kBias]["dtype"] = "int32";
         i["tensors"][kBias]["shape"] = {1024};
         chunks(i, kBias)[0]["end"] = 1024;
       },
       "elements but the index says"},
      {"dtype size mismatch", [&](json& i) { i["tensors"][kBias]["dtype"] = "int32"; }, "dtype mismatch"},
      {"dataset of another size", [&](json& i) { chunks(i, kBias)[0]["dataset"] = chunks(i, kFlat)[0]["dataset"]; },
       "elements but the index says"},
      {"no such dataset", [&](json& i) { chunks(i, kBias)[0]["dataset"] = "/t/nothing/here"; },
       "is missing from shard"},
      {"relative dataset", [&](json& i) { chunks(i, kBias)[0]["dataset"] = "t/bias/0"; }, "absolute HDF5 path"},
      {"wrong checksum", [&](json& i) { chunks(i, kBias)[0]["crc32c"] = 12345; }, "checksum mismatch"},
      {"checksum too big", [&](json& i) { chunks(i, kBias)[0]["crc32c"] = int64_t{1} << 33; }, "32-bit"},
      {"rank outside world", [&](json& i) { chunks(i, kBias)[0]["rank"] = 3; }, "outside the world"},
      {"world too large", [&](json& i) { i["world_size"] = int64_t{1} << 40; }, "out of range"},
      {"ranks mismatch", [&](json& i) { i["ranks"] = json::array(); }, "'ranks' has 0 entries"},
      {"meta missing", [&](json& i) { i.erase("meta"); }, "missing 'meta'"},
      {"chunk not an object", [&](json& i) { chunks(i, kBias)[0] = 7; }, "not an object"},
      {"index not an object",
       [&](json& i) {
         i = json::array({1, 2});
       },
       "not a JSON object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    WriteText(dir_ + "/index.json", pristine);
    EditIndex(c.edit);
    const std::string message = LoadError();
    EXPECT_TRUE(Contains(message, c.expect)) << "got: " << message;
    EXPECT_FALSE(Contains(message, "NOT A dfar::Error")) << message;
  }
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  WriteText(dir_ + "/index.json", pristine.substr(0, pristine.rfind('}')) + ", \"deep\": " + deep + "}");
  EXPECT_TRUE(Contains(LoadError(), "nests JSON deeper than")) << LoadError();
  for (const std::string& text :
       {std::string(""), std::string("{\"format\":"), std::string("\xff\xfe garbage"), std::string(100, '[')}) {
    WriteText(dir_ + "/index.json", text);
    EXPECT_TRUE(Contains(LoadError(), "not valid JSON")) << LoadError();
    EXPECT_EQ(VerifyCheckpoint(dir_).size(), 1u);
  }
}

TEST_F(CheckpointFaultTest, RandomlyDamagedIndexNeverCrashes) {
  const std::string pristine = ReadText(dir_ + "/index.json");
  std::mt19937 rng(1234);
  int loaded = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string text = pristine;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text[at] = static_cast<char>(rng());
          break;
        case 1:
          text[at] = static_cast<char>('0' + rng() % 10);
          break;
        default:
          text.erase(at, 1 + rng() % 8);
          break;
      }
    }
    WriteText(dir_ + "/index.json", text);
    const std::string message = LoadError();
    EXPECT_FALSE(Contains(message, "NOT A dfar::Error")) << message << "\nindex: " << text;
    if (message.empty()) ++loaded;
    const auto problems = VerifyCheckpoint(dir_);  // Never throws.
    if (message.empty()) {
      EXPECT_TRUE(problems.empty()) << problems[0];
    }
  }
  EXPECT_LT(loaded, 300);
}

}  // namespace
}  // namespace dfar
