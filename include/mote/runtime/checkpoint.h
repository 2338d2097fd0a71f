// Checkpoints of long jobs: finished requests are written into part files
// in "<out>.checkpoint/", each written aside and renamed, so a part is
// either complete or absent whatever happens to the job. Beside each part,
// "part-N.h5.sum" records its size and hash; a part that does not match
// (cut short, damaged, or never written by mote) is refused before libhdf5
// reads any of it. Each part holds
// only the requests finished since the previous one, so a checkpoint costs
// what it adds. --resume reads the parts back, and the final file copies
// their request groups, so a resumed job ends with the same file as an
// uninterrupted one.
#pragma once

#include <hdf5.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "mote/io/h5.h"
#include "mote/io/output_file.h"
#include "mote/runtime/generator.h"

namespace mote {

// What a resumed job needs of a request finished before: its tokens, stop
// reason and expert counts (for printing and the in-order totals).
using FinishedRequests = std::map<size_t, GenerationResult>;

class Checkpoint {
 public:
  // `fingerprint` identifies the job; resuming with another one is refused.
  // The directory is created with the first part.
  Checkpoint(std::filesystem::path dir, std::string fingerprint, int every);
  ~Checkpoint();

  // Reads the complete parts of an earlier run of the same job (none if
  // the directory does not exist).
  FinishedRequests load() const;
  // Group to write the next finished request into (the open part).
  hid_t requests_group();
  // Call after each request written to requests_group(); closes the part
  // into place every `every` requests.
  void request_written();
  // Closes the open part into place.
  void flush();
  // Copies every part's request groups into `requests_group` of the final file.
  void copy_into(hid_t requests_group) const;
  // Moves an unfinished result file whose /requests holds finished requests
  // into place as the next part (a job without --checkpoint-every, stopped).
  void adopt(OutputFile& file);
  int parts() const { return next_part_; }
  // Requests in the open part, and when it opened.
  int open_requests() const { return in_part_; }
  std::chrono::steady_clock::time_point opened() const { return opened_; }
  uint64_t bytes() const;  // size of the complete parts on disk
  void remove() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::string fingerprint_;
  void ensure_dir();
  std::filesystem::path next_part_path() const;

  int every_;
  int next_part_ = 0;
  int in_part_ = 0;
  std::chrono::steady_clock::time_point opened_;
  H5Handle part_, part_requests_;
  std::filesystem::path part_temp_, part_final_;
};

}  // namespace mote
