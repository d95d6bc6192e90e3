# Sourced by scripts/gpu_bundle.sh and scripts/check_bundle.sh: the libraries
# that the GPU host's own system provides, never bundled: glibc and the C++
# runtime (libstdc++, libgcc_s; see gpu_bundle.sh for why).
# shellcheck shell=bash
system_library() {
  case "$1" in
    linux-vdso.so.* | ld-linux-x86-64.so.* | libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | \
      libutil.so.* | libresolv.so.* | libanl.so.* | libnsl.so.* | libstdc++.so.* | libgcc_s.so.*) return 0 ;;
  esac
  return 1
}
