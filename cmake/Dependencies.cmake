# Finds dfar's dependencies by the names Debian 12 ships them under.
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(PkgConfig REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)
include(cmake/Torch.cmake)
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

include(cmake/Nccl.cmake)
