#!/usr/bin/env bash
# Builds the GPU bundle: everything that scripts/gpu_check.sh needs on a GPU
# host that has torch 2.11 + CUDA 13 but no Debian -dev packages, no network
# and no ../shared. Made here, from a build against the torch 2.11 wheel
# (make gpu-bundle), carried there as one ignored folder.
#
#   bin/       dfar, the test binaries, bench_step (stripped)
#   lib/       libdfar_spm.so and the ldd closure of every bundled ELF,
#              except torch's own libraries, CUDA's, glibc's and the C++
#              runtime (libstdc++, libgcc_s): the host's torch, its nvidia-*
#              wheels and its system provide those. The host's libstdc++
#              must be GCC 12's or newer (GLIBCXX_3.4.30; the GPU hosts run
#              Ubuntu 24.04's, GCC 14); a bundled GCC 12 one would have
#              needed glibc 2.36 and replaced the host's newer one for torch
#   ompi/      Open MPI's helper binaries (mpirun, orted), MCA plugins and
#              help files in its install layout, relocated by OPAL_PREFIX;
#              without the plugins for InfiniBand, OFI, PSM, UCX and
#              OpenSHMEM (and their libraries, ~15 MiB): on a GPU host MPI
#              only starts ranks and bootstraps NCCL, over shared memory
#              and TCP (btl self, vader, tcp; pml ob1)
#   assets/    llama-1b/ (config + SmolLM2's tokenizer, for model.init
#              random) and small DFAR samples (data/*.csv)
#   env.sh     sourced on the host: LD_LIBRARY_PATH, OPAL_PREFIX, PATH
#   MANIFEST   every file with its size
#
# The bundle is written to OUT.tmp and renamed when complete and checked
# (scripts/check_bundle.sh: at most 64 MiB, no library missing).
# Symbolic links are resolved into files: the device tool carries no links.
#
# Usage: scripts/gpu_bundle.sh BUILD_DIR OUT_DIR
# Env:   DFAR_SHARED  the shared folder with data/dfar (default: ../shared)
set -euo pipefail

BUILD=${1:?usage: gpu_bundle.sh BUILD_DIR OUT_DIR}
OUT=${2:?usage: gpu_bundle.sh BUILD_DIR OUT_DIR}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED=${DFAR_SHARED:-$REPO/../shared}
GGUF=${DFAR_BUNDLE_TOKENIZER_GGUF:-$REPO/.cache/models/smollm2-135m-instruct.gguf}
# MCA components left out (see the header): fabrics that a one-node GPU host
# does not use, and OpenSHMEM's frameworks.
MCA_LEFT_OUT='^mca_(btl_(ofi|openib|usnic|uct)|mtl_.*|pml_(ucx|cm|yalla)|osc_ucx|atomic_.*|memheap_.*|scoll_.*|spml_.*|sshmem_.*)\.so$'
OMPI_PKGLIBDIR=$(ompi_info --path pkglibdir --parsable 2>/dev/null | sed -n 's/^path:pkglibdir://p')
OMPI_PREFIX=$(ompi_info --path prefix --parsable 2>/dev/null | sed -n 's/^path:prefix://p')
OMPI_PKGDATADIR=$(ompi_info --path pkgdatadir --parsable 2>/dev/null | sed -n 's/^path:pkgdatadir://p')

die() {
  echo "gpu_bundle.sh: $*" >&2
  exit 1
}
[ -x "$BUILD/bin/dfar" ] || die "$BUILD/bin/dfar is missing: build the torch 2.11 tree first (make gpu-bundle does)"
grep -q '^#define DFAR_TORCH_CUDA_TEXT "ON"' "$BUILD/generated/dfar/build_info.h" ||
  die "$BUILD was not built against a libtorch with CUDA (see $BUILD/generated/dfar/build_info.h)"
if [ -z "$OMPI_PKGLIBDIR" ] || [ ! -d "$OMPI_PKGLIBDIR" ]; then die "cannot find the plugin directory of Open MPI (ompi_info)"; fi
[ -s "$GGUF" ] || die "$GGUF is missing: run make deps (its tokenizer goes into the bundle)"
for f in "$SHARED/data/dfar/DFAR_trainset.csv" "$SHARED/data/dfar/DFAR_testset.csv"; do
  [ -s "$f" ] || die "$f is missing (set DFAR_SHARED)"
