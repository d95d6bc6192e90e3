#include "train_state.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "dfar/core/error.h"
#include "dfar/core/torch_compat.h"

namespace dfar {
namespace {

const char* kStateNames[] = {"param/", "optim.exp_avg/", "optim.exp_avg_sq/"};

// ZeRO 0: which rank writes each entry (largest first, to the least loaded).
std::vector<int> AssignWriters(const FlatParameters& flat, int world) {
  const auto& entries = flat.entries();
  std::vector<size_t> order(entries.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return entries[a].numel > entries[b].numel; });
  std::vector<int64_t> load(static_cast<size_t>(world), 0);
  std::vector<int> writer(entries.size(), 0);
  for (size_t i : order) {
    const auto r = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    writer[i] = static_cast<int>(r);
    load[r] += entries[i].numel;
  }
  return writer;
}

ChunkToWrite MakeChunk(const std::string& name, const FlatEntry& e, int64_t begin, const torch::Tensor& values) {
  ChunkToWrite c;
  c.name = name + e.name;
  c.global_shape = e.shape;
  c.dtype = DType::kFloat32;
  c.begin = begin;
  c.end = begin + values.numel();
  auto contiguous = values.to(torch::kFloat).contiguous().cpu();
  c.bytes.resize(static_cast<size_t>(contiguous.numel()) * 4);
  std::memcpy(c.bytes.data(), contiguous.data_ptr(), c.bytes.size());
  return c;
}

// One piece of an entry inside owned range `range`: [lo, hi) of the entry,
// starting at `at` inside the range and `compact` in the compact state.
struct OwnedPiece {
  const FlatEntry* entry;
  int64_t lo, hi;
  size_t range;
  int64_t at, compact;
};

// Calls fn(piece) for every piece of an entry that lies inside an owned range.
template <typename Fn>
void ForEachOwnedPiece(const FlatParameters& flat, Fn fn) {
  for (size_t i = 0; i < flat.owned().size(); ++i) {
    const auto [b, e] = flat.owned()[i];
    for (const auto& entry : flat.entries()) {
      const int64_t lo = std::max(b, entry.offset), hi = std::min(e, entry.offset + entry.numel);
      if (lo < hi)
        fn(OwnedPiece{&entry, lo - entry.offset, hi - entry.offset, i, lo - b, flat.compact_offset(i) + (lo - b)});
    }
  }
}

// The fp32 master (bf16 training) or the parameters themselves of a piece.
torch::Tensor PieceParams(FlatParameters& flat, AdamW& optim, const OwnedPiece& p) {
  const int64_t n = p.hi - p.lo;
  return optim.master().defined() ? optim.master().narrow(0, p.compact, n)
                                  : flat.owned_values(p.range).narrow(0, p.at, n);
}

}  // namespace

std::vector<ChunkToWrite> CollectStateChunks(FlatParameters& flat, AdamW& optim, int zero, int rank, int world) {
  const std::vector<int> writer = zero == 0 ? AssignWriters(flat, world) : std::vector<int>();
  std::vector<ChunkToWrite> chunks;
  ForEachOwnedPiece(flat, [&](const OwnedPiece& p) {
    const FlatEntry& e = *p.entry;
    if (zero == 0) {
      const size_t index = static_cast<size_t>(&e - flat.entries().data());
      if (writer[index] != rank) return;
    }
    const int64_t n = p.hi - p.lo;
    chunks.push_back(MakeChunk(kStateNames[0], e, p.lo, PieceParams(flat, optim, p)));
    chunks.push_back(MakeChunk(kStateNames[1], e, p.lo, optim.exp_avg().narrow(0, p.compact, n)));
    chunks.push_back(MakeChunk(kStateNames[2], e, p.lo, optim.exp_avg_sq().narrow(0, p.compact, n)));
  });
  return chunks;
}

