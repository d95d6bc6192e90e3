# Helpers for CLI tests: sourced, not run. Each check prints what failed.
set -u
DFAR=${1:?usage: test.sh path/to/dfar}
SHARED=${DFAR_SHARED:-../shared}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# expect_ok NAME CMD...: runs CMD, stores stdout+stderr in $out, fails on non-zero exit.
expect_ok() {
  local name=$1
  shift
  if ! out=$("$@" 2>&1); then fail "$name: exit $? from: $*"$'\n'"$out"; fi
}

# expect_error NAME CMD...: the command must exit non-zero; output in $out.
expect_error() {
  local name=$1
  shift
  if out=$("$@" 2>&1); then fail "$name: expected a non-zero exit from: $*"; fi
}

# contains NAME TEXT: $out must contain TEXT.
contains() {
  case "$out" in
    *"$2"*) ;;
    *) fail "$1: output lacks '$2'"$'\n'"--- output:"$'\n'"$out" ;;
  esac
}

finish() {
  if [ "$failures" -eq 0 ]; then
    echo "all checks passed"
    exit 0
  fi
  echo "$failures check(s) failed"
  exit 1
}
