// A scan's checkpoint: every finished (phase, request) and its metric,
// appended to OUT.checkpoint/scan-results.txt as they come in, so that a
// stopped or crashed scan resumes (--resume) without running them again.
// A scan's phases follow from the metrics of the earlier ones, so the
// resumed scan takes the same path. Private to the runtime.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <utility>

namespace mote {

class ScanCheckpoint {
 public:
  // `fingerprint` names the scan (inputs and options that change results):
  // a checkpoint of another scan is refused, and so is starting over an
  // existing one without `resume`.
  ScanCheckpoint(std::filesystem::path dir, const std::string& fingerprint, bool resume, int every);
  ~ScanCheckpoint();
  ScanCheckpoint(const ScanCheckpoint&) = delete;
  ScanCheckpoint& operator=(const ScanCheckpoint&) = delete;

  // The metric of request `id` of phase `phase` if an earlier run finished it.
  const double* find(int phase, uint64_t id) const;
  size_t resumed() const { return done_.size(); }
  // A finished request; written with every `every`-th (and by flush()).
  void add(int phase, uint64_t id, double metric);
  // Writes what waits. Returns the number of results the checkpoint holds.
  size_t flush();
  void remove();
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::string fingerprint_;
  int every_;
  std::map<std::pair<int, uint64_t>, double> done_;
  std::string pending_;
  size_t pending_count_ = 0, written_ = 0;
  std::FILE* file_ = nullptr;
};

}  // namespace mote
