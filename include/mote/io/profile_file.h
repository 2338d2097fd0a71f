// Reading back the fTRI part of a mote HDF5 file (for ranking).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mote {

struct ProfileData {
  std::vector<std::string> classes;
  int moe_layers = 0, experts = 0;
  std::vector<uint64_t> counts;  // [class, phase, moe_layer, expert]
  std::vector<uint64_t> tokens;  // [class, phase]
  std::vector<int32_t> decoder_index;  // [moe_layer]
  std::string model;
  std::vector<std::string> masks;  // mask sets the file's requests could run under (groups of /masks)
};

// Reads and checks a profile (or generate) file; errors name the file and dataset.
ProfileData read_profile_file(const std::filesystem::path& path);

}  // namespace mote
