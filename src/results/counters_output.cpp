#include "mote/results/counters_output.h"

#include "mote/io/h5.h"

namespace mote {

void write_counters(hid_t parent, const ExpertCounters& c, const std::vector<std::string>& classes,
                    const std::vector<int>& moe_layer_decoder_index) {
  const std::vector<hsize_t> dims{static_cast<hsize_t>(c.classes), kPhaseCount, static_cast<hsize_t>(c.moe_layers),
                                  static_cast<hsize_t>(c.experts)};
  h5_dataset(parent, "counts", dims, c.tokens.data(), true);
  h5_dataset(parent, "gate_sum", dims, c.gate_sum.data(), true);
  h5_axes(parent, "counts", "class,phase,moe_layer,expert");
  h5_axes(parent, "gate_sum", "class,phase,moe_layer,expert");
  h5_string_list(parent, "classes", classes);
  h5_string_list(parent, "phases", {"prompt", "generated"});
  std::vector<int32_t> index(moe_layer_decoder_index.begin(), moe_layer_decoder_index.end());
  h5_dataset(parent, "moe_layer_decoder_index", {index.size()}, index.data());
}

}  // namespace mote
