#include "mote/runtime/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

#include "mote/util/memory.h"

namespace mote {

Progress::Progress(size_t total, double interval_seconds, const char* tokens)
    : total_(total),
      live_(::isatty(STDERR_FILENO) != 0),
      interval_(interval_seconds),
      what_(tokens),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void Progress::request_done(size_t tokens) {
  ++done_;
  tokens_ += tokens;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if ((live_ && since >= 0.2) || since >= interval_) report(false);
}

void Progress::finish() { report(true); }

void Progress::report(bool final) {
  last_ = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(last_ - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(tokens_) / elapsed : 0.0;
  const double left = done_ > 0 ? elapsed / static_cast<double>(done_) * static_cast<double>(total_ - done_) : 0.0;
  if (live_) {
    std::fprintf(stderr, "\r%zu/%zu requests, %.1f %s/s, %.0f s left   %s", done_, total_, rate, what_, left,
                 final ? "\n" : "");
    std::fflush(stderr);
  } else {
    // Resident memory in the log line shows a long job's footprint staying flat.
    spdlog::info("progress: {}/{} requests, {:.1f} {}/s, {:.0f} s left, {:.1f} MB resident", done_, total_, rate, what_,
                 left, static_cast<double>(current_rss_bytes()) / 1e6);
  }
}

}  // namespace mote