namespace {

void ReadInto(const CheckpointReader& reader, const std::string& name, const FlatEntry& e, int64_t lo, int64_t hi,
              torch::Tensor dst) {
  DFAR_CHECK(reader.Has(name), "checkpoint has no tensor '", name, "': it was written for another model or LoRA setup");
  const TensorInfo& info = reader.Tensor(name);
  DFAR_CHECK(info.global_shape == e.shape, "checkpoint tensor '", name, "' has shape ",
             torch::IntArrayRef(info.global_shape), " but the model expects ", torch::IntArrayRef(e.shape));
  DFAR_CHECK(info.dtype == DType::kFloat32, "checkpoint tensor '", name, "' is ", DTypeName(info.dtype),
             ", expected float32");
  if (dst.is_contiguous() && dst.scalar_type() == torch::kFloat && dst.device().is_cpu()) {
    reader.Read(name, lo, hi, dst.data_ptr());  // Straight into place: no staging buffer.
    return;
  }
  auto buf = torch::empty({hi - lo}, torch::kFloat);
  reader.Read(name, lo, hi, buf.data_ptr());
  dst.copy_(buf);
}

}  // namespace

void RestoreState(const CheckpointReader& reader, FlatParameters& flat, AdamW& optim) {
  torch::NoGradGuard no_grad;
  // ZeRO 0-2 hold every parameter; ZeRO 3 only its owned parts.
  if (!flat.shards_parameters())
    for (const auto& e : flat.entries())
      ReadInto(reader, std::string(kStateNames[0]) + e.name, e, 0, e.numel, flat.data().narrow(0, e.offset, e.numel));
  ForEachOwnedPiece(flat, [&](const OwnedPiece& p) {
    const FlatEntry& e = *p.entry;
    const int64_t n = p.hi - p.lo;
    if (flat.shards_parameters())
      ReadInto(reader, std::string(kStateNames[0]) + e.name, e, p.lo, p.hi,
               flat.owned_values(p.range).narrow(0, p.at, n));
    if (optim.master().defined())
      ReadInto(reader, std::string(kStateNames[0]) + e.name, e, p.lo, p.hi, optim.master().narrow(0, p.compact, n));
    ReadInto(reader, std::string(kStateNames[1]) + e.name, e, p.lo, p.hi, optim.exp_avg().narrow(0, p.compact, n));
    ReadInto(reader, std::string(kStateNames[2]) + e.name, e, p.lo, p.hi, optim.exp_avg_sq().narrow(0, p.compact, n));
  });
}

namespace {

nlohmann::json StateBytes(const torch::Device& device) {
  auto state = compat::RngState(device).contiguous();
  const uint8_t* p = state.data_ptr<uint8_t>();
  return nlohmann::json(std::vector<uint8_t>(p, p + state.numel()));
}

void SetStateBytes(const torch::Device& device, const nlohmann::json& bytes_json, const char* which) {
  DFAR_CHECK(bytes_json.is_array(), "checkpoint RNG state (", which, ") is malformed");
  const auto bytes = bytes_json.get<std::vector<uint8_t>>();
  auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  compat::SetRngState(device, t);
}

}  // namespace

nlohmann::json CaptureRngState(const torch::Device& device) {
  if (!device.is_cuda()) return StateBytes(torch::kCPU);
  return {{"cpu", StateBytes(torch::kCPU)}, {"cuda", StateBytes(device)}};
}

void RestoreRngState(const nlohmann::json& state, const torch::Device& device) {
  if (state.is_array()) return SetStateBytes(torch::kCPU, state, "cpu");
  DFAR_CHECK(state.is_object() && state.contains("cpu"), "checkpoint RNG state is malformed");
  SetStateBytes(torch::kCPU, state["cpu"], "cpu");
  // A CUDA stream is restored onto a CUDA run only (a CPU resume draws anew).
  if (device.is_cuda() && state.contains("cuda")) SetStateBytes(device, state["cuda"], "cuda");
}

}  // namespace dfar
