#include "mote/io/h5.h"

#include <cstring>

#include <algorithm>
#include <cstdlib>

#include "mote/util/error.h"

namespace mote {
namespace {

hid_t check(hid_t id, const char* what, const std::string& name) {
  if (id < 0) fail("HDF5: cannot {} '{}'", what, name);
  return id;
}

H5Handle utf8_string_type() {
  H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.id(), H5T_VARIABLE);
  H5Tset_cset(type.id(), H5T_CSET_UTF8);
  return type;
}

void write_numeric(hid_t parent, const std::string& name, const std::vector<hsize_t>& dims, hid_t mem_type,
                   hid_t file_type, const void* data, bool compress) {
  H5Handle space(
      check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "create dataspace for", name),
      H5Sclose);
  H5Handle plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  hsize_t total = 1;
  for (hsize_t d : dims) total *= d;
  if (compress && total >= 4096 && !dims.empty()) {
    // Chunks of whole rows, about 1 MiB each.
    std::vector<hsize_t> chunk = dims;
    hsize_t row = 1;
    for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
    chunk[0] = std::clamp<hsize_t>((1u << 18) / std::max<hsize_t>(row, 1), 1, std::max<hsize_t>(dims[0], 1));
    H5Pset_chunk(plist.id(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_shuffle(plist.id());
    H5Pset_deflate(plist.id(), 4);
  }
  H5Handle ds(check(H5Dcreate2(parent, name.c_str(), file_type, space.id(), H5P_DEFAULT, plist.id(), H5P_DEFAULT),
                    "create dataset", name),
              H5Dclose);
  if (total > 0 && H5Dwrite(ds.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail("HDF5: cannot write dataset '{}'", name);
}

void write_attr(hid_t obj, const std::string& name, hid_t type, const void* value) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle attr(
      check(H5Acreate2(obj, name.c_str(), type, space.id(), H5P_DEFAULT, H5P_DEFAULT), "create attribute", name),
      H5Aclose);
  if (H5Awrite(attr.id(), type, value) < 0) fail("HDF5: cannot write attribute '{}'", name);
}

}  // namespace

void h5_silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::vector<hsize_t> h5_dims(hid_t dataset) {
  H5Handle space(H5Dget_space(dataset), H5Sclose);
  const int rank = space.id() < 0 ? -1 : H5Sget_simple_extent_ndims(space.id());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  return dims;
}

bool h5_read_int_attr(hid_t obj, const char* name, int64_t& value) {
  if (H5Aexists(obj, name) <= 0) return false;
  H5Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (attr.id() < 0) return false;
  H5Handle type(H5Aget_type(attr.id()), H5Tclose);
  H5Handle space(H5Aget_space(attr.id()), H5Sclose);
  if (H5Tget_class(type.id()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.id()) != 1) return false;
  return H5Aread(attr.id(), H5T_NATIVE_INT64, &value) >= 0;
}

bool h5_read_string_attr(hid_t obj, const char* name, std::string& value) {
  if (H5Aexists(obj, name) <= 0) return false;
  H5Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (attr.id() < 0) return false;
  H5Handle type(H5Aget_type(attr.id()), H5Tclose);
  H5Handle space(H5Aget_space(attr.id()), H5Sclose);
  if (H5Tget_class(type.id()) != H5T_STRING || H5Tis_variable_str(type.id()) <= 0 ||
      H5Sget_simple_extent_npoints(space.id()) != 1) {
    return false;
  }
  H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem.id(), H5T_VARIABLE);
  H5Tset_cset(mem.id(), H5T_CSET_UTF8);
  char* text = nullptr;
  if (H5Aread(attr.id(), mem.id(), &text) < 0 || text == nullptr) return false;
  value.assign(text, strnlen(text, 4096));
  H5free_memory(text);
  return true;
}

H5Handle h5_create_group(hid_t parent, const std::string& name) {
  return H5Handle(check(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create group", name),
                  H5Gclose);
}

H5Handle h5_create_ordered_group(hid_t parent, const std::string& name) {
  H5Handle plist(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_link_creation_order(plist.id(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  return H5Handle(check(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, plist.id(), H5P_DEFAULT), "create group", name),
                  H5Gclose);
}

void h5_axes(hid_t parent, const std::string& name, const std::string& axes) {
  H5Handle ds(check(H5Dopen2(parent, name.c_str(), H5P_DEFAULT), "open dataset", name), H5Dclose);
  h5_attr_string(ds.id(), "axes", axes);
}

void h5_attr_string(hid_t obj, const std::string& name, const std::string& value) {
  const H5Handle type = utf8_string_type();
  const char* p = value.c_str();
  write_attr(obj, name, type.id(), &p);
}

void h5_attr_int(hid_t obj, const std::string& name, int64_t value) { write_attr(obj, name, H5T_NATIVE_INT64, &value); }
void h5_attr_double(hid_t obj, const std::string& name, double value) {
  write_attr(obj, name, H5T_NATIVE_DOUBLE, &value);
}

void h5_string_dataset(hid_t parent, const std::string& name, const std::string& value) {
  if (value.find('\0') != std::string::npos) {
    // A variable-length string ends at its first NUL: a text holding NULs is
    // stored whole as a fixed-length string of its exact size.
    H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.id(), value.size());
    H5Tset_strpad(type.id(), H5T_STR_NULLPAD);
    H5Tset_cset(type.id(), H5T_CSET_UTF8);
    H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
    H5Handle ds(check(H5Dcreate2(parent, name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                      "create dataset", name),
                H5Dclose);
    if (H5Dwrite(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, value.data()) < 0)
      fail("HDF5: cannot write dataset '{}'", name);
    return;
  }
  const H5Handle type = utf8_string_type();
  H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle ds(check(H5Dcreate2(parent, name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    "create dataset", name),
              H5Dclose);
  const char* p = value.c_str();
  if (H5Dwrite(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) < 0)
    fail("HDF5: cannot write dataset '{}'", name);
}

void h5_string_list(hid_t parent, const std::string& name, const std::vector<std::string>& values) {
  // Fixed-length (null-padded) strings: readable by h5py and h5dump, and
  // read back without HDF5's global heap, which corrupt files can make loop.
  size_t width = 1;
  for (const auto& v : values) width = std::max(width, v.size());
  H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.id(), width);
  H5Tset_strpad(type.id(), H5T_STR_NULLPAD);
  H5Tset_cset(type.id(), H5T_CSET_UTF8);
  const hsize_t n = values.size();
  H5Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H5Handle ds(check(H5Dcreate2(parent, name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    "create dataset", name),
              H5Dclose);
  std::string buffer(width * values.size(), '\0');
  for (size_t i = 0; i < values.size(); ++i) buffer.replace(i * width, values[i].size(), values[i]);
  if (n > 0 && H5Dwrite(ds.id(), type.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()) < 0) {
    fail("HDF5: cannot write dataset '{}'", name);
  }
}

std::vector<std::string> h5_read_string_list(hid_t parent, const char* name, size_t max_count,
                                             const std::string& where) {
  H5Handle ds(H5Dopen2(parent, name, H5P_DEFAULT), H5Dclose);
  if (ds.id() < 0) fail("{}: no dataset '{}'", where, name);
  const auto dims = h5_dims(ds.id());
  if (dims.size() != 1) fail("{}: '{}' must be a list of strings", where, name);
  H5Handle type(H5Dget_type(ds.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_STRING || H5Tis_variable_str(type.id()) != 0)
    fail("{}: '{}' must hold fixed-length strings", where, name);
  const size_t width = H5Tget_size(type.id());
  if (width == 0 || width > 4096 || dims[0] > max_count) fail("{}: '{}' is implausibly large", where, name);
  std::string buffer(width * dims[0], '\0');
  H5Handle mem(H5Tcopy(type.id()), H5Tclose);  // same width and character set: a plain copy of the bytes
  H5Tset_strpad(mem.id(), H5T_STR_NULLPAD);
  if (!buffer.empty() && H5Dread(ds.id(), mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()) < 0)
    fail("{}: cannot read '{}'", where, name);
  std::vector<std::string> out;
  for (size_t i = 0; i < dims[0]; ++i) {
    const std::string_view slot(buffer.data() + i * width, width);
    out.emplace_back(slot.substr(0, slot.find('\0')));
  }
  return out;
}

void h5_dataset(hid_t p, const std::string& n, const std::vector<hsize_t>& d, const int32_t* data, bool c) {
  write_numeric(p, n, d, H5T_NATIVE_INT32, H5T_STD_I32LE, data, c);
}
void h5_dataset(hid_t p, const std::string& n, const std::vector<hsize_t>& d, const float* data, bool c) {
  write_numeric(p, n, d, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, data, c);
}
void h5_dataset(hid_t p, const std::string& n, const std::vector<hsize_t>& d, const uint64_t* data, bool c) {
  write_numeric(p, n, d, H5T_NATIVE_UINT64, H5T_STD_U64LE, data, c);
}
void h5_dataset(hid_t p, const std::string& n, const std::vector<hsize_t>& d, const uint32_t* data, bool c) {
  write_numeric(p, n, d, H5T_NATIVE_UINT32, H5T_STD_U32LE, data, c);
}
void h5_dataset(hid_t p, const std::string& n, const std::vector<hsize_t>& d, const double* data, bool c) {
  write_numeric(p, n, d, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, data, c);
}

}  // namespace mote
