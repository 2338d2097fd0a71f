// An HDF5 result file that appears atomically: it is written as
// "<path>.tmp.<pid>" beside the final path and renamed over it only by
// commit(). Creating it up front fails early on an unwritable location; a
// crash or error leaves any earlier file at `path` untouched.
//
// The path must be new or a regular file: a directory, device, FIFO or
// socket (or a symbolic link to one) is refused, never replaced; a link to
// a regular file has its target replaced. One output, one job: the output
// is locked ("<path>.lock", holding the job's host and pid) for the job's
// lifetime, which covers its checkpoint directory too, and temporary files
// left by jobs that died are removed.
#pragma once

#include <filesystem>

#include "mote/io/h5.h"

namespace mote {

class OutputFile {
 public:
  explicit OutputFile(const std::filesystem::path& path);
  ~OutputFile();  // removes the temporary file unless committed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  hid_t root() const { return file_.id(); }
  const std::filesystem::path& path() const { return path_; }
  void commit();
  // Fails unless the file system (and this process's file-size limit)
  // leave room for `bytes` more: libhdf5 can crash on a write that fails
  // half-way, so a known shortage is an error before writing.
  void ensure_room(uint64_t bytes) const;
  // Closes the file unfinished and moves it to `dest` instead of `path`.
  void hand_over(const std::filesystem::path& dest);

 private:
  std::filesystem::path path_, temp_path_, lock_path_;
  int lock_fd_ = -1;
  H5Handle file_;
  bool committed_ = false;
};

}  // namespace mote
