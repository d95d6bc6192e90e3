// Run-directory handling shared by the trainer (internal header).
#pragma once

#include <string>

#include "dfar/comm/communicator.h"
#include "dfar/core/config.h"

namespace dfar {

// Creates (or, with overwrite, recreates) the run dir; refuses an existing one
// unless resume/overwrite. Checks it is writable. Collective.
void PrepareRunDir(const std::string& dir, bool resume, bool overwrite, Communicator& comm);

}  // namespace dfar
