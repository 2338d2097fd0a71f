#include "mote/results/profile_file.h"

#include <algorithm>
#include <string_view>
#include <tuple>

#include <spdlog/spdlog.h>

#include "mote/io/h5.h"
#include "mote/util/checked_math.h"
#include "mote/util/error.h"

namespace mote {
namespace {

H5Handle open_dataset(hid_t file, const char* name, const std::string& where) {
  const hid_t id = H5Dopen2(file, name, H5P_DEFAULT);
  if (id < 0) fail("{}: no dataset '{}' (is it a mote profile file?)", where, name);
  return H5Handle(id, H5Dclose);
}

}  // namespace

ProfileData read_profile_file(const std::filesystem::path& path, const char* tool) {
  h5_silence_errors();
  const std::string where = path.string();
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) fail("{}: cannot open as HDF5", where);
  H5Handle file(fid, H5Fclose);
  ProfileData p;
  if (tool != nullptr) {
    std::string job;
    h5_read_string_attr(file.id(), "job", job);
    if (H5Lexists(file.id(), "experiment", H5P_DEFAULT) > 0) {
      fail("{}: is the file of a mote experiment; {} takes profiles (files of mote profile or mote generate)", where,
           tool);
    }
    if (job == "scan" || H5Lexists(file.id(), "scan", H5P_DEFAULT) > 0) {
      fail("{}: is the file of a mote scan; {} takes profiles (files of mote profile or mote generate){}", where, tool,
           std::string_view(tool) == "mote rank" ? "; rank a scan with --by effect" : "");
    }
  }
  h5_read_int_attr(file.id(), "request_count", p.requests);
  h5_read_int_attr(file.id(), "failed_request_count", p.failed_requests);
  if (tool != nullptr && p.failed_requests > 0) {
    if (p.failed_requests >= p.requests) {
      fail(
          "{}: all {} requests of this profile failed (each /requests group's 'error' says why): it has no counts to "
          "use",
          where, p.requests);
    }
    spdlog::warn("{}: {} of its {} requests failed; they are left out of its counts", where, p.failed_requests,
                 p.requests);
  }

