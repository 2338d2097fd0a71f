#include "mote/io/text_output.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "mote/io/file_guard.h"
#include "mote/util/error.h"

namespace mote {

void check_text_output(const std::filesystem::path& path, const char* what) { claim_output(path, what); }

void write_text_output(const std::filesystem::path& path, const std::string& text, const char* what) {
  check_output(path, what);
  // rename() would replace a link, not the file it names: write beside the target.
  std::error_code ec;
  std::filesystem::path dest = path;
  if (std::filesystem::is_symlink(path, ec)) {
    dest = std::filesystem::weakly_canonical(path, ec);
    if (ec) dest = path;
  }
  const std::string temp = dest.string() + fmt::format(".tmp.{}", ::getpid());
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    if (!file) fail("{} {}: cannot create {} beside it", what, path.string(), temp);
    file << text;
    file.close();
    if (!file) {
      std::remove(temp.c_str());
      fail("{} {}: cannot write (disk full?)", what, path.string());
    }
  }
  if (std::rename(temp.c_str(), dest.c_str()) != 0) {
    std::remove(temp.c_str());
    fail("{} {}: cannot move the written file into place", what, path.string());
  }
}

}  // namespace mote
