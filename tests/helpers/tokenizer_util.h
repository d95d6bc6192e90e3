// A tokenizer that forwards to another but reports a different EOS id, for
// generation tests: -1 hides EOS (Generate then runs max_new_tokens steps,
// as transformers does with eos_token_id=None); another id makes a random
// model's rows stop where they emit it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dfar/data/tokenizer.h"

namespace dfar::testing {

class EosOverride : public Tokenizer {
 public:
  EosOverride(const Tokenizer& inner, int32_t eos) : inner_(inner), eos_(eos) {}
  std::vector<int32_t> Encode(std::string_view text) const override { return inner_.Encode(text); }
  std::string Decode(const std::vector<int32_t>& ids) const override { return inner_.Decode(ids); }
  std::string Piece(int32_t id) const override { return inner_.Piece(id); }
  int64_t vocab_size() const override { return inner_.vocab_size(); }
  int32_t bos_id() const override { return inner_.bos_id(); }
  bool add_bos() const override { return inner_.add_bos(); }
  int32_t eos_id() const override { return eos_; }
  int32_t pad_id() const override { return inner_.pad_id(); }
  std::string kind() const override { return inner_.kind(); }

 private:
  const Tokenizer& inner_;
  int32_t eos_;
};

}  // namespace dfar::testing
