#include "mote/results/scan_file.h"

#include <cmath>

#include "mote/io/h5.h"
#include "mote/util/error.h"

namespace mote {
namespace {

std::vector<int32_t> pairs(const std::vector<std::pair<int, int>>& v) {
  std::vector<int32_t> out;
  for (const auto& [layer, expert] : v) out.insert(out.end(), {layer, expert});
  return out;
}

template <class T>
void read_exact(hid_t parent, const char* name, const std::vector<hsize_t>& dims, hid_t type, std::vector<T>& out,
                const std::string& where) {
  const hid_t id = H5Dopen2(parent, name, H5P_DEFAULT);
  if (id < 0) fail("{}: no dataset '{}' (is it a file of 'mote scan'?)", where, name);
  H5Handle ds(id, H5Dclose);
  if (h5_dims(ds.id()) != dims) fail("{}: '{}' does not have the shape the rest of the file implies", where, name);
  size_t n = 1;
  for (const hsize_t d : dims) n *= d;
  out.resize(n);
  if (n > 0 && H5Dread(ds.id(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail("{}: cannot read '{}'", where, name);
}

}  // namespace

void write_scan(hid_t root, const ScanData& s) {
  const hsize_t L = static_cast<hsize_t>(s.moe_layers), E = static_cast<hsize_t>(s.experts), P = s.prompt_ids.size(),
                C = s.candidates.size();
  std::vector<int32_t> index(s.decoder_index.begin(), s.decoder_index.end());
  h5_dataset(root, "moe_layer_decoder_index", {L}, index.data());
  H5Handle g = h5_create_group(root, "scan");
  const hid_t id = g.id();
  h5_attr_string(id, "metric", s.metric);
  h5_attr_string(id, s.metric == "token-prob" ? "tokens" : "continuation", s.metric_spec);
  h5_attr_string(id, "off_policy", s.policy);
  h5_attr_string(id, "search", s.search);
  h5_attr_int(id, "prefix_reuse", s.prefix_reuse ? 1 : 0);
  h5_attr_int(id, "requests", s.requests);
  h5_attr_int(id, "prompt_tokens", s.tokens);
  h5_attr_int(id, "layer_tokens", s.layer_tokens);
  h5_attr_int(id, "layer_tokens_without_reuse", s.layer_tokens_without_reuse);
  h5_attr_double(id, "seconds", s.seconds);
  h5_attr_string(
      id, "effect_note",
      "effect = metric at baseline - metric with the expert off, averaged over prompts; NaN where not scanned");
  h5_string_list(id, "prompts", s.prompt_ids);
  h5_dataset(id, "baseline", {P}, s.baseline.data());
  h5_axes(id, "baseline", "prompt");
  const std::vector<int32_t> candidates = pairs(s.candidates);
  h5_dataset(id, "candidates", {C, 2}, candidates.data());
  h5_axes(id, "candidates", "candidate,moe_layer_expert");
  // A scan of every expert lists them layer by layer: [prompt, moe_layer, expert].
  const bool every = C == L * E;
  h5_dataset(id, "per_prompt", every ? std::vector<hsize_t>{P, L, E} : std::vector<hsize_t>{P, C}, s.per_prompt.data());
  h5_axes(id, "per_prompt", every ? "prompt,moe_layer,expert" : "prompt,candidate");
  h5_dataset(id, "effect", {L, E}, s.effect.data());
  h5_axes(id, "effect", "moe_layer,expert");
  h5_dataset(id, "effect_sd", {L, E}, s.effect_sd.data());
  h5_axes(id, "effect_sd", "moe_layer,expert");
  if (!s.block_layer.empty()) {
    H5Handle b = h5_create_group(id, "blocks");
    const auto B = static_cast<hsize_t>(s.block_layer.size());
    h5_dataset(b.id(), "moe_layer", {B}, s.block_layer.data());
    h5_dataset(b.id(), "experts", {B, static_cast<hsize_t>(s.block_width)}, s.block_experts.data());
    h5_dataset(b.id(), "effect", {B}, s.block_effect.data());
    h5_dataset(b.id(), "effect_sd", {B}, s.block_effect_sd.data());
    std::vector<int32_t> chosen(s.block_chosen.begin(), s.block_chosen.end());
    h5_dataset(b.id(), "searched", {B}, chosen.data());
    if (s.blocks_agree >= 0) h5_attr_int(b.id(), "agrees_with_full_scan", s.blocks_agree);
  }
  if (!s.greedy.empty()) {
    H5Handle gr = h5_create_group(id, "greedy");
    const std::vector<int32_t> experts = pairs(s.greedy);
    h5_dataset(gr.id(), "experts", {s.greedy.size(), 2}, experts.data());
    h5_axes(gr.id(), "experts", "round,moe_layer_expert");
    h5_dataset(gr.id(), "metric", {s.greedy_metric.size()}, s.greedy_metric.data());
    h5_axes(gr.id(), "metric", "round");
  }
}

ScanData read_scan_file(const std::filesystem::path& path) {
  h5_silence_errors();
  const std::string where = path.string();
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) fail("{}: cannot open as HDF5", where);
  H5Handle file(fid, H5Fclose);
  if (H5Lexists(file.id(), "scan", H5P_DEFAULT) <= 0) fail("{}: no /scan group (is it a file of 'mote scan'?)", where);
  H5Handle g(H5Gopen2(file.id(), "scan", H5P_DEFAULT), H5Gclose);
  ScanData s;
  {
    const hid_t eid = H5Dopen2(g.id(), "effect", H5P_DEFAULT);
    if (eid < 0) fail("{}: no dataset '/scan/effect'", where);
    H5Handle effect(eid, H5Dclose);
    const auto d = h5_dims(effect.id());
    if (d.size() != 2 || d[0] == 0 || d[1] == 0 || d[0] > 4096 || d[1] > 65536)
      fail("{}: '/scan/effect' must be [moe_layer, expert]", where);
    s.moe_layers = static_cast<int>(d[0]);
    s.experts = static_cast<int>(d[1]);
  }
  const std::vector<hsize_t> le{static_cast<hsize_t>(s.moe_layers), static_cast<hsize_t>(s.experts)};
  read_exact(g.id(), "effect", le, H5T_NATIVE_DOUBLE, s.effect, where);
  read_exact(g.id(), "effect_sd", le, H5T_NATIVE_DOUBLE, s.effect_sd, where);
  read_exact(file.id(), "moe_layer_decoder_index", {le[0]}, H5T_NATIVE_INT32, s.decoder_index, where);
  h5_read_string_attr(g.id(), "metric", s.metric);
  if (!h5_read_string_attr(g.id(), "tokens", s.metric_spec)) h5_read_string_attr(g.id(), "continuation", s.metric_spec);
  h5_read_string_attr(g.id(), "off_policy", s.policy);
  h5_read_string_attr(g.id(), "search", s.search);
  return s;
}

}  // namespace mote
