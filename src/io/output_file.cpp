#include "mote/io/output_file.h"

#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mote/util/error.h"

namespace mote {

OutputFile::OutputFile(const std::filesystem::path& path) : path_(path) {
  h5_silence_errors();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{}: output path is a directory", path.string());
  const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(parent, ec)) fail("{}: output directory {} does not exist", path.string(), parent.string());
  if (::access(parent.c_str(), W_OK) != 0) fail("{}: output directory {} is not writable: {}", path.string(), parent.string(), std::strerror(errno));
  temp_path_ = path;
  temp_path_ += ".tmp." + std::to_string(::getpid());
  const hid_t id = H5Fcreate(temp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail("{}: cannot create HDF5 file", temp_path_.string());
  file_ = H5Handle(id, H5Fclose);
}

OutputFile::~OutputFile() {
  if (committed_) return;
  file_.reset();
  std::error_code ec;
  std::filesystem::remove(temp_path_, ec);
}

void OutputFile::ensure_room(uint64_t bytes) const {
  struct statvfs fs {};
  if (::statvfs(temp_path_.c_str(), &fs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (bytes > free_bytes) {
      fail("{}: cannot write HDF5 file (disk full?): it needs about {:.1f} MB and the file system has {:.1f} MB free", temp_path_.string(),
           static_cast<double>(bytes) / 1e6, static_cast<double>(free_bytes) / 1e6);
    }
  }
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && bytes > limit.rlim_cur) {
    fail("{}: cannot write HDF5 file (disk full?): it needs about {:.1f} MB, more than the file-size limit of {:.1f} MB (ulimit -f)",
         temp_path_.string(), static_cast<double>(bytes) / 1e6, static_cast<double>(limit.rlim_cur) / 1e6);
  }
}

void OutputFile::commit() { hand_over(path_); }

void OutputFile::hand_over(const std::filesystem::path& dest) {
  if (H5Fflush(file_.id(), H5F_SCOPE_GLOBAL) < 0 || !file_.close()) {
    fail("{}: cannot write HDF5 file (disk full?)", temp_path_.string());
  }
  if (std::rename(temp_path_.c_str(), dest.c_str()) != 0) {
    const int err = errno;
    std::error_code ec;
    std::filesystem::remove(temp_path_, ec);
    fail("{}: cannot move the written file into place: {}", dest.string(), std::strerror(err));
  }
  committed_ = true;
}

}  // namespace mote
