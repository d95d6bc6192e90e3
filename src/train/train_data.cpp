#include "train_data.h"

#include "dfar/data/dataset.h"
#include "dfar/data/prompt_template.h"

namespace dfar {

TrainingData TokenizeTrainingData(const Config& c, const Tokenizer& tok) {
  auto examples = LoadExamples(c.data.train, c.data);
  auto split = HoldOutValidation(examples, c.data.val_fraction, c.run.seed);
  const auto library = TemplateLibrary::Load(c.prompt.templates_file);
  const PromptTemplate& tmpl = library.Find(c.prompt.template_name);
  const Objective objective = ParseObjective(c.prompt.objective);
  TrainingData d;
  for (const auto& ex : split.train)
    d.train.push_back(Tokenize(tok, Render(tmpl, ex, objective), ex.index, c.prompt.max_seq_len));
  for (const auto& ex : split.val)
    d.val.push_back(Tokenize(tok, Render(tmpl, ex, objective), ex.index, c.prompt.max_seq_len));
  return d;
}

}  // namespace dfar
