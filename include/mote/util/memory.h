// Memory use of this process, from /proc: what a rank actually holds, for
// reports and benchmarks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace mote {

// Peak resident set size (VmHWM), in bytes; 0 if unavailable.
uint64_t peak_rss_bytes();

// Resident set size now (VmRSS), in bytes; 0 if unavailable.
uint64_t current_rss_bytes();

// Resident bytes of this process's mappings of `files` (the pages of the
// weight files this process has touched), from /proc/self/smaps.
uint64_t mapped_rss_bytes(const std::vector<std::filesystem::path>& files);

}  // namespace mote
