#!/usr/bin/env bash
# Only src/core/logging.cpp includes spdlog, and no dfar file includes fmt.
# Files that include torch headers see the fmt that libtorch ships (fmt 12 in
# the 2.x pip wheel), which does not match the fmt 9 that Debian's spdlog was
# built against; every other file logs through dfar/core/logging.h, which
# includes neither (see that header). Also: `dfar version` runs and reports
# the libtorch that was loaded as the one the headers came from.
# shellcheck disable=SC2154
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)

mapfile -t offenders < <(cd "$root" && grep -rlE '^\s*#\s*include\s*[<"](spdlog|fmt)/|\b(spdlog|fmt)::' \
  src include tests benchmarks fuzz --include='*.cpp' --include='*.h' --include='*.cc' | grep -v '^src/core/logging.cpp$')
[ ${#offenders[@]} -eq 0 ] || fail "spdlog or fmt used outside src/core/logging.cpp: ${offenders[*]}"

expect_ok version "$DFAR" version
contains version "libtorch "
case "$out" in *MISMATCH*) fail "version: another libtorch was loaded than the headers'"$'\n'"$out" ;; esac

finish
