#include "mote/io/output_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "mote/io/file_guard.h"
#include "mote/util/error.h"
#include "mote/util/host.h"

namespace mote {

OutputFile::OutputFile(const std::filesystem::path& requested) : path_(requested) {
  h5_silence_errors();
  claim_output(requested, "--out");
  // A link to a regular file: the result replaces its target, not the link.
  std::error_code ec;
  if (std::filesystem::is_symlink(requested, ec)) {
    path_ = std::filesystem::weakly_canonical(requested, ec);
    if (ec) fail("{}: cannot resolve the symbolic link: {}", requested.string(), ec.message());
  }
  const auto parent = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");

  // One job per output: an exclusive lock, released by the kernel when the
  // job ends however it ends, so a dead job's lock never blocks the next.
  lock_path_ = path_;
  lock_path_ += ".lock";
  // A job that ends removes its lock file; the lock taken must be on the
  // file still at that path, or it locks nothing another job would see.
  for (int attempt = 0;; ++attempt) {
    lock_fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (lock_fd_ < 0) fail("{}: cannot create the output's lock file: {}", lock_path_.string(), std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) break;
    struct stat held {
    }, now{};
    if (::fstat(lock_fd_, &held) == 0 && ::stat(lock_path_.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev) {
      break;
    }
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (attempt == 10)
      fail("{}: the output's lock file keeps changing; is another job starting and ending?", lock_path_.string());
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    char holder[256] = {};
    const ssize_t n = ::pread(lock_fd_, holder, sizeof holder - 1, 0);
    ::close(lock_fd_);
    lock_fd_ = -1;
    std::string who(holder, n > 0 ? static_cast<size_t>(n) : 0);
    while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
    fail("{}: another mote job is writing this output ({}); wait for it to end, or choose another --out",
         path_.string(), who.empty() ? "its lock is " + lock_path_.string() : who);
  }
  const std::string me = fmt::format("pid {} on host {}\n", ::getpid(), host_name().empty() ? "?" : host_name());
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    fail("{}: cannot write the lock file: {}", lock_path_.string(), std::strerror(errno));
  }
  // Holding the lock, any temporary file of this output is a dead job's.
  const std::string stem = path_.filename().string() + ".tmp.";
  for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(stem) && entry.is_regular_file(ec)) {
      std::filesystem::remove(entry.path(), ec);
      spdlog::warn("{}: removed {}, left by a job that ended without finishing", path_.string(), entry.path().string());
    }
  }
  temp_path_ = path_;
  temp_path_ += ".tmp." + std::to_string(::getpid());
  const hid_t id = H5Fcreate(temp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) {
    // The destructor does not run for a constructor that throws: leave
    // neither the temporary file nor the lock file behind.
    std::error_code rm;
    std::filesystem::remove(temp_path_, rm);
    std::filesystem::remove(lock_path_, rm);
    ::close(lock_fd_);
    lock_fd_ = -1;
    fail("{}: cannot create HDF5 file (disk full?)", temp_path_.string());
  }
  file_ = H5Handle(id, H5Fclose);
}

OutputFile::~OutputFile() {
  if (!committed_) {
    file_.reset();
    std::error_code ec;
    std::filesystem::remove(temp_path_, ec);
  }
  if (lock_fd_ >= 0) {
    std::error_code ec;
    std::filesystem::remove(lock_path_, ec);
    ::close(lock_fd_);
  }
}

void OutputFile::ensure_room(uint64_t bytes) const {
  struct statvfs fs {};
  if (::statvfs(temp_path_.c_str(), &fs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (bytes > free_bytes) {
      fail("{}: cannot write HDF5 file (disk full?): it needs about {:.1f} MB and the file system has {:.1f} MB free",
           temp_path_.string(), static_cast<double>(bytes) / 1e6, static_cast<double>(free_bytes) / 1e6);
    }
  }
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && bytes > limit.rlim_cur) {
    fail(
        "{}: cannot write HDF5 file (disk full?): it needs about {:.1f} MB, more than the file-size limit of {:.1f} MB "
        "(ulimit -f)",
        temp_path_.string(), static_cast<double>(bytes) / 1e6, static_cast<double>(limit.rlim_cur) / 1e6);
  }
}

void OutputFile::commit() {
  check_output(path_, "--out");  // against the inputs read since it was named
  hand_over(path_);
}

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
