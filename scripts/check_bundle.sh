#!/usr/bin/env bash
# Checks a GPU bundle (scripts/gpu_bundle.sh) as the GPU host will see it:
#   - at most 64 MiB in all (the device tool's carry limit), no symbolic links;
#   - every ELF in it (binaries, libraries, Open MPI plugins) resolves each
#     library it needs, with LD_LIBRARY_PATH limited to the bundle's lib/,
#     torch's lib/ and the nvidia-* wheels' lib/ folders, to a file inside
#     one of those or to glibc. ldd also searches this machine's system
#     folders, which the GPU host does not have: a library found there counts
#     as missing. The one exception is libcuda.so.1, the driver, which only a
#     GPU host has. glibc and the C++ runtime (libstdc++, libgcc_s) come from
#     the host's system, as they do for its torch.
# Prints the newest glibc and libstdc++ symbol versions that the bundle needs
# (the GPU host's must be at least those) and exits 1 naming every problem.
#
# Usage: scripts/check_bundle.sh BUNDLE TORCH_LIB_DIR NVIDIA_DIR
set -euo pipefail

BUNDLE=$(cd "${1:?usage: check_bundle.sh BUNDLE TORCH_LIB_DIR NVIDIA_DIR}" && pwd)
TORCH_LIB=$(realpath -m "${2:?usage: check_bundle.sh BUNDLE TORCH_LIB_DIR NVIDIA_DIR}")
NVIDIA=$(realpath -m "${3:?usage: check_bundle.sh BUNDLE TORCH_LIB_DIR NVIDIA_DIR}")
LIMIT_BYTES=$((64 * 1024 * 1024))
problems=()

bytes=$(find "$BUNDLE" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
[ "$bytes" -le "$LIMIT_BYTES" ] ||
  problems+=("size: $bytes bytes ($((bytes / 1024 / 1024)) MiB) is over the 64 MiB limit")
while IFS= read -r link; do problems+=("symbolic link (not carried): $link"); done < <(find "$BUNDLE" -type l)

nvidia_libs=$(find "$NVIDIA" -mindepth 2 -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')
search="$BUNDLE/lib:$TORCH_LIB:$nvidia_libs"

# shellcheck source=scripts/gpu_check/host_libs.sh
. "$(dirname "${BASH_SOURCE[0]}")/gpu_check/host_libs.sh"

inside_allowed() {
  case "$1" in
    "$BUNDLE"/* | "$TORCH_LIB"/* | "$NVIDIA"/*) return 0 ;;
  esac
  return 1
}

elves=0
newest_glibc=""
newest_glibcxx=""
# newer OLD NEW: prints whichever version sorts last.
newer() { printf '%s\n%s\n' "$1" "$2" | sed '/^$/d' | sort -V | tail -1; }
while IFS= read -r -d '' f; do
  head -c 4 "$f" | grep -q $'\x7fELF' || continue
  elves=$((elves + 1))
  rel=${f#"$BUNDLE"/}
  if ! listing=$(LD_LIBRARY_PATH="$search" ldd "$f" 2>&1); then
    case "$listing" in *"not a dynamic executable"*) continue ;; esac
    problems+=("$rel: ldd failed: $listing")
    continue
  fi
  while read -r name arrow path _; do
    if [ "$arrow" != "=>" ]; then
      # "/lib64/ld-linux-x86-64.so.2 (0x...)" and "linux-vdso.so.1 (0x...)"
      continue
    fi
    if [ "$path" = "not" ]; then
      [ "$name" = "libcuda.so.1" ] || problems+=("$rel: needs $name, which is not found")
    elif ! system_library "$name" && ! inside_allowed "$path" && ! inside_allowed "$(realpath -m "$path")"; then
      problems+=("$rel: needs $name, found only outside the bundle, torch and the nvidia wheels ($path)")
    fi
  done <<<"$listing"
  symbols=$(objdump -T "$f" 2>/dev/null || true)
  newest_glibc=$(newer "$newest_glibc" "$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$symbols" | sort -uV | tail -1)")
  newest_glibcxx=$(newer "$newest_glibcxx" "$(grep -o 'GLIBCXX_[0-9][0-9.]*' <<<"$symbols" | sort -uV | tail -1)")
done < <(find "$BUNDLE" -type f -print0)

if [ ${#problems[@]} -gt 0 ]; then
  printf 'check_bundle.sh: %s\n' "${problems[@]}" >&2
  echo "check_bundle.sh: $BUNDLE FAILED (${#problems[@]} problem(s))" >&2
  exit 1
fi
echo "check_bundle.sh: $BUNDLE ok: $elves ELF files resolve inside the bundle, torch and the nvidia wheels;" \
  "$((bytes / 1024 / 1024)) MiB of 64; the host needs glibc >= ${newest_glibc#GLIBC_} and libstdc++ with" \
  "$newest_glibcxx"
