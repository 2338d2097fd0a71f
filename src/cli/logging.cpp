#include "mote/cli/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "mote/util/error.h"

namespace mote {

void setup_logging(const std::string& level, int rank) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    fail("--log-level '{}' is not one of trace, debug, info, warn, error, off", level);
  }
  auto logger = spdlog::stderr_color_mt("mote");
  logger->set_pattern(rank == 0 ? "[%H:%M:%S.%e] [%^%l%$] %v"
                                : fmt::format("[%H:%M:%S.%e] [rank {}] [%^%l%$] %v", rank));
  logger->set_level(parsed);
  spdlog::set_default_logger(logger);
}

}  // namespace mote
