// The mask sets of a job in its HDF5 file (docs/hdf5-format.md):
//   /masks/<name>   attrs off_policy, on_policy, shared_gain, id, description (mask-file text), storage
//   storage dense (at most kDenseMaskSets sets): off, on (int32 0/1 [moe_layer, expert]) and gain (float32, same shape)
//   storage sparse (more): off, on, gain_experts (int32 [entry, 2]: moe_layer, expert) and gain (float32 [entry])
#pragma once

#include <hdf5.h>

#include <vector>

#include "mote/model/expert_mask.h"

namespace mote {

constexpr size_t kDenseMaskSets = 64;

void write_masks(hid_t parent, const std::vector<ExpertMask>& masks);

}  // namespace mote
