#include "dfar/data/sampler.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "dfar/core/error.h"

namespace dfar {

// ---- Rng ------------------------------------------------------------------

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified here,
// so shuffles are identical across compilers, standard libraries and ranks.
uint64_t Rng::Next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t Rng::Below(uint64_t n) {
  DFAR_CHECK(n > 0, "Rng::Below needs n > 0");
  // 2^64 mod n: draws below it would make small results more likely than
  // large ones, so they are rejected (at most half the draws, usually none).
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = Next();
    if (r >= threshold) return r % n;
  }
}

double Rng::Uniform() {
  return static_cast<double>(Next() >> 11) * 0x1.0p-53;
}

void Shuffle(std::vector<int64_t>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.Below(i));
    std::swap(v[i - 1], v[j]);
  }
}

// ---- ShardedSampler -------------------------------------------------------

namespace {

// Each epoch gets an independent stream; hashing the epoch first keeps
// (seed, epoch) and (seed + 1, epoch - 1) from sharing a stream.
uint64_t EpochSeed(uint64_t seed, int64_t epoch) {
  Rng epoch_hash(static_cast<uint64_t>(epoch) ^ 0xD1B54A32D192ED03ULL);
  return seed ^ epoch_hash.Next();
}

// Sorting inside windows keeps batches of similar length (less padding) while
// the order of windows, and of batches later, stays random.
void GroupByLength(std::vector<int64_t>& order, const std::vector<int64_t>& lengths, int64_t window) {
  for (size_t begin = 0; begin < order.size(); begin += static_cast<size_t>(window)) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(window));
    std::stable_sort(order.begin() + begin, order.begin() + end,
                     [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  }
}

// Cuts `order` into batches of `size`. The tail is dropped, or filled by
// cycling from the start of `order` (several times when order < size).
std::vector<std::vector<int64_t>> Cut(const std::vector<int64_t>& order, size_t size, bool wrap) {
  std::vector<std::vector<int64_t>> batches;
  const size_t full = order.size() / size;
  const size_t count = wrap ? (order.size() + size - 1) / size : full;
  for (size_t b = 0; b < count; ++b) {
    std::vector<int64_t> batch(size);
    for (size_t k = 0; k < size; ++k) batch[k] = order[(b * size + k) % order.size()];
    batches.push_back(std::move(batch));
  }
  return batches;
}

}  // namespace

std::string BatchGeometry::Text() const {
  return "world " + std::to_string(world) + " x sampler.micro_batch " + std::to_string(micro_batch) +
         " x train.grad_accum " + std::to_string(grad_accum) + " = " + std::to_string(global());
}

ShardedSampler::ShardedSampler(std::vector<int64_t> lengths, int rank, int world, const SamplerConfig& config,
                               uint64_t seed, int64_t grad_accum)
    : lengths_(std::move(lengths)),
      rank_(rank),
      world_(world),
      config_(config),
      geometry_{static_cast<int64_t>(world), config.micro_batch, grad_accum},
      seed_(seed) {
  DFAR_CHECK(grad_accum >= 1, "train.grad_accum must be >= 1, got ", grad_accum);
  // A length-grouping window smaller than a step's batch would not group it.
  config_.group_window = std::max(config_.group_window, geometry_.per_rank());
  DFAR_CHECK(world_ >= 1 && rank_ >= 0 && rank_ < world_, "sampler: rank ", rank_, " is not in [0, world ", world_,
             ")");
  DFAR_CHECK(config_.micro_batch >= 1, "sampler.micro_batch must be >= 1, got ", config_.micro_batch);
  DFAR_CHECK(config_.remainder == "drop" || config_.remainder == "wrap",
             "sampler.remainder must be drop or wrap, got '", config_.remainder, "'");
  DFAR_CHECK(!config_.group_by_length || config_.group_window >= 1, "sampler.group_window must be >= 1, got ",
             config_.group_window);
  DFAR_CHECK(batches_per_epoch() > 0, "sampler: ", lengths_.size(), " examples do not fill one global batch of ",
             geometry_.Text(), lengths_.empty() ? "" : "; use sampler.remainder=wrap or a smaller micro_batch");
}

