// The /scan group of a knockout scan's HDF5 file (docs/hdf5-format.md):
// the metric per prompt at baseline, its change with each candidate expert
// switched off, per expert the mean change and its spread, the blocks of a
// two-level search, the experts of a greedy selection, and the cost.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace mote {

struct ScanData {
  std::string metric, metric_spec, policy, search;
  int moe_layers = 0, experts = 0;
  std::vector<int32_t> decoder_index;           // [moe_layer]
  std::vector<std::string> prompt_ids;          // [prompt]
  std::vector<double> baseline;                 // [prompt] metric with no candidate off
  std::vector<std::pair<int, int>> candidates;  // scanned experts (moe_layer, expert)
  std::vector<double> per_prompt;               // [prompt, candidate] baseline - knockout
  std::vector<double> effect, effect_sd;        // [moe_layer, expert]; NaN where not scanned
  // Two-level search: the blocks knocked out first.
  int block_width = 0;
  std::vector<int32_t> block_layer;                   // [block]
  std::vector<int32_t> block_experts;                 // [block, block_width], -1 padded
  std::vector<double> block_effect, block_effect_sd;  // [block]
  std::vector<uint8_t> block_chosen;                  // [block] 1 for blocks searched expert by expert
  int blocks_agree = -1;  // --search both: 1 when the blocks' top experts are the full scan's, 0 when not
  // Greedy selection: experts in the order chosen, and the mean metric with
  // the first i + 1 of them off.
  std::vector<std::pair<int, int>> greedy;
  std::vector<double> greedy_metric;
  // Cost.
  int64_t requests = 0, tokens = 0, layer_tokens = 0, layer_tokens_without_reuse = 0;
  double seconds = 0;
  bool prefix_reuse = true;
};

void write_scan(hid_t root, const ScanData& scan);
// Reads the /scan group back (for ranking); errors name the file and dataset.
ScanData read_scan_file(const std::filesystem::path& path);

}  // namespace mote