done
TORCH_LIB=$(sed -n 's/^DFAR_TORCH_LIB_DIR:INTERNAL=//p; s/^DFAR_TORCH_LIB_DIR:[A-Z]*=//p' "$BUILD/CMakeCache.txt" | head -1)
[ -d "$TORCH_LIB" ] || die "cannot read the torch lib dir from $BUILD/CMakeCache.txt"
SITE=$(dirname "$(dirname "$TORCH_LIB")")

TMP="$OUT.tmp"
rm -rf "$TMP"
mkdir -p "$TMP/bin" "$TMP/lib" "$TMP/ompi/bin" "$TMP/assets/data" "$TMP/assets/llama-1b"

# -- binaries ---------------------------------------------------------------
binaries=(dfar bench_step)
for t in "$BUILD"/bin/*test*; do binaries+=("$(basename "$t")"); done
for b in "${binaries[@]}"; do
  cp -L "$BUILD/bin/$b" "$TMP/bin/$b"
done
cp -L "$BUILD/lib/libdfar_spm.so" "$TMP/lib/"

# Open MPI in its own layout under ompi/: OPAL_PREFIX=<bundle>/ompi maps
# prefix-relative paths (plugins, help files, orted) there.
rel_pkglib=${OMPI_PKGLIBDIR#"$OMPI_PREFIX"/}
rel_pkgdata=${OMPI_PKGDATADIR#"$OMPI_PREFIX"/}
mkdir -p "$TMP/ompi/$rel_pkglib" "$TMP/ompi/$rel_pkgdata"
for plugin in "$OMPI_PKGLIBDIR"/*.so; do
  [[ "$(basename "$plugin")" =~ $MCA_LEFT_OUT ]] || cp -L "$plugin" "$TMP/ompi/$rel_pkglib/"
done
cp -rL "$OMPI_PKGDATADIR"/. "$TMP/ompi/$rel_pkgdata/"
for tool in orterun orted ompi_info; do
  path=$(command -v "$tool") || die "Open MPI's $tool is not on PATH"
  cp -L "$path" "$TMP/ompi/bin/$tool"
done
cp -L "$TMP/ompi/bin/orterun" "$TMP/ompi/bin/mpirun"
if [ -f /etc/openmpi/openmpi-mca-params.conf ]; then
  mkdir -p "$TMP/ompi/etc"
  cp -L /etc/openmpi/openmpi-mca-params.conf "$TMP/ompi/etc/"
fi

strip --strip-unneeded "$TMP"/bin/* "$TMP"/ompi/bin/* "$TMP/lib/libdfar_spm.so" 2>/dev/null || true

# -- the library closure ----------------------------------------------------
# shellcheck source=scripts/gpu_check/host_libs.sh
. "$REPO/scripts/gpu_check/host_libs.sh"
# Provided on the GPU host, never bundled: torch's lib/, the nvidia-* wheels,
# the CUDA toolkit's and driver's libraries, and glibc.
provided_by_host() {
  local name=$1 path=$2
  case "$path" in
    "$TORCH_LIB"/* | "$SITE"/nvidia/* | /usr/local/cuda*) return 0 ;;
  esac
  case "$name" in
    libcuda.so.* | libnvidia-*.so.* | libcudart.so.* | libnccl.so.* | libcublas*.so.* | libnvrtc*.so.* | \
      libcupti.so.* | libcufft*.so.* | libcurand.so.* | libcusparse*.so.* | libcusolver*.so.* | libnvJitLink.so.* | \
      libnvToolsExt.so.* | libcudnn*.so.* | libcufile*.so.* | libnvshmem*.so.*) return 0 ;;
  esac
  system_library "$name"
}

elf_files() {
  find "$TMP/bin" "$TMP/lib" "$TMP/ompi" -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
    while IFS= read -r -d '' f; do
      if head -c 4 "$f" | grep -q $'\x7fELF'; then printf '%s\n' "$f"; fi
    done
}

declare -A bundled=()
for f in "$TMP"/lib/*; do bundled[$(basename "$f")]=1; done
while :; do
  added=0
  while IFS= read -r elf; do
    while read -r name arrow path _; do
      [ "$arrow" = "=>" ] || continue
      [ -n "${bundled[$name]:-}" ] && continue
      [ "$path" = "not" ] && continue # reported by check_bundle.sh
      provided_by_host "$name" "$path" && continue
      cp -L "$path" "$TMP/lib/$name"
      bundled[$name]=1
      added=1
    done < <(LD_LIBRARY_PATH="$TMP/lib:$TORCH_LIB" ldd "$elf" 2>/dev/null || true)
  done < <(elf_files)
  [ "$added" -eq 1 ] || break
done
strip --strip-unneeded "$TMP"/lib/*.so* 2>/dev/null || true

# -- assets -----------------------------------------------------------------
"$BUILD/bin/dfar" tokenizer export --model "$GGUF" --out "$TMP/assets/llama-1b" >/dev/null
cp "$REPO/scripts/gpu_check/llama-1b.json" "$TMP/assets/llama-1b/config.json"
# Small DFAR samples (MIT): the host has no ../shared. Not committed.
head -n 257 "$SHARED/data/dfar/DFAR_trainset.csv" >"$TMP/assets/data/DFAR_trainset.csv"
head -n 65 "$SHARED/data/dfar/DFAR_testset.csv" >"$TMP/assets/data/DFAR_testset.csv"

cat >"$TMP/env.sh" <<'ENV'
# Source on the GPU host: `. .gpu/env.sh`. Finds the torch that the bundle
# was built against (the version in TORCH_VERSION): DFAR_TORCH_DIR (the
# torch package folder) if set, else python3's torch, else the one the
# bundle was built with if it exists (the dry run on the build machine, whose
# python3 may hold another torch). Puts the bundle, torch's lib/ and the
# nvidia-* wheels' lib/ folders on the library path.
DFAR_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dfar_want=$(cat "$DFAR_BUNDLE/TORCH_VERSION")
dfar_tried=""
for dfar_candidate in "${DFAR_TORCH_DIR:-}" \
  "$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)" \
  "$(cat "$DFAR_BUNDLE/BUILD_TORCH_DIR")"; do
  [ -n "$dfar_candidate" ] && [ -f "$dfar_candidate/version.py" ] || continue
  dfar_have=$(sed -n "s/^__version__ = '\([^'+]*\).*/\1/p" "$dfar_candidate/version.py")
  dfar_tried="$dfar_tried $dfar_candidate ($dfar_have)"
  if [ "$dfar_have" = "$dfar_want" ]; then
    DFAR_TORCH_DIR=$dfar_candidate
    break
  fi
  dfar_candidate=""
