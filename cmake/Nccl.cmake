# CUDA + NCCL for the NCCL communicator (src/comm/nccl_communicator.cpp).
#
# NCCL is looked for first where a torch pip wheel puts it
# (site-packages/nvidia/nccl, beside torch/), so that dfar and libtorch load
# one NCCL; then under NCCL_ROOT / $NCCL_HOME, the CUDA toolkit and /usr.
# A torch built with CUDA needs the NCCL backend: if it is not found,
# configure stops and names where it looked, unless -DDFAR_WITH_NCCL=OFF.
# With a CPU-only torch (Debian's) the backend is still compiled when the
# toolkit and NCCL are present, so that it builds and links everywhere; its
# tests skip without a device.
option(DFAR_WITH_NCCL "Build the NCCL communicator (required when libtorch has CUDA)" ON)
option(DFAR_NCCL_SEARCH_SYSTEM "Also look for NCCL in the CUDA toolkit and /usr (OFF: only the wheel and NCCL_ROOT)" ON)

set(DFAR_HAVE_NCCL OFF)
if(DFAR_WITH_CUDA AND DFAR_WITH_NCCL)
  find_package(CUDAToolkit QUIET)
  get_filename_component(wheel_nccl "${DFAR_TORCH_PREFIX}/../nvidia/nccl" ABSOLUTE)
  set(nccl_roots ${wheel_nccl} ${NCCL_ROOT} $ENV{NCCL_HOME})
  set(nccl_include_dirs)
  set(nccl_library_dirs)
  foreach(root ${nccl_roots})
    list(APPEND nccl_include_dirs ${root}/include)
    list(APPEND nccl_library_dirs ${root}/lib ${root}/lib64)
  endforeach()
  if(DFAR_NCCL_SEARCH_SYSTEM)
    list(APPEND nccl_include_dirs ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include /usr/include)
    list(APPEND nccl_library_dirs ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 /usr/local/cuda/lib
         /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu)
  endif()
  find_path(DFAR_NCCL_INCLUDE_DIR nccl.h PATHS ${nccl_include_dirs} NO_DEFAULT_PATH)
  # A wheel ships only the versioned libnccl.so.2.
  find_library(DFAR_NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR PATHS ${nccl_library_dirs} NO_DEFAULT_PATH)
  if(CUDAToolkit_FOUND AND DFAR_NCCL_INCLUDE_DIR AND DFAR_NCCL_LIBRARY)
    set(DFAR_HAVE_NCCL ON)
  elseif(DFAR_TORCH_HAS_CUDA)
    string(REPLACE ";" "\n    " include_list "${nccl_include_dirs}")
    string(REPLACE ";" "\n    " library_list "${nccl_library_dirs}")
    message(FATAL_ERROR "dfar: libtorch at ${DFAR_TORCH_PREFIX} has CUDA, but the NCCL backend cannot be built:\n"
                        "  CUDA toolkit found: ${CUDAToolkit_FOUND}\n"
                        "  nccl.h (${DFAR_NCCL_INCLUDE_DIR}) looked for in:\n    ${include_list}\n"
                        "  libnccl.so / libnccl.so.2 (${DFAR_NCCL_LIBRARY}) looked for in:\n    ${library_list}\n"
                        "Set NCCL_ROOT, or configure with -DDFAR_WITH_NCCL=OFF to build without it.")
  endif()
endif()
message(STATUS "dfar: CUDA ${CUDAToolkit_VERSION}, NCCL backend: ${DFAR_HAVE_NCCL} (${DFAR_NCCL_LIBRARY})")
