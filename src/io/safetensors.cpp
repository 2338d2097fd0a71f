#include "mote/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mote/io/file_guard.h"
#include "mote/io/json_file.h"
#include "mote/util/checked_math.h"
#include "mote/util/error.h"
#include "mote/util/file_kind.h"
#include "mote/util/stop_signal.h"

namespace mote {
namespace {

// The format caps headers at 100 MB; anything larger is hostile or corrupt.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

uint64_t TensorView::numel() const { return checked_product(shape).value_or(0); }

std::string TensorView::shape_string() const {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

namespace {

uint64_t header_length(std::span<const std::byte> prefix, uint64_t file_size, const std::string& where) {
  if (file_size < 8 || prefix.size() < 8) {
    fail("{}: truncated: {} bytes, a safetensors file starts with an 8-byte header length", where, file_size);
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(prefix[static_cast<size_t>(i)]);
  if (header_len > file_size - 8) {
    fail("{}: header length {} runs past the end of the file ({} bytes)", where, header_len, file_size);
  }
  if (header_len > kMaxHeaderBytes) fail("{}: header length {} exceeds the 100 MB limit", where, header_len);
  return header_len;
}

// Reads the 8-byte length and the header of the file open as `fd`.
std::vector<std::byte> read_header_bytes(int fd, uint64_t file_size, const std::string& where) {
  std::vector<std::byte> prefix(8);
  const auto read_at = [&](std::byte* dst, size_t n, off_t at) {
    size_t done = 0;
    while (done < n) {
      const ssize_t got = ::pread(fd, dst + done, n - done, at + static_cast<off_t>(done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0)
        fail("{}: cannot read the header: {}", where, got < 0 ? std::strerror(errno) : "unexpected end of file");
      done += static_cast<size_t>(got);
    }
  };
  if (file_size < 8) header_length(prefix, file_size, where);
  read_at(prefix.data(), 8, 0);
  const uint64_t header_len = header_length(prefix, file_size, where);
  prefix.resize(8 + header_len);
  read_at(prefix.data() + 8, header_len, 8);
  return prefix;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path, bool map_now) : path_(path) {
  // O_NONBLOCK: a FIFO in the model's place must not wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("{}: cannot stat: {}", path.string(), std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("{}: is {}, not a regular file", path.string(), file_kind(st.st_mode));
  note_input(path, "a weights file the command reads");
  size_ = static_cast<uint64_t>(st.st_size);
  const auto header = read_header_bytes(fd, size_, path.string());
  try {
    tensors_ = parse_safetensors_header(header, size_, path.string(), &path_);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected header structure: {}", path.string(), e.what());
  }
  if (map_now) map();
}

void SafetensorsFile::map() {
  if (file_) return;
  auto file = std::make_unique<MappedFile>(path_);
  if (file->bytes().size() != size_) {
    fail("{}: the file changed size since its header was read ({} bytes, then {})", path_.string(), size_,
         file->bytes().size());
  }
  const uint64_t header_len = header_length(file->bytes(), size_, path_.string());
  for (auto& [name, view] : tensors_) view.data = file->bytes().data() + 8 + header_len + view.offset;
  file_ = std::move(file);
}

std::map<std::string, TensorView> parse_safetensors(std::span<const std::byte> bytes, const std::string& where,
                                                    const std::filesystem::path* file) {
  auto tensors = parse_safetensors_header(bytes, bytes.size(), where, file);
  const uint64_t data_start = 8 + header_length(bytes, bytes.size(), where);
  for (auto& [name, view] : tensors) view.data = bytes.data() + data_start + view.offset;
  return tensors;
}

std::map<std::string, TensorView> parse_safetensors_header(std::span<const std::byte> prefix, uint64_t file_size,
                                                           const std::string& where,
                                                           const std::filesystem::path* file) {
  std::map<std::string, TensorView> tensors;
  const uint64_t header_len = header_length(prefix, file_size, where);
  if (prefix.size() < 8 + header_len) fail("{}: truncated header", where);
  const std::string_view header_text(reinterpret_cast<const char*>(prefix.data()) + 8, header_len);
  const nlohmann::json header = parse_json(header_text, where + " (safetensors header)");
  if (!header.is_object()) fail("{}: header is not a JSON object", where);

  const uint64_t data_size = file_size - 8 - header_len;
  struct Extent {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Extent> extents;

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object()) fail("{}: tensor '{}': entry is not an object", where, name);
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string())
      fail("{}: tensor '{}': missing or non-string 'dtype'", where, name);
    if (shape_it == entry.end() || !shape_it->is_array())
      fail("{}: tensor '{}': missing or non-array 'shape'", where, name);
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      fail("{}: tensor '{}': 'data_offsets' must be an array of two integers", where, name);
    }
    TensorView view;
    view.name = name;
    const std::string dtype_str = dtype_it->get<std::string>();
    const auto known = dtype_from_name(dtype_str);
    if (!known) fail("{}: tensor '{}': unknown dtype '{}'", where, name, dtype_str);
    view.dtype = *known;
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned()) fail("{}: tensor '{}': shape entries must be non-negative integers", where, name);
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(INT64_MAX)) fail("{}: tensor '{}': dimension {} too large", where, name, d);
      view.shape.push_back(static_cast<int64_t>(d));
    }
    const auto& offs = *offsets_it;
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned()) {
      fail("{}: tensor '{}': data_offsets must be non-negative integers", where, name);
    }
    const uint64_t begin = offs[0].get<uint64_t>();
    const uint64_t end = offs[1].get<uint64_t>();
    if (end < begin) fail("{}: tensor '{}': data_offsets [{}, {}] end before they begin", where, name, begin, end);
    if (end > data_size) {
      fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes)", where, name, begin, end,
           data_size);
    }
    const auto numel = checked_product(view.shape);
    const auto expected = numel ? checked_mul(*numel, static_cast<uint64_t>(dtype_size(*known))) : std::nullopt;
    if (!expected) fail("{}: tensor '{}': shape {} overflows", where, name, view.shape_string());
    if (*expected != end - begin) {
      fail("{}: tensor '{}': {} bytes in the file but shape {} x {} needs {}", where, name, end - begin,
           view.shape_string(), dtype_str, *expected);
    }
    view.offset = begin;
    view.nbytes = end - begin;
    view.file = file;
    auto [it, inserted] = tensors.emplace(name, std::move(view));
    extents.push_back({begin, end, &it->first});
  }

  std::sort(extents.begin(), extents.end(),
            [](const Extent& a, const Extent& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t i = 1; i < extents.size(); ++i) {
    const Extent& prev = extents[i - 1];
    const Extent& cur = extents[i];
    // Zero-length tensors occupy no bytes and cannot overlap anything.
    if (cur.begin == cur.end || prev.begin == prev.end) continue;
    if (cur.begin < prev.end) {
      fail("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", where, *prev.name, prev.begin, prev.end, *cur.name,
           cur.begin, cur.end);
    }
  }
  return tensors;
}

