#!/usr/bin/env bash
# The foundation's acceptance commands, end to end through build/bin/dfar.
source "$(dirname "$0")/lib.sh"

expect_ok stats-train "$DFAR" data stats --data "$SHARED/data/dfar/DFAR_trainset.csv"
contains stats-train "rows:                 4500"
contains stats-train "ethical (label 0):    2588"
contains stats-train "unethical (label 1):  1912"

expect_ok stats-test "$DFAR" data stats --data "$SHARED/data/dfar/DFAR_testset.csv"
contains stats-test "rows:                 500"

expect_ok stats-ethos "$DFAR" data stats --config configs/eval-ethos.yaml --data "$SHARED/data/ethos/Ethos_Dataset_Binary.csv"
contains stats-ethos "unethical (label 1):  433"

printf 'Statement,Label,Reason\nfine,0,ok\n"broken,1,never closed\nmore,0,text\n' > "$TMP/unterminated.csv"
expect_error unterminated "$DFAR" data stats --data "$TMP/unterminated.csv"
contains unterminated "unterminated.csv:3"

expect_error missing-file "$DFAR" data stats --data "$TMP/nope.csv"
contains missing-file "nope.csv"

expect_ok preview-lr "$DFAR" data preview --data "$SHARED/data/dfar/DFAR_testset.csv" --objective lr --n 1
contains preview-lr "### Question: Evaluate whether the statement is ethical or unethical with reason."
contains preview-lr "⟦"
expect_ok preview-l "$DFAR" data preview --data "$SHARED/data/dfar/DFAR_testset.csv" --objective l --n 1
case "$out" in
  *"⟦ethical<eos>⟧"* | *"⟦unethical<eos>⟧"* | *"⟦ ethical<eos>⟧"* | *"⟦ unethical<eos>⟧"*) ;;
  *) fail "preview-l: objective l must supervise only the label"$'\n'"$out" ;;
esac

expect_ok preview-tokens "$DFAR" data preview --data "$SHARED/data/dfar/DFAR_testset.csv" --objective l --n 1 \
  --tokenizer tests/fixtures/spm/tokenizer.model
contains preview-tokens "supervised"

expect_ok config-show "$DFAR" config show configs/dfar-lr.yaml train.lr=1e-3
contains config-show "lr: 0.001"
expect_ok config-override "$DFAR" config show configs/dfar-lr.yaml run.seed=77
contains config-override "seed: 77"

printf 'run:\n  seed: 1\n  bogus_key: 2\n' > "$TMP/bad.yaml"
expect_error config-unknown "$DFAR" config show "$TMP/bad.yaml"
contains config-unknown "bad.yaml:3"
contains config-unknown "run.bogus_key"

expect_error bad-override "$DFAR" config show configs/dfar-lr.yaml run.sed=1
contains bad-override "run.sed"

expect_ok version "$DFAR" version
contains version "dfar "

finish
