// The mask sets of a job in its HDF5 file (docs/hdf5-format.md):
//   /masks/<name>   attrs off_policy, on_policy, shared_gain, id, description (mask-file text)
//                   datasets off, on (int32 0/1 [moe_layer, expert]) and gain (float32, same shape)
#pragma once

#include <hdf5.h>

#include <vector>

#include "mote/model/expert_mask.h"

namespace mote {

void write_masks(hid_t parent, const std::vector<ExpertMask>& masks);

}  // namespace mote
