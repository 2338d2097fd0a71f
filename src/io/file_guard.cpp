#include "mote/io/file_guard.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "mote/util/error.h"
#include "mote/util/file_kind.h"

namespace mote {
namespace {

struct Input {
  dev_t dev;
  ino_t ino;
  std::filesystem::path path;
  std::string what;
};

struct Output {
  std::filesystem::path resolved;  // symbolic links followed, for comparing
  std::filesystem::path path;
  std::string what;
};

struct Guard {
  std::mutex mutex;
  std::vector<Input> inputs;
  std::vector<Output> outputs;
};

Guard& guard() {
  static Guard g;
  return g;
}

void note_one(Guard& g, const std::filesystem::path& path, const struct stat& st, const std::string& what) {
  for (const Input& in : g.inputs) {
    if (in.dev == st.st_dev && in.ino == st.st_ino) return;
  }
  g.inputs.push_back({st.st_dev, st.st_ino, path, what});
}

std::filesystem::path resolved(const std::filesystem::path& path) {
  std::error_code ec;
  auto r = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  return ec ? path.lexically_normal() : r;
}

// Everything but the comparison with the other outputs; the caller holds the lock.
void check_locked(Guard& g, const std::filesystem::path& path, const std::string& what) {
  if (path.empty()) fail("{} is empty: name the file to write", what);
  const std::string shown = path.string();
  struct stat st {};
  std::filesystem::path target = path;
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      const auto link = std::filesystem::read_symlink(path, ec);
      struct stat to {};
      if (::stat(path.c_str(), &to) != 0) {
        fail(
            "{} {}: is a symbolic link to {}, which does not exist; refusing to replace the link (name its target or a "
            "new file)",
            what, shown, ec ? std::string("?") : link.string());
      }
      if (!S_ISREG(to.st_mode)) {
        fail("{} {}: is a symbolic link to {}; refusing to replace it (name a new or regular file)", what, shown,
             file_kind(to.st_mode));
      }
      target = resolved(path);
      st = to;
    } else if (!S_ISREG(st.st_mode)) {
      fail("{} {}: is {}; refusing to replace it (name a new or regular file)", what, shown, file_kind(st.st_mode));
    }
    for (const Input& in : g.inputs) {
      if (in.dev == st.st_dev && in.ino == st.st_ino) {
        if (in.path == path)
          fail("{} {}: is {}; writing it would destroy it (name another file)", what, shown, in.what);
        fail("{} {}: is {} ({}, the same file); writing it would destroy it (name another file)", what, shown, in.what,
             in.path.string());
      }
    }
  }
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) != 0 || !S_ISDIR(ds.st_mode))
    fail("{} {}: the directory {} does not exist", what, shown, dir.string());
  if (::access(dir.c_str(), W_OK) != 0)
    fail("{} {}: the directory {} is not writable: {}", what, shown, dir.string(), std::strerror(errno));
}

}  // namespace

void note_input(const std::filesystem::path& path, const std::string& what) {
  if (path.empty()) return;
  Guard& g = guard();
  std::lock_guard lock(g.mutex);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    note_one(g, path, st, what);
    return;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
    struct stat est {};
    if (::stat(entry.path().c_str(), &est) == 0 && S_ISREG(est.st_mode))
      note_one(g, entry.path(), est, "a file of " + what);
  }
}

void claim_output(const std::filesystem::path& path, const std::string& what) {
  Guard& g = guard();
  std::lock_guard lock(g.mutex);
  check_locked(g, path, what);
  const auto r = resolved(path);
  for (const Output& out : g.outputs) {
    if (out.resolved != r) continue;
    if (out.what == what) return;  // named again by the same option
    fail("{} {}: {} writes this file too; two outputs cannot share one file", what, path.string(), out.what);
  }
  g.outputs.push_back({r, path, what});
}

void check_output(const std::filesystem::path& path, const std::string& what) {
  Guard& g = guard();
  std::lock_guard lock(g.mutex);
  check_locked(g, path, what);
}

void check_claimed_outputs() {
  Guard& g = guard();
  std::lock_guard lock(g.mutex);
  for (const Output& out : g.outputs) check_locked(g, out.path, out.what);
}

void reset_file_guard() {
  Guard& g = guard();
  std::lock_guard lock(g.mutex);
  g.inputs.clear();
  g.outputs.clear();
}

}  // namespace mote
