#include "mote/io/profile_file.h"

#include <string_view>

#include "mote/io/h5.h"
#include "mote/util/checked_math.h"
#include "mote/util/error.h"

namespace mote {
namespace {

std::vector<hsize_t> dims_of(hid_t ds) {
  H5Handle space(H5Dget_space(ds), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.id());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  return dims;
}

H5Handle open_dataset(hid_t file, const char* name, const std::string& where) {
  const hid_t id = H5Dopen2(file, name, H5P_DEFAULT);
  if (id < 0) fail("{}: no dataset '{}' (is it a mote profile file?)", where, name);
  return H5Handle(id, H5Dclose);
}

}  // namespace

ProfileData read_profile_file(const std::filesystem::path& path) {
  h5_silence_errors();
  const std::string where = path.string();
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) fail("{}: cannot open as HDF5", where);
  H5Handle file(fid, H5Fclose);
  ProfileData p;

  H5Handle counts = open_dataset(file.id(), "counts", where);
  const auto cd = dims_of(counts.id());
  if (cd.size() != 4 || cd[1] != 2) fail("{}: 'counts' must be [class, 2, moe_layer, expert]", where);
  const auto total = checked_product(std::vector<int64_t>{static_cast<int64_t>(cd[0]), 2, static_cast<int64_t>(cd[2]), static_cast<int64_t>(cd[3])});
  if (!total || *total > (1ull << 32)) fail("{}: 'counts' is implausibly large", where);
  p.moe_layers = static_cast<int>(cd[2]);
  p.experts = static_cast<int>(cd[3]);
  p.counts.resize(*total);
  if (H5Dread(counts.id(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.counts.data()) < 0) fail("{}: cannot read 'counts'", where);

  H5Handle tokens = open_dataset(file.id(), "tokens", where);
  const auto td = dims_of(tokens.id());
  if (td.size() != 2 || td[0] != cd[0] || td[1] != 2) fail("{}: 'tokens' must be [class, 2] matching 'counts'", where);
  p.tokens.resize(td[0] * 2);
  if (H5Dread(tokens.id(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.tokens.data()) < 0) fail("{}: cannot read 'tokens'", where);

  H5Handle classes = open_dataset(file.id(), "classes", where);
  const auto cl = dims_of(classes.id());
  if (cl.size() != 1 || cl[0] != cd[0]) fail("{}: 'classes' must list one name per class of 'counts'", where);
  H5Handle type(H5Dget_type(classes.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_STRING || H5Tis_variable_str(type.id()) != 0) {
    fail("{}: 'classes' must hold fixed-length strings", where);
  }
  const size_t width = H5Tget_size(type.id());
  if (width == 0 || width > 4096 || cl[0] > (1u << 16)) fail("{}: 'classes' is implausibly large", where);
  std::string buffer(width * cl[0], '\0');
  H5Handle mem(H5Tcopy(type.id()), H5Tclose);  // same width and character set: a plain copy of the bytes
  H5Tset_strpad(mem.id(), H5T_STR_NULLPAD);
  if (!buffer.empty() && H5Dread(classes.id(), mem.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()) < 0) {
    fail("{}: cannot read 'classes'", where);
  }
  for (size_t i = 0; i < cl[0]; ++i) {
    const std::string_view slot(buffer.data() + i * width, width);
    p.classes.emplace_back(slot.substr(0, slot.find('\0')));
  }

  h5_read_string_attr(file.id(), "model", p.model);
  if (H5Lexists(file.id(), "masks", H5P_DEFAULT) > 0) {
    H5Handle masks(H5Gopen2(file.id(), "masks", H5P_DEFAULT), H5Gclose);
    H5G_info_t info{};
    if (masks.id() < 0 || H5Gget_info(masks.id(), &info) < 0 || info.nlinks > 100000) fail("{}: cannot read '/masks'", where);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[256] = {};
      if (H5Lget_name_by_idx(masks.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT) > 0) p.masks.emplace_back(name);
    }
  }

  H5Handle index = open_dataset(file.id(), "moe_layer_decoder_index", where);
  p.decoder_index.resize(static_cast<size_t>(p.moe_layers));
  if (dims_of(index.id()) != std::vector<hsize_t>{static_cast<hsize_t>(p.moe_layers)} ||
      H5Dread(index.id(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.decoder_index.data()) < 0) {
    fail("{}: cannot read 'moe_layer_decoder_index'", where);
  }
  return p;
}

}  // namespace mote
