#include "mote/util/memory.h"

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace mote {

uint64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

uint64_t current_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

uint64_t mapped_rss_bytes(const std::vector<std::filesystem::path>& files) {
  std::set<std::string> wanted;
  for (const auto& f : files) {
    std::error_code ec;
    const auto canonical = std::filesystem::canonical(f, ec);
    wanted.insert(ec ? f.string() : canonical.string());
  }
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool counting = false;
  uint64_t total = 0;
  while (std::getline(in, line)) {
    // A mapping header starts with "start-end perms offset dev inode [path]".
    const auto dash = line.find('-');
    if (dash != std::string::npos && dash > 0 && line.find(':') > dash &&
        std::isxdigit(static_cast<unsigned char>(line[0]))) {
      const auto slash = line.find('/');
      counting = slash != std::string::npos && wanted.count(line.substr(slash)) > 0;
      continue;
    }
    if (counting && line.rfind("Rss:", 0) == 0) total += std::stoull(line.substr(4)) * 1024;
  }
  return total;
}

}  // namespace mote
