// Reason judging: reads every generated reason with a sentence encoder
// (dfar/model/sentence_encoder.h, all-MiniLM-L6-v2 by default).
//
// Owns two per-example judgments, filled into ExampleResult:
// - similarity: the cosine between the embeddings of the generated reason
//   and the example's human reason (0 when the generated reason is empty).
// - the automatic misalignment rule (a stand-in for the paper's human MAR):
//   reason_label is the majority label of the generated reason's k nearest
//   human reasons (cosine) in a labelled bank (eval.mar_bank, default the
//   DFAR train file; eval.mar_bank_limit keeps N of them spread evenly over
//   the file), ties broken by the nearest; the reason is misaligned
//   when that label differs from the gold label, or when it is empty. The
//   same rule applied to the human reason (human_reason_label) measures the
//   rule's own ceiling: how often it agrees with gold on reasons that are
//   right by construction.
// The bank's embeddings are computed once (each rank a shard, gathered) and
// cached beside the encoder, keyed by the bank file's size, mtime and the
// data mapping.
// Failure: dfar::Error naming eval.encoder or eval.mar_bank when the encoder
// or bank is missing or unusable.
// Thread-safety: Make is collective over `comm`; Judge is local.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "dfar/comm/communicator.h"
#include "dfar/core/config.h"
#include "dfar/eval/results.h"
#include "dfar/model/sentence_encoder.h"

namespace dfar {

class ReasonJudge {
 public:
  // Collective. Null when judging is off (eval.encoder empty, likelihood
  // mode) or the data has no human reasons.
  static std::unique_ptr<ReasonJudge> Make(const Config& config, bool data_has_reasons, Communicator& comm);

  // Judges this rank's results (not collective).
  void Judge(std::vector<ExampleResult>& results) const;

  // The label of each reason by the k-nearest rule, from its embeddings [n, d].
  std::vector<int> NearestLabels(const torch::Tensor& embeddings) const;

  ReasonJudge(SentenceEncoder encoder, torch::Tensor bank, std::vector<int> bank_labels, int64_t k);

 private:
  SentenceEncoder encoder_;
  torch::Tensor bank_;  // [m, d], unit rows.
  std::vector<int> bank_labels_;
  int64_t k_;
};

// The k-nearest majority rule on plain tensors (unit rows): for each query
// row, the majority label among its k most cosine-similar bank rows; a tie
// goes to the label of the single nearest. Exposed for tests.
std::vector<int> MajorityOfNearest(const torch::Tensor& queries, const torch::Tensor& bank,
                                   const std::vector<int>& bank_labels, int64_t k);

}  // namespace dfar
