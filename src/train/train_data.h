// The training run's examples, tokenised (internal to src/train): the
// train CSV after data.limit / data.subset, split into train and
// validation (data.val_fraction), rendered with the configured template and
// objective, and tokenised through the one prompt recipe (collate.h).
#pragma once

#include <vector>

#include "dfar/core/config.h"
#include "dfar/data/collate.h"
#include "dfar/data/tokenizer.h"

namespace dfar {

struct TrainingData {
  std::vector<TokenizedExample> train, val;
};

TrainingData TokenizeTrainingData(const Config& config, const Tokenizer& tok);

}  // namespace dfar
