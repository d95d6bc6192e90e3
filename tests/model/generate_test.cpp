// Batched generation (dfar/model/generate.h): rows that finish leave the
// batch, and the decode steps' thread count does not change the tokens.
#include "dfar/model/generate.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "dfar/model/pretrained.h"
#include "helpers/tokenizer_util.h"

namespace dfar {
namespace {

PretrainedModel TinyModel() {
  PretrainedModel m = LoadPretrained(std::string(DFAR_SOURCE_DIR) + "/tests/fixtures/models/tiny-spm");
  m.decoder->eval();
  return m;
}

std::vector<std::vector<int32_t>> Prompts(const Tokenizer& tok) {
  std::vector<std::vector<int32_t>> out;
  for (const char* text : {"The statement is", "Lying to a friend", "It is wrong to steal bread because", "Help"}) {
    std::vector<int32_t> ids;
    if (tok.add_bos()) ids.push_back(tok.bos_id());
    for (int32_t id : tok.Encode(text)) ids.push_back(id);
    out.push_back(ids);
  }
  return out;
}

// Greedy tokens are a function of the prompt only: each row of a batch in
// which other rows stop early (and are dropped from the KV cache) equals
// that prompt generated alone. Greedy argmax is exact; only a near-tie
// between two logits could differ across batch shapes (GEMM rounding of
// ~1e-7 relative), and the random fixture's logits have none at this scale.
TEST(GenerateTest, RowsThatStopEarlyLeaveTheBatchWithoutChangingTheOthers) {
  PretrainedModel m = TinyModel();
  const auto prompts = Prompts(*m.tokenizer);
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.ignore_eos = true;
  // Row 0's fourth token becomes "EOS": every row that emits it stops there.
  const std::vector<int32_t> free0 = Generate(m.decoder, *m.tokenizer, {prompts[0]}, o)[0].ids;
  const int32_t stand_in = free0.at(3);
  const size_t first = static_cast<size_t>(std::find(free0.begin(), free0.end(), stand_in) - free0.begin());
  const testing::EosOverride tok(*m.tokenizer, stand_in);  // Rows stop where they emit it.
  o.ignore_eos = false;
  const auto batch = Generate(m.decoder, tok, prompts, o);
  std::set<size_t> lengths;
  for (size_t r = 0; r < prompts.size(); ++r) {
    const Generation alone = Generate(m.decoder, tok, {prompts[r]}, o)[0];
    EXPECT_EQ(batch[r].ids, alone.ids) << "row " << r;
    EXPECT_EQ(batch[r].stop_reason, alone.stop_reason) << "row " << r;
    lengths.insert(batch[r].ids.size());
  }
  EXPECT_EQ(batch[0].stop_reason, "eos");
  EXPECT_EQ(batch[0].ids.size(), first);
  // The check means something only if rows left the batch at different steps.
  EXPECT_GE(lengths.size(), 2u);
}

// stop_when ends a row at the first token after which it holds, and leaves
// that row's tokens (and the other rows') as a free run would have made them.
TEST(GenerateTest, StopWhenEndsEachRowAtItsFirstMatch) {
  PretrainedModel m = TinyModel();
  const auto prompts = Prompts(*m.tokenizer);
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.ignore_eos = true;
  const auto free = Generate(m.decoder, *m.tokenizer, prompts, o);
  o.stop_when = [](const std::string& text) { return text.size() >= 6; };
  const auto cut = Generate(m.decoder, *m.tokenizer, prompts, o);
  for (size_t r = 0; r < prompts.size(); ++r) {
    size_t n = 0;  // Tokens of the free run until its text first reaches 6 bytes.
    while (n < free[r].ids.size() &&
           m.tokenizer->Decode({free[r].ids.begin(), free[r].ids.begin() + static_cast<int64_t>(n)}).size() < 6)
      ++n;
    const std::vector<int32_t> expected(free[r].ids.begin(), free[r].ids.begin() + static_cast<int64_t>(n));
    EXPECT_EQ(cut[r].ids, expected) << "row " << r;
    const bool reached = m.tokenizer->Decode(expected).size() >= 6;
    EXPECT_EQ(cut[r].stop_reason, reached ? "done" : "length") << "row " << r;
  }
}

TEST(GenerateTest, DecodeThreadCountDoesNotChangeTokensAndIsRestored) {
  PretrainedModel m = TinyModel();
  const auto prompts = Prompts(*m.tokenizer);
  torch::set_num_threads(2);
  GenerationOptions o;
  o.max_new_tokens = 10;
  o.ignore_eos = true;
  o.decode_threads = 1;
  const auto one = Generate(m.decoder, *m.tokenizer, prompts, o);
  EXPECT_EQ(at::get_num_threads(), 2);
  o.decode_threads = 0;  // Timed choice.
  const auto chosen = Generate(m.decoder, *m.tokenizer, prompts, o);
  EXPECT_EQ(at::get_num_threads(), 2);
  for (size_t r = 0; r < prompts.size(); ++r) EXPECT_EQ(one[r].ids, chosen[r].ids) << "row " << r;
}

}  // namespace
}  // namespace dfar
