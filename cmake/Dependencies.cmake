# Finds dfar's dependencies by the names Debian 12 ships them under.
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(PkgConfig REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)
# libtorch: Debian's libtorch-dev (1.13, CPU) by default; point Torch_DIR (or
# CMAKE_PREFIX_PATH) at a pip wheel's torch/share/cmake/Torch for 2.x + CUDA.
find_package(Torch REQUIRED)
message(STATUS "dfar: libtorch ${Torch_VERSION} from ${Torch_DIR}")
# SentencePiece: linked only by the dfar_spm shim (see CMakeLists.txt), never
# by dfar_base or an executable. Debian's libsentencepiece embeds and exports
# its own protobuf-lite 3.14, which clashes with the libprotobuf 3.21 that
# libtorch needs: loaded first, libprotobuf's static initialisers bind to
# sentencepiece's copies and crash before main(); loaded second, sentencepiece
# binds to 3.21 and refuses to run ("compiled against version 3.14.0"). No link
# order fixes both, so dfar dlopen()s the shim with RTLD_LOCAL | RTLD_DEEPBIND
# instead, and no longer links libprotobuf itself (libtorch brings it).
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)

# CUDA + NCCL: optional. Found on the build machine even without a GPU, so the
# NCCL backend is always compiled there; its tests skip when no device exists.
set(DFAR_HAVE_NCCL OFF)
if(DFAR_WITH_CUDA)
  find_package(CUDAToolkit QUIET)
  find_path(DFAR_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include /usr/include)
  find_library(DFAR_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib /usr/local/cuda/lib64
               /usr/local/cuda/targets/x86_64-linux/lib)
  if(CUDAToolkit_FOUND AND DFAR_NCCL_INCLUDE_DIR AND DFAR_NCCL_LIBRARY)
    set(DFAR_HAVE_NCCL ON)
  endif()
endif()
message(STATUS "dfar: CUDA ${CUDAToolkit_VERSION}, NCCL backend: ${DFAR_HAVE_NCCL}")
