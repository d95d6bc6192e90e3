// Small file helpers shared by every area that writes results.
#pragma once

#include <string>

namespace dfar {

// Writes `bytes` to "<path>.tmp", flushes and fsyncs it, then renames it over
// `path`, so a reader never sees a half-written file. Throws dfar::Error
// naming the file; the .tmp is removed on failure.
void WriteFileAtomic(const std::string& path, const std::string& bytes);

}  // namespace dfar