int64_t ShardedSampler::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(lengths_.size());
  const int64_t global = geometry_.global();
  if (n == 0) return 0;
  return config_.remainder == "wrap" ? (n + global - 1) / global : n / global;
}

std::vector<std::vector<int64_t>> ShardedSampler::GlobalBatches(int64_t epoch) const {
  Rng rng(EpochSeed(seed_, epoch));
  std::vector<int64_t> order(lengths_.size());
  std::iota(order.begin(), order.end(), 0);
  Shuffle(order, rng);
  if (config_.group_by_length) GroupByLength(order, lengths_, config_.group_window);
  const size_t global = static_cast<size_t>(geometry_.global());
  std::vector<std::vector<int64_t>> batches = Cut(order, global, config_.remainder == "wrap");
  // Grouping leaves long batches first; a shuffled batch order keeps the
  // loss curve free of a length trend across the epoch.
  std::vector<int64_t> batch_order(batches.size());
  std::iota(batch_order.begin(), batch_order.end(), 0);
  Shuffle(batch_order, rng);
  std::vector<std::vector<int64_t>> shuffled;
  shuffled.reserve(batches.size());
  for (int64_t b : batch_order) shuffled.push_back(std::move(batches[b]));
  return shuffled;
}

std::vector<std::vector<int64_t>> ShardedSampler::EpochBatches(int64_t epoch) const {
  DFAR_CHECK(epoch >= 0, "sampler: epoch must be >= 0, got ", epoch);
  const auto begin = static_cast<std::ptrdiff_t>(rank_ * geometry_.per_rank());
  const auto end = begin + static_cast<std::ptrdiff_t>(geometry_.per_rank());
  std::vector<std::vector<int64_t>> mine;
  for (const std::vector<int64_t>& global : GlobalBatches(epoch)) {
    mine.emplace_back(global.begin() + begin, global.begin() + end);
  }
  return mine;
}

std::vector<int64_t> ShardedSampler::Next() {
  if (cached_epoch_ != cursor_.epoch) {
    cached_ = EpochBatches(cursor_.epoch);
    cached_epoch_ = cursor_.epoch;
  }
  std::vector<int64_t> batch = cached_[static_cast<size_t>(cursor_.step)];
  // Roll over eagerly so that a saved cursor never points past an epoch's end.
  if (++cursor_.step == batches_per_epoch()) {
    ++cursor_.epoch;
    cursor_.step = 0;
  }
  return batch;
}

void ShardedSampler::Seek(const SamplerCursor& cursor) {
  DFAR_CHECK(cursor.epoch >= 0 && cursor.step >= 0 && cursor.step < batches_per_epoch(), "sampler: cannot seek to ",
             "epoch ", cursor.epoch, " step ", cursor.step, "; an epoch has ", batches_per_epoch(),
             " micro-batches (was the checkpoint made with another world size, batch or dataset?)");
  cursor_ = cursor;
}

// ---- EvalShard ------------------------------------------------------------

Range EvalShard(int64_t count, int rank, int world) {
  DFAR_CHECK(world >= 1 && rank >= 0 && rank < world, "eval shard: rank ", rank, " is not in [0, world ", world, ")");
  DFAR_CHECK(count >= 0, "eval shard: count must be >= 0, got ", count);
  // The first `extra` ranks take one more, so sizes differ by at most one.
  const int64_t base = count / world;
  const int64_t extra = count % world;
  Range range;
  range.begin = rank * base + std::min<int64_t>(rank, extra);
  range.end = range.begin + base + (rank < extra ? 1 : 0);
  return range;
}

}  // namespace dfar
