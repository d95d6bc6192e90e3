#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build on its seed corpus.
#   bash fuzz/run.sh BUILD_DIR SECONDS RUNS [TARGET...]
# Each target runs until SECONDS or RUNS executions, whichever comes first.
# New inputs go to BUILD_DIR/fuzz-corpus/<target> (the committed seeds in
# fuzz/corpus stay as they are); crashes to BUILD_DIR/fuzz-artifacts/.
# Prints and writes BUILD_DIR/fuzz-results.tsv (target, status, executions,
# seconds, exec/s, corpus size); exits non-zero if any target found a crash,
# a leak, an uncaught exception, a timeout or an allocation over the limit.
set -u
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS RUNS [TARGET...]}
seconds=${2:-300}
runs=${3:-1000000}
shift 3 || shift $#
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_csv fuzz_config fuzz_safetensors fuzz_gguf fuzz_ckpt_index)
root=$(cd "$(dirname "$0")/.." && pwd)
results="$build/fuzz-results.tsv"
mkdir -p "$build/fuzz-artifacts"
printf 'target\tstatus\texecutions\tseconds\texec_per_s\tcorpus\n' > "$results"
failed=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in "${targets[@]}"; do
  bin="$build/bin/$t"
  [ -x "$bin" ] || { echo "fuzz: $bin is not built"; failed=1; continue; }
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  log="$build/fuzz-$t.log"
  echo "fuzz: $t for up to ${seconds}s / $runs runs (log: $log)"
  start=$(date +%s)
  "$bin" "$work" "$root/fuzz/corpus/$t" -runs="$runs" -max_total_time="$seconds" -timeout=25 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/$t-" > "$log" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  status=ok
  if [ $rc -ne 0 ]; then
    status="FAILED(rc=$rc)"
    failed=1
    grep -m3 -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error|terminate called|==[0-9]+==' "$log"
    ls "$build"/fuzz-artifacts/"$t"-* 2>/dev/null
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$status" "${execs:-?}" "$elapsed" "${rate:-?}" "$corpus" >> "$results"
done
column -t -s $'\t' "$results" 2>/dev/null || cat "$results"
exit $failed
