// Deterministic sharded sampling for training, and exactly-once eval shards.
//
// Owns: which example indices a rank sees, in which micro-batches, in which
// order; and a resumable cursor.
//
// Training: each epoch draws a permutation from (seed, epoch). With length
// grouping, windows of `group_window` examples are sorted by length. The
// sequence is cut into global batches of world*micro_batch examples, global
// batch order is shuffled, and rank r takes slice [r*B, (r+1)*B) of each.
// With gradient accumulation a rank takes micro_batch x grad_accum examples
// per optimizer step (the trainer splits them into micro-batches), and the
// global batch is world x micro_batch x grad_accum (BatchGeometry, the one
// place that computes it).
// The global batches depend on that product only, so N ranks x batch B
// see exactly the examples that 1 rank x batch N*B sees. Shards are disjoint
// and equal in size: the remainder is dropped or wrapped (from the epoch's
// start), per SamplerConfig::remainder.
//
// Thread-safety: a sampler belongs to one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dfar/core/config.h"

namespace dfar {

// The batch sizes of one optimizer step, as the user set them.
struct BatchGeometry {
  int64_t world = 1, micro_batch = 1, grad_accum = 1;
  int64_t per_rank() const { return micro_batch * grad_accum; }  // Examples per rank per optimizer step.
  int64_t global() const { return world * per_rank(); }          // Examples per optimizer step.
  // "world 2 x sampler.micro_batch 4 x train.grad_accum 1 = 8".
  std::string Text() const;
};

struct SamplerCursor {
  int64_t epoch = 0;
  int64_t step = 0;  // Micro-batches this rank has taken in `epoch`.
  bool operator==(const SamplerCursor& o) const { return epoch == o.epoch && step == o.step; }
};

class ShardedSampler {
 public:
  // lengths[i]: token length of example i (used for grouping only).
  // `grad_accum` micro-batches make one optimizer step.
  ShardedSampler(std::vector<int64_t> lengths, int rank, int world, const SamplerConfig& config, uint64_t seed,
                 int64_t grad_accum = 1);

  // This rank's batches of `epoch` (one per optimizer step: micro_batch x
  // grad_accum example indices each).
  std::vector<std::vector<int64_t>> EpochBatches(int64_t epoch) const;
  int64_t batches_per_epoch() const;

  // The next step's batch; advances the cursor (rolling over epochs).
  std::vector<int64_t> Next();
  SamplerCursor cursor() const { return cursor_; }
  void Seek(const SamplerCursor& cursor);

 private:
  std::vector<std::vector<int64_t>> GlobalBatches(int64_t epoch) const;

  std::vector<int64_t> lengths_;
  int rank_;
  int world_;
  SamplerConfig config_;
  BatchGeometry geometry_;
  uint64_t seed_;
  SamplerCursor cursor_;
  std::vector<std::vector<int64_t>> cached_;  // Batches of cached_epoch_.
  int64_t cached_epoch_ = -1;
};

// Eval: contiguous, exactly-once ranges. Rank r of `world` gets [begin, end)
// with sizes differing by at most one; no padding, no duplicates.
struct Range {
  int64_t begin = 0;
  int64_t end = 0;
};
Range EvalShard(int64_t count, int rank, int world);

// SplitMix64-seeded generator used by every dfar shuffle, so results do not
// depend on the standard library's distribution implementations.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  uint64_t Below(uint64_t n);  // Uniform in [0, n), n > 0.
  double Uniform();            // [0, 1).
  uint64_t state() const { return state_; }

 private:
  uint64_t state_;
};

void Shuffle(std::vector<int64_t>& v, Rng& rng);

}  // namespace dfar
