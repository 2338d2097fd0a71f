#include "mote/results/mask_output.h"

#include "mote/io/h5.h"

namespace mote {

void write_masks(hid_t parent, const std::vector<ExpertMask>& masks) {
  H5Handle group = h5_create_group(parent, "masks");
  const bool sparse = masks.size() > kDenseMaskSets + 1;
  for (const auto& m : masks) {
    if (m.id == 0) continue;  // "none": unsteered
    H5Handle g = h5_create_group(group.id(), m.name);
    h5_attr_int(g.id(), "id", m.id);
    h5_attr_string(g.id(), "off_policy", off_policy_name(m.off_policy));
    h5_attr_string(g.id(), "on_policy", on_policy_name(m.on_policy));
    h5_attr_double(g.id(), "shared_gain", m.shared_gain);
    h5_attr_string(g.id(), "description", m.description);
    h5_attr_int(g.id(), "switches_nothing", m.switches_nothing() ? 1 : 0);
    if (sparse) {
      // Lists of (MoE layer, expert): a job of thousands of mask sets, each
      // switching a few experts, stays small at DeepSeek-R1's 14,848 experts.
      std::vector<int32_t> off, on, gained;
      std::vector<float> gains;
      for (int l = 0; l < m.moe_layers; ++l) {
        for (int e = 0; e < m.experts; ++e) {
          if (m.is_off(l, e)) off.insert(off.end(), {l, e});
          if (m.is_on(l, e)) on.insert(on.end(), {l, e});
          if (m.gain(l, e) != 1.0f) {
            gained.insert(gained.end(), {l, e});
            gains.push_back(m.gain(l, e));
          }
        }
      }
      h5_attr_string(g.id(), "storage", "sparse");
      h5_dataset(g.id(), "off", {off.size() / 2, 2}, off.data());
      h5_dataset(g.id(), "on", {on.size() / 2, 2}, on.data());
      h5_dataset(g.id(), "gain_experts", {gained.size() / 2, 2}, gained.data());
      h5_dataset(g.id(), "gain", {gains.size()}, gains.data());
      for (const char* name : {"off", "on", "gain_experts"}) h5_axes(g.id(), name, "entry,moe_layer_expert");
      continue;
    }
    h5_attr_string(g.id(), "storage", "dense");
    std::vector<int32_t> off, on;
    for (int l = 0; l < m.moe_layers; ++l) {
      for (int e = 0; e < m.experts; ++e) {
        off.push_back(m.is_off(l, e));
        on.push_back(m.is_on(l, e));
      }
    }
    const std::vector<hsize_t> dims{static_cast<hsize_t>(m.moe_layers), static_cast<hsize_t>(m.experts)};
    h5_dataset(g.id(), "off", dims, off.data());
    h5_dataset(g.id(), "on", dims, on.data());
    std::vector<float> gains(static_cast<size_t>(m.moe_layers) * m.experts);
    for (int l = 0; l < m.moe_layers; ++l)
      for (int e = 0; e < m.experts; ++e) gains[m.index(l, e)] = m.gain(l, e);
    h5_dataset(g.id(), "gain", dims, gains.data());
    for (const char* name : {"off", "on", "gain"}) h5_axes(g.id(), name, "moe_layer,expert");
  }
}

}  // namespace mote
