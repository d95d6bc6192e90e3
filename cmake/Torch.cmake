# libtorch: Debian's libtorch-dev (1.13, CPU) when nothing else is named, or
# the install that Torch_DIR (or CMAKE_PREFIX_PATH) points at, for example a
# pip wheel's torch/share/cmake/Torch (2.x, CUDA).
#
# TorchConfig.cmake looks for Caffe2Config.cmake and for its libraries with
# find_package(... PATHS <prefix>) and find_library(... PATHS <prefix>/lib),
# both of which search the system directories first: with Debian's
# libtorch-dev also installed, a wheel's headers came with Debian's Caffe2
# targets, libc10 and libtorch. Caffe2_DIR and the libraries are therefore
# pinned to the install before its config runs, and checked after: every
# torch library in the link closure must live in that install's lib/, and the
# version compiled into the library must equal the headers' version.

# The lib/ folder of the install whose TorchConfig.cmake is in torch_dir:
# <prefix>/lib for a share/cmake/Torch layout (pip wheel, libtorch zip), the
# folder two up for lib/<arch>/cmake/Torch (Debian). Empty if neither holds
# libtorch_cpu.so.
function(dfar_torch_lib_dir torch_dir out)
  set(${out} "" PARENT_SCOPE)
  foreach(candidate "${torch_dir}/../../../lib" "${torch_dir}/../..")
    get_filename_component(dir "${candidate}" ABSOLUTE)
    if(EXISTS "${dir}/libtorch_cpu.so")
      set(${out} "${dir}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
endfunction()

# A build dir keeps the libraries it found in its cache: switching it to
# another libtorch would mix the two.
if(DFAR_TORCH_CONFIGURED_DIR AND Torch_DIR AND NOT Torch_DIR STREQUAL DFAR_TORCH_CONFIGURED_DIR)
  message(FATAL_ERROR "dfar: ${CMAKE_BINARY_DIR} was configured against the libtorch in ${DFAR_TORCH_CONFIGURED_DIR}, "
                      "not ${Torch_DIR}: use another build dir (or delete this one).")
endif()

if(Torch_DIR AND EXISTS "${Torch_DIR}/TorchConfig.cmake")
  dfar_torch_lib_dir("${Torch_DIR}" pinned_lib_dir)
  get_filename_component(caffe2_dir "${Torch_DIR}/../Caffe2" ABSOLUTE)
  if(EXISTS "${caffe2_dir}/Caffe2Config.cmake")
    set(Caffe2_DIR "${caffe2_dir}" CACHE PATH "Caffe2Config.cmake of the libtorch in Torch_DIR" FORCE)
  endif()
  if(pinned_lib_dir)
    foreach(lib torch torch_cpu torch_cuda c10 c10_cuda)
      string(TOUPPER "${lib}" upper)
      foreach(var ${lib}_LIBRARY ${upper}_LIBRARY)
        find_library(${var} ${lib} PATHS "${pinned_lib_dir}" NO_DEFAULT_PATH)
      endforeach()
    endforeach()
  endif()
endif()

find_package(Torch REQUIRED)
set(DFAR_TORCH_CONFIGURED_DIR "${Torch_DIR}" CACHE INTERNAL "Torch_DIR this build dir was configured with")
get_filename_component(DFAR_TORCH_PREFIX "${Torch_DIR}/../../.." ABSOLUTE)
dfar_torch_lib_dir("${Torch_DIR}" DFAR_TORCH_LIB_DIR)
if(NOT DFAR_TORCH_LIB_DIR)
  message(FATAL_ERROR "dfar: no libtorch_cpu.so beside ${Torch_DIR} (looked in ../../../lib and ../..)")
endif()
# For scripts/gpu_bundle.sh, which reads it from CMakeCache.txt.
set(DFAR_TORCH_LIB_DIR "${DFAR_TORCH_LIB_DIR}" CACHE INTERNAL "lib/ of the libtorch in use")

# Every torch library that will be linked, through the imported targets'
# INTERFACE_LINK_LIBRARIES, comes from that install.
function(dfar_collect_link_paths item out_paths visited)
  if(item MATCHES "^\\$<|^-")
    return()
  endif()
  if(TARGET ${item})
    list(FIND ${visited} "${item}" seen)
    if(NOT seen EQUAL -1)
      return()
    endif()
    list(APPEND ${visited} "${item}")
    get_target_property(type ${item} TYPE)
    if(NOT type STREQUAL "INTERFACE_LIBRARY")
      foreach(property IMPORTED_LOCATION_RELEASE IMPORTED_LOCATION_RELWITHDEBINFO IMPORTED_LOCATION)
        get_target_property(location ${item} ${property})
        if(location)
          list(APPEND ${out_paths} "${location}")
          break()
        endif()
      endforeach()
    endif()
    get_target_property(deps ${item} INTERFACE_LINK_LIBRARIES)
    if(deps)
      foreach(dep ${deps})
        dfar_collect_link_paths("${dep}" ${out_paths} ${visited})
      endforeach()
    endif()
  elseif(EXISTS "${item}")
    list(APPEND ${out_paths} "${item}")
  endif()
  set(${out_paths} ${${out_paths}} PARENT_SCOPE)
  set(${visited} ${${visited}} PARENT_SCOPE)
endfunction()

set(DFAR_TORCH_LIBRARY_PATHS)
set(visited_targets)
# The targets that torch_library names only inside generator expressions
# ($<TARGET_FILE:torch_cpu>) are walked by name.
foreach(item ${TORCH_LIBRARIES} torch torch_cpu torch_cuda c10 c10_cuda)
  dfar_collect_link_paths("${item}" DFAR_TORCH_LIBRARY_PATHS visited_targets)
endforeach()
foreach(path ${DFAR_TORCH_LIBRARY_PATHS})
  get_filename_component(name "${path}" NAME)
  if(name MATCHES "^lib(torch|c10|caffe2|kineto|shm)" AND NOT path MATCHES "^${DFAR_TORCH_LIB_DIR}/")
    message(FATAL_ERROR "dfar: ${path} is not from the libtorch at ${DFAR_TORCH_PREFIX} "
                        "(headers from ${TORCH_INCLUDE_DIRS}). Remove the stale cache entry (or the build dir) "
                        "and configure again.")
  endif()
endforeach()

# The library's own version (compiled into libtorch_cpu) against the headers'.
# The program links the resolved files (libtorch_cpu, libc10), not the
# imported targets, whose link interface names targets (protobuf, CUDA) that
# the check's own project would have to find again.
set(DFAR_TORCH_CORE_LIBRARIES)
foreach(path ${DFAR_TORCH_LIBRARY_PATHS})
  get_filename_component(name "${path}" NAME)
  if(name MATCHES "^lib(torch_cpu|c10)\\.so")
    list(APPEND DFAR_TORCH_CORE_LIBRARIES "${path}")
  endif()
endforeach()
if(NOT DFAR_TORCH_CHECKED_VERSION STREQUAL "${Torch_DIR}:${Torch_VERSION}")
  try_run(version_run version_compiled ${CMAKE_BINARY_DIR}/torch_version_check
          ${PROJECT_SOURCE_DIR}/cmake/checks/torch_library_version.cpp
          CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${TORCH_INCLUDE_DIRS}"
          LINK_LIBRARIES ${DFAR_TORCH_CORE_LIBRARIES}
          CXX_STANDARD 17
          COMPILE_OUTPUT_VARIABLE version_compile_log
          RUN_OUTPUT_VARIABLE DFAR_TORCH_LIBRARY_VERSION)
  if(NOT version_compiled OR NOT version_run EQUAL 0)
    message(FATAL_ERROR "dfar: could not run a program against libtorch at ${DFAR_TORCH_PREFIX} to read its "
                        "version (exit ${version_run}):\n${version_compile_log}")
  endif()
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" library_minor "${DFAR_TORCH_LIBRARY_VERSION}")
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" header_minor "${Torch_VERSION}")
  if(NOT library_minor STREQUAL header_minor)
    message(FATAL_ERROR "dfar: the libtorch library linked is version ${DFAR_TORCH_LIBRARY_VERSION}, but the "
                        "headers at ${TORCH_INCLUDE_DIRS} are ${Torch_VERSION}. Point Torch_DIR at one install.")
  endif()
  set(DFAR_TORCH_CHECKED_VERSION "${Torch_DIR}:${Torch_VERSION}" CACHE INTERNAL "")
  set(DFAR_TORCH_LIBRARY_VERSION "${DFAR_TORCH_LIBRARY_VERSION}" CACHE INTERNAL "")
endif()

# CUDA: a torch built with it defines the c10_cuda library.
set(DFAR_TORCH_HAS_CUDA OFF)
if(C10_CUDA_LIBRARY OR TARGET c10_cuda)
  set(DFAR_TORCH_HAS_CUDA ON)
endif()
message(STATUS "dfar: libtorch ${Torch_VERSION} (library ${DFAR_TORCH_LIBRARY_VERSION}) from ${DFAR_TORCH_LIB_DIR}, "
               "CUDA: ${DFAR_TORCH_HAS_CUDA}")
