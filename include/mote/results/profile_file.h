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
  std::vector<double> gate_sum;  // [class, phase, moe_layer, expert]
  std::vector<uint64_t> tokens;  // [class, phase]
  // The last prompt position of every request (where the answer begins),
  // from the routing traces: [class, moe_layer, expert] and [class].
  // Filled by read_last_prompt_routing().
  std::vector<uint64_t> last_counts;
  std::vector<double> last_gate_sum;
  std::vector<uint64_t> last_tokens;
  std::vector<int32_t> decoder_index;  // [moe_layer]
  std::string model;
  std::vector<std::string> masks;             // mask sets the file's requests could run under (groups of /masks)
  int64_t requests = 0, failed_requests = 0;  // root attributes request_count and failed_request_count
};

// Reads and checks a profile (or generate) file; errors name the file and
// dataset. With `tool` ("mote diff"), the file must be a profile: a scan or
// experiment file is refused by its kind, a profile whose requests all
// failed is refused, and one with failed requests is warned about (they
// are left out of its counts).
ProfileData read_profile_file(const std::filesystem::path& path, const char* tool = nullptr);
// Counts the routing of every request's last prompt position from its
// trace (/requests/<i>/routing); a file without traces is an error that
// says to profile with --trace.
void read_last_prompt_routing(const std::filesystem::path& path, ProfileData& data);

}  // namespace mote