done
if [ -z "$dfar_candidate" ]; then
  echo "env.sh: no torch $dfar_want found (tried:${dfar_tried:- none}); set DFAR_TORCH_DIR to its package folder" >&2
  return 1 2>/dev/null || exit 1
fi
dfar_nvidia_libs=$(find "$(dirname "$DFAR_TORCH_DIR")/nvidia" -mindepth 2 -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')
export DFAR_BUNDLE DFAR_TORCH_DIR
export LD_LIBRARY_PATH="$DFAR_BUNDLE/lib:$DFAR_TORCH_DIR/lib:${dfar_nvidia_libs}${LD_LIBRARY_PATH:-}"
export OPAL_PREFIX="$DFAR_BUNDLE/ompi"
export PATH="$DFAR_BUNDLE/bin:$DFAR_BUNDLE/ompi/bin:$PATH"
export DFAR_SPM_SHIM="$DFAR_BUNDLE/lib/libdfar_spm.so"
export OMPI_MCA_ess_singleton_isolated=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset dfar_nvidia_libs dfar_want dfar_tried dfar_candidate dfar_have
ENV

git -C "$REPO" rev-parse HEAD >"$TMP/COMMIT" 2>/dev/null || echo unknown >"$TMP/COMMIT"
dirname "$TORCH_LIB" >"$TMP/BUILD_TORCH_DIR"
sed -n "s/^__version__ = '\([^'+]*\).*/\1/p" "$(dirname "$TORCH_LIB")/version.py" >"$TMP/TORCH_VERSION"
[ -s "$TMP/TORCH_VERSION" ] || die "cannot read __version__ from $(dirname "$TORCH_LIB")/version.py"
(cd "$TMP" && find . -type f -printf '%s %P\n' | sort -k2 >MANIFEST)

check=$(bash "$REPO/scripts/check_bundle.sh" "$TMP" "$TORCH_LIB" "$SITE/nvidia") || exit 1
echo "$check"
# What the host must have, for gpu_check.sh's first step to compare.
grep -o 'glibc >= [0-9.]*' <<<"$check" | sed 's/glibc >= /glibc /' >"$TMP/REQUIRES"
grep -o 'GLIBCXX_[0-9.]*' <<<"$check" | sed 's/^/libstdc++ /' >>"$TMP/REQUIRES"
rm -rf "$OUT"
mv "$TMP" "$OUT"
echo "gpu_bundle.sh: $OUT ($(du -sh "$OUT" | cut -f1), $(wc -l <"$OUT/MANIFEST") files)"
