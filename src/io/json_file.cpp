#include "mote/io/json_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_set>
#include <vector>

#include "mote/io/file_guard.h"
#include "mote/util/error.h"
#include "mote/util/file_kind.h"

namespace mote {

std::string read_input_file(const std::filesystem::path& path, const char* what, uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then
  // decides on the file actually opened.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open {}: {}", path.string(), what, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("{}: cannot stat: {}", path.string(), std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail("{}: the {} is {}; it must be a regular file", path.string(), what, file_kind(st.st_mode));
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    fail("{}: the {} has {} bytes, more than the {} it may hold", path.string(), what, st.st_size, max_bytes);
  }
  note_input(path, fmt::format("the {} the command reads", what));
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t got = ::read(fd, text.data() + done, text.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("{}: read error: {}", path.string(), std::strerror(errno));
    if (got == 0) break;  // the file shrank while read
    done += static_cast<size_t>(got);
  }
  text.resize(done);
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  return text;
}

void check_line_endings(std::string_view text, const std::filesystem::path& path, const char* what) {
  const size_t cr = text.find('\r');
  if (cr == std::string_view::npos || text.find('\n') != std::string_view::npos) return;
  if (text.find_first_not_of("\r", cr) == std::string_view::npos) return;  // one line, CR at its end
  fail(
      "{}: the {} ends its lines in CR alone (classic Mac OS line endings), so it would read as one line; convert them "
      "to "
      "LF first, e.g. tr '\\r' '\\n' < FILE > NEW",
      path.string(), what);
}

std::string read_text_file(const std::filesystem::path& path) { return read_input_file(path, "input", 4ull << 30); }

namespace {

template <typename Json>
Json parse_any_json(std::string_view text, const std::string& where) {
  // A key given twice in one object would silently keep the last value.
  std::vector<std::unordered_set<std::string>> keys;
  std::string duplicate;
  const typename Json::parser_callback_t check = [&](int, typename Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      keys.pop_back();
    } else if (event == Json::parse_event_t::key && !keys.empty()) {
      const auto& key = parsed.template get_ref<const std::string&>();
      if (!keys.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  try {
    auto j = Json::parse(text.begin(), text.end(), check);
    if (!duplicate.empty()) fail("{}: key '{}' appears twice in one object", where, duplicate);
    return j;
  } catch (const typename Json::parse_error& e) {
    fail("{}: invalid JSON at byte {}: {}", where, e.byte, e.what());
  } catch (const typename Json::exception& e) {
    // For example a number too large for any numeric type.
    fail("{}: invalid JSON: {}", where, e.what());
  }
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  return parse_any_json<nlohmann::json>(text, where);
}

nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& where) {
  return parse_any_json<nlohmann::ordered_json>(text, where);
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  return parse_json(read_text_file(path), path.string());
}

}  // namespace mote
