#!/usr/bin/env bash
# Fails if any tracked C++ file differs from what .clang-format produces.
set -u
clang_format=${1:-clang-format}
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cpp' '*.h' 2>/dev/null)
[ -z "$files" ] && files=$(find src include tests benchmarks -name '*.cpp' -o -name '*.h' 2>/dev/null)
bad=0
for f in $files; do
  if ! "$clang_format" --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f (run: make format)"
    bad=1
  fi
done
[ $bad -eq 0 ] && echo "all C++ files match .clang-format"
exit $bad
