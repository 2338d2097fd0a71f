// The fTRI counters in an HDF5 file (see docs/hdf5-format.md):
//   counts    uint64  [class, phase, moe_layer, expert]  tokens routed
//   gate_sum  float64 [class, phase, moe_layer, expert]  sum of their gate weights
//   classes   strings [class]   phases strings [phase]
//   moe_layer_decoder_index  int32 [moe_layer]
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

#include "mote/model/expert_counters.h"

namespace mote {

void write_counters(hid_t parent, const ExpertCounters& counters, const std::vector<std::string>& classes,
                    const std::vector<int>& moe_layer_decoder_index);

}  // namespace mote