WeightStore WeightStore::open_files(const std::vector<std::filesystem::path>& files, const TensorFilter& used) {
  WeightStore store;
  for (const auto& path : files) {
    stop_point("loading the model");
    store.files_.push_back(std::make_unique<SafetensorsFile>(path, false));
    for (const auto& [name, view] : store.files_.back()->tensors()) {
      auto [it, inserted] = store.index_.emplace(name, &view);
      if (!inserted) fail("tensor '{}' appears in both {} and {}", name, it->second->file->string(), path.string());
    }
  }
  // Only once every header is known good is anything mapped.
  for (auto& file : store.files_) {
    const auto& tensors = file->tensors();
    stop_point("loading the model");
    if (!used || std::any_of(tensors.begin(), tensors.end(), [&](const auto& entry) { return used(entry.first); }))
      file->map();
  }
  return store;
}

std::map<std::string, std::string> WeightStore::read_index(const std::filesystem::path& dir) {
  const auto index_path = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (!std::filesystem::exists(index_path, ec)) return {};
  const nlohmann::json index = read_json_file(index_path);
  const std::string where = index_path.string();
  std::map<std::string, std::string> out;
  try {
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      fail("{}: missing object 'weight_map'", where);
    }
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) fail("{}: weight_map['{}'] is not a file name", where, tensor);
      const std::string file = shard.get<std::string>();
      // Shards live beside the index; a name that leaves the directory is refused.
      const std::filesystem::path rel(file);
      if (file.empty() || rel.is_absolute() || rel.has_parent_path() || file == "." || file == "..") {
        fail("{}: weight_map['{}'] = '{}' is not a plain file name in the model directory", where, tensor, file);
      }
      out.emplace(tensor, file);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected structure: {}", where, e.what());
  }
  if (out.empty()) fail("{}: weight_map is empty", where);
  return out;
}

WeightStore WeightStore::open_model_dir(const std::filesystem::path& dir, const TensorFilter& used) {
  const auto index = read_index(dir);
  if (index.empty()) {
    const auto single = dir / "model.safetensors";
    std::error_code ec;
    if (!std::filesystem::exists(single, ec)) {
      fail("{}: no model.safetensors or model.safetensors.index.json in the model directory", dir.string());
    }
    return open_files({single}, used);
  }
  std::map<std::string, std::vector<std::string>> tensors_by_shard;
  for (const auto& [tensor, file] : index) tensors_by_shard[file].push_back(tensor);
  std::vector<std::filesystem::path> shard_paths;
  for (const auto& [file, names] : tensors_by_shard) shard_paths.push_back(dir / file);
  WeightStore store = open_files(shard_paths, used);
  const std::string where = (dir / "model.safetensors.index.json").string();
  for (const auto& [file, names] : tensors_by_shard) {
    for (const auto& name : names) {
      const TensorView* view = store.find(name);
      if (view == nullptr || view->file->filename() != file) {
        fail("{}: tensor '{}' is mapped to {} but that file does not hold it", where, name, file);
      }
    }
  }
  return store;
}

const TensorView* WeightStore::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& WeightStore::get(std::string_view name) const {
  const TensorView* view = find(name);
  if (view == nullptr) fail("missing tensor '{}' in {}", name, describe());
  return *view;
}

std::vector<std::filesystem::path> WeightStore::paths() const {
  std::vector<std::filesystem::path> out;
  for (const auto& f : files_) {
    if (f->mapped()) out.push_back(f->path());
  }
  return out;
}

std::string WeightStore::describe() const {
  if (files_.empty()) return "(no files)";
  if (files_.size() == 1) return files_.front()->path().string();
  return fmt::format("{} shards in {}", files_.size(), files_.front()->path().parent_path().string());
}

}  // namespace mote
