// This machine's host name, for messages and for telling ranks on one host
// from ranks on another.
#pragma once

#include <unistd.h>

#include <string>

namespace mote {

// The host name, or "" when the system does not say.
inline std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

}  // namespace mote
