// Internal to src/ckpt: names, index schema validation and durable file
// operations shared by the writer, the reader and verify.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dfar/ckpt/checkpoint.h"

namespace dfar::ckpt {

constexpr const char* kShardFormat = "dfar-checkpoint-shard";
constexpr const char* kIndexFile = "index.json";
constexpr const char* kLatestFile = "latest";
// An index larger than this is refused unread (a forged or wrong file).
constexpr int64_t kMaxIndexBytes = int64_t{256} << 20;
constexpr int kMaxWorldSize = 1 << 24;
constexpr int kMaxIndexDepth = 512;               // JSON nesting, meta included.
constexpr int64_t kMaxStep = 999999999999999999;  // 18 digits: what ParseStepDirName accepts.

// "step-00000042". Wider for steps above 99999999.
std::string StepDirName(int64_t step);
// True for exactly "step-" followed by 1..18 digits; sets *step.
bool ParseStepDirName(const std::string& name, int64_t* step);
// True for "step-<digits>.tmp" and "step-<digits>.replaced.tmp" (sets *step).
bool ParseTmpDirName(const std::string& name, int64_t* step);
// "shard-00001-of-00004.h5"
std::string ShardFileName(int rank, int world_size);
// Tensor names may hold any byte; in HDF5 link names '/' is the separator
// and '.' / '..' are special, so '%', '/', control bytes and an all-dots
// name are percent-encoded.
std::string EscapeTensorName(const std::string& name);
// "/t/<escaped name>/<begin>"
std::string DatasetPath(const std::string& name, int64_t begin);

bool DTypeFromName(const std::string& name, DType* out);
// The product of the dims; throws, naming `what`, on a negative dim or when
// numel * elem_size would not fit in int64.
int64_t CheckedNumel(const std::vector<int64_t>& shape, size_t elem_size, const std::string& what);

// Checks format, version and the whole schema of an index, including that
// every tensor's chunks tile [0, numel) exactly. `where` names the file in
// messages. Never trusts the input: every field's type and range is checked.
std::map<std::string, TensorInfo> ParseIndex(const nlohmann::json& index, const std::string& where);
// Reads and parses `path` (at most kMaxIndexBytes); throws naming the path.
nlohmann::json ReadIndexFile(const std::string& path);
// The checks of ReadIndexFile on text already in memory (fuzzers, tests):
// size, nesting depth, valid JSON. `where` names the text in messages.
nlohmann::json ParseIndexText(const std::string& text, const std::string& where);

bool IsRegularFile(const std::string& path);
bool IsDirectory(const std::string& path);
int64_t FileSize(const std::string& path);  // -1 if it cannot be stat'ed.
// Durable writes, renames and fsyncs: dfar/core/file_util.h.

}  // namespace dfar::ckpt
