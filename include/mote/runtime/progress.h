// Progress of a long job: requests done of total, tokens/s and
// time left. On a terminal a live line on stderr; otherwise a log line
// every `interval` seconds (and one at the end).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace mote {

class Progress {
 public:
  // `tokens` names what request_done() counts.
  explicit Progress(size_t total, double interval_seconds = 30.0, const char* tokens = "generated tokens");
  void request_done(size_t tokens);
  void finish();

 private:
  void report(bool final);
  size_t total_, done_ = 0;
  uint64_t tokens_ = 0;
  bool live_;
  double interval_;
  const char* what_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace mote