  H5Handle counts = open_dataset(file.id(), "counts", where);
  const auto cd = h5_dims(counts.id());
  if (cd.size() != 4 || cd[1] != 2) fail("{}: 'counts' must be [class, 2, moe_layer, expert]", where);
  const auto total = checked_product(
      std::vector<int64_t>{static_cast<int64_t>(cd[0]), 2, static_cast<int64_t>(cd[2]), static_cast<int64_t>(cd[3])});
  if (!total || *total > (1ull << 32)) fail("{}: 'counts' is implausibly large", where);
  p.moe_layers = static_cast<int>(cd[2]);
  p.experts = static_cast<int>(cd[3]);
  p.counts.resize(*total);
  if (H5Dread(counts.id(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.counts.data()) < 0)
    fail("{}: cannot read 'counts'", where);

  H5Handle gate = open_dataset(file.id(), "gate_sum", where);
  if (h5_dims(gate.id()) != cd) fail("{}: 'gate_sum' must have the shape of 'counts'", where);
  p.gate_sum.resize(*total);
  if (H5Dread(gate.id(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.gate_sum.data()) < 0)
    fail("{}: cannot read 'gate_sum'", where);

  H5Handle tokens = open_dataset(file.id(), "tokens", where);
  const auto td = h5_dims(tokens.id());
  if (td.size() != 2 || td[0] != cd[0] || td[1] != 2) fail("{}: 'tokens' must be [class, 2] matching 'counts'", where);
  p.tokens.resize(td[0] * 2);
  if (H5Dread(tokens.id(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.tokens.data()) < 0)
    fail("{}: cannot read 'tokens'", where);

  p.classes = h5_read_string_list(file.id(), "classes", 1u << 16, where);
  if (p.classes.size() != cd[0]) fail("{}: 'classes' must list one name per class of 'counts'", where);

  h5_read_string_attr(file.id(), "model", p.model);
  if (H5Lexists(file.id(), "masks", H5P_DEFAULT) > 0) {
    H5Handle masks(H5Gopen2(file.id(), "masks", H5P_DEFAULT), H5Gclose);
    H5G_info_t info{};
    if (masks.id() < 0 || H5Gget_info(masks.id(), &info) < 0 || info.nlinks > 100000)
      fail("{}: cannot read '/masks'", where);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[256] = {};
      if (H5Lget_name_by_idx(masks.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT) > 0)
        p.masks.emplace_back(name);
    }
  }

  H5Handle index = open_dataset(file.id(), "moe_layer_decoder_index", where);
  p.decoder_index.resize(static_cast<size_t>(p.moe_layers));
  if (h5_dims(index.id()) != std::vector<hsize_t>{static_cast<hsize_t>(p.moe_layers)} ||
      H5Dread(index.id(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.decoder_index.data()) < 0) {
    fail("{}: cannot read 'moe_layer_decoder_index'", where);
  }
  return p;
}

void read_last_prompt_routing(const std::filesystem::path& path, ProfileData& p) {
  h5_silence_errors();
  const std::string where = path.string();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file.id() < 0) fail("{}: cannot open as HDF5", where);
  H5Handle requests(H5Gopen2(file.id(), "requests", H5P_DEFAULT), H5Gclose);
  if (requests.id() < 0) fail("{}: no /requests group", where);
  H5G_info_t info{};
  if (H5Gget_info(requests.id(), &info) < 0) fail("{}: cannot read /requests", where);
  const size_t classes = p.classes.size(), layers = static_cast<size_t>(p.moe_layers),
               experts = static_cast<size_t>(p.experts);
  p.last_counts.assign(classes * layers * experts, 0);
  p.last_gate_sum.assign(p.last_counts.size(), 0.0);
  p.last_tokens.assign(classes, 0);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const std::string name = std::to_string(i), at = where + ":/requests/" + name;
    H5Handle g(H5Gopen2(requests.id(), name.c_str(), H5P_DEFAULT), H5Gclose);
    if (g.id() < 0) fail("{}: missing", at);
    int64_t stop = 0;
    if (h5_read_int_attr(g.id(), "stop_code", stop) && stop == 3) continue;  // failed: never ran
    std::string cls;
    if (!h5_read_string_attr(g.id(), "class", cls)) fail("{}: no 'class' attribute", at);
    const auto c = std::find(p.classes.begin(), p.classes.end(), cls);
    if (c == p.classes.end()) fail("{}: class '{}' is not among /classes", at, cls);
    if (H5Lexists(g.id(), "routing", H5P_DEFAULT) <= 0)
      fail("{}: no routing trace; profile with --trace to rank at the last prompt token", at);
    H5Handle prompt(H5Dopen2(g.id(), "prompt_tokens", H5P_DEFAULT), H5Dclose);
    H5Handle ex(H5Dopen2(g.id(), "routing/experts", H5P_DEFAULT), H5Dclose);
    H5Handle wt(H5Dopen2(g.id(), "routing/weights", H5P_DEFAULT), H5Dclose);
    if (prompt.id() < 0 || ex.id() < 0 || wt.id() < 0) fail("{}: prompt_tokens or routing datasets missing", at);
    const auto pd = h5_dims(prompt.id()), ed = h5_dims(ex.id());
    if (pd.size() != 1 || pd[0] == 0 || ed.size() != 3 || ed[0] < pd[0] || ed[1] != layers || ed[2] == 0 ||
        ed[2] > 64 || h5_dims(wt.id()) != ed) {
      fail("{}: the routing trace does not match the prompt and the model", at);
    }
    // One hyperslab: the row of the last prompt position.
    const hsize_t k = ed[2], start[3] = {pd[0] - 1, 0, 0}, count[3] = {1, ed[1], k};
    std::vector<int32_t> row(layers * k);
    std::vector<float> weights(row.size());
    for (const auto& [ds, type, data] : {std::tuple{ex.id(), H5T_NATIVE_INT32, static_cast<void*>(row.data())},
                                         std::tuple{wt.id(), H5T_NATIVE_FLOAT, static_cast<void*>(weights.data())}}) {
      H5Handle space(H5Dget_space(ds), H5Sclose);
      H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start, nullptr, count, nullptr);
      H5Handle mem(H5Screate_simple(3, count, nullptr), H5Sclose);
      if (H5Dread(ds, type, mem.id(), space.id(), H5P_DEFAULT, data) < 0) fail("{}: cannot read the routing trace", at);
    }
    const auto ci = static_cast<size_t>(c - p.classes.begin());
    ++p.last_tokens[ci];
    for (size_t l = 0; l < layers; ++l) {
      for (size_t s = 0; s < k; ++s) {
        const int32_t e = row[l * k + s];
        if (e < 0) continue;
        if (static_cast<size_t>(e) >= experts) fail("{}: the routing trace names expert {}", at, e);
        const size_t idx = (ci * layers + l) * experts + static_cast<size_t>(e);
        ++p.last_counts[idx];
        p.last_gate_sum[idx] += weights[l * k + s];
      }
    }
  }
}

}  // namespace mote
