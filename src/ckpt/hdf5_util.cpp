#include "hdf5_util.h"

#include <vector>

namespace dfar::ckpt {
namespace {

std::recursive_mutex& H5Mutex() {
  static std::recursive_mutex mu;
  return mu;
}

// Collects the first (most specific, walking upward) messages of the stack.
herr_t CollectError(unsigned n, const H5E_error2_t* err, void* data) {
  auto* text = static_cast<std::string*>(data);
  if (n >= 3) return 0;
  if (!text->empty()) *text += "; ";
  *text += err->desc != nullptr && err->desc[0] != '\0' ? err->desc : "(no description)";
  if (err->func_name != nullptr) *text += std::string(" [") + err->func_name + "]";
  return 0;
}

}  // namespace

std::string Describe(const H5Where& where) {
  std::string s = "file " + (where.file.empty() ? std::string("(none)") : where.file);
  if (where.rank >= 0) s += " on rank " + std::to_string(where.rank);
  return s;
}

std::string H5ErrorText() {
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectError, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "no HDF5 error details" : text;
}

H5Lock::H5Lock() : lock_(H5Mutex()) {
  // The error stack (and its auto-print setting) is per thread in
  // thread-safe HDF5 builds, so silence it for whichever thread gets here.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

hid_t FileType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return H5T_IEEE_F32LE;
    case DType::kFloat64:
      return H5T_IEEE_F64LE;
    case DType::kInt32:
      return H5T_STD_I32LE;
    case DType::kInt64:
      return H5T_STD_I64LE;
    case DType::kUInt8:
      return H5T_STD_U8LE;
    case DType::kBFloat16:
      return H5T_STD_U16LE;
    case DType::kFloat16:
      return H5T_STD_U16LE;
  }
  DFAR_THROW("unknown DType ", static_cast<int>(dtype));
}

hid_t MemType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return H5T_NATIVE_FLOAT;
    case DType::kFloat64:
      return H5T_NATIVE_DOUBLE;
    case DType::kInt32:
      return H5T_NATIVE_INT32;
    case DType::kInt64:
      return H5T_NATIVE_INT64;
    case DType::kUInt8:
      return H5T_NATIVE_UINT8;
    case DType::kBFloat16:
      return H5T_NATIVE_UINT16;
    case DType::kFloat16:
      return H5T_NATIVE_UINT16;
  }
  DFAR_THROW("unknown DType ", static_cast<int>(dtype));
}

H5Handle FileAccessPlist(const H5Where& where) {
  H5Handle fapl(DFAR_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), where), H5Pclose);
#if H5_VERSION_GE(1, 10, 7)
  DFAR_H5_CHECK(H5Pset_file_locking(fapl.get(), /*use_file_locking=*/1, /*ignore_when_disabled=*/1), where);
#endif
  return fapl;
}

void WriteStringAttr(hid_t obj, const char* name, const std::string& value, const H5Where& where) {
  H5Handle type(DFAR_H5_CHECK(H5Tcopy(H5T_C_S1), where), H5Tclose);
  DFAR_H5_CHECK(H5Tset_size(type.get(), value.empty() ? 1 : value.size()), where);
  DFAR_H5_CHECK(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), where);
  H5Handle space(DFAR_H5_CHECK(H5Screate(H5S_SCALAR), where), H5Sclose);
  H5Handle attr(DFAR_H5_CHECK(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), where),
                H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  DFAR_H5_CHECK(H5Awrite(attr.get(), type.get(), padded.data()), where);
}

void WriteInt64Attr(hid_t obj, const char* name, int64_t value, const H5Where& where) {
  H5Handle space(DFAR_H5_CHECK(H5Screate(H5S_SCALAR), where), H5Sclose);
  H5Handle attr(DFAR_H5_CHECK(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), where),
                H5Aclose);
  DFAR_H5_CHECK(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), where);
}

std::string ReadStringAttr(hid_t obj, const char* name, size_t max_len, const H5Where& where) {
  DFAR_CHECK(DFAR_H5_CHECK(H5Aexists(obj, name), where) > 0, Describe(where), " has no attribute '", name, "'");
  H5Handle attr(DFAR_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT), where), H5Aclose);
  H5Handle type(DFAR_H5_CHECK(H5Aget_type(attr.get()), where), H5Tclose);
  H5Handle space(DFAR_H5_CHECK(H5Aget_space(attr.get()), where), H5Sclose);
  DFAR_CHECK(H5Tget_class(type.get()) == H5T_STRING && H5Sget_simple_extent_npoints(space.get()) == 1, Describe(where),
             ": attribute '", name, "' is not a scalar string");
  if (DFAR_H5_CHECK(H5Tis_variable_str(type.get()), where) > 0) {
    char* value = nullptr;
    H5Handle mem(DFAR_H5_CHECK(H5Tcopy(H5T_C_S1), where), H5Tclose);
    DFAR_H5_CHECK(H5Tset_size(mem.get(), H5T_VARIABLE), where);
    DFAR_H5_CHECK(H5Aread(attr.get(), mem.get(), &value), where);
    std::string out = value != nullptr ? std::string(value) : std::string();
    H5free_memory(value);
    DFAR_CHECK(out.size() <= max_len, Describe(where), ": attribute '", name, "' is too long");
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  DFAR_CHECK(size > 0 && size <= max_len, Describe(where), ": attribute '", name, "' has an implausible size ", size);
  std::vector<char> buf(size);
  DFAR_H5_CHECK(H5Aread(attr.get(), type.get(), buf.data()), where);
  std::string out(buf.data(), buf.size());
  out.erase(out.find_last_not_of('\0') + 1);  // Fixed-length strings are NUL-padded.
  return out;
}

int64_t ReadInt64Attr(hid_t obj, const char* name, const H5Where& where) {
  DFAR_CHECK(DFAR_H5_CHECK(H5Aexists(obj, name), where) > 0, Describe(where), " has no attribute '", name, "'");
  H5Handle attr(DFAR_H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT), where), H5Aclose);
  H5Handle type(DFAR_H5_CHECK(H5Aget_type(attr.get()), where), H5Tclose);
  H5Handle space(DFAR_H5_CHECK(H5Aget_space(attr.get()), where), H5Sclose);
  DFAR_CHECK(H5Tget_class(type.get()) == H5T_INTEGER && H5Sget_simple_extent_npoints(space.get()) == 1, Describe(where),
             ": attribute '", name, "' is not a scalar integer");
  int64_t value = 0;
  DFAR_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), where);
  return value;
}

}  // namespace dfar::ckpt
