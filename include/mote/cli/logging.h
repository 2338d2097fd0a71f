// Log setup shared by the subcommands: spdlog to stderr, so that stdout
// carries only the generated text.
#pragma once

#include <string>

namespace mote {

// `level`: trace, debug, info, warn, error or off (an Error otherwise).
// Lines of ranks other than 0 carry their rank.
void setup_logging(const std::string& level, int rank = 0);

}  // namespace mote
