#include "mote/io/safetensors.h"

#include <algorithm>
#include <cstring>

#include "mote/io/json_file.h"
#include "mote/util/checked_math.h"
#include "mote/util/error.h"

namespace mote {
namespace {

struct DTypeInfo {
  std::string_view name;
  DType dtype;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {"F32", DType::F32, 4},   {"F16", DType::F16, 2},         {"BF16", DType::BF16, 2},
    {"F64", DType::F64, 8},   {"I64", DType::I64, 8},         {"I32", DType::I32, 4},
    {"I16", DType::I16, 2},   {"I8", DType::I8, 1},           {"U8", DType::U8, 1},
    {"U64", DType::U64, 8},   {"U32", DType::U32, 4},         {"U16", DType::U16, 2},
    {"BOOL", DType::BOOL, 1}, {"F8_E4M3", DType::F8_E4M3, 1}, {"F8_E5M2", DType::F8_E5M2, 1},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  return kDTypes[0];
}

// The format caps headers at 100 MB; anything larger is hostile or corrupt.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
size_t dtype_size(DType dtype) { return info(dtype).size; }

uint64_t TensorView::numel() const { return checked_product(shape).value_or(0); }

std::string TensorView::shape_string() const {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
  try {
    tensors_ = parse_safetensors(file_.bytes(), path.string(), &file_.path());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected header structure: {}", path.string(), e.what());
  }
}

std::map<std::string, TensorView> parse_safetensors(std::span<const std::byte> bytes, const std::string& where,
                                                    const std::filesystem::path* file) {
  std::map<std::string, TensorView> tensors;
  if (bytes.size() < 8) fail("{}: truncated: {} bytes, a safetensors file starts with an 8-byte header length", where, bytes.size());
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  if (header_len > bytes.size() - 8) {
    fail("{}: header length {} runs past the end of the file ({} bytes)", where, header_len, bytes.size());
  }
  if (header_len > kMaxHeaderBytes) fail("{}: header length {} exceeds the 100 MB limit", where, header_len);
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
  const nlohmann::json header = parse_json(header_text, where + " (safetensors header)");
  if (!header.is_object()) fail("{}: header is not a JSON object", where);

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_start;
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
    if (dtype_it == entry.end() || !dtype_it->is_string()) fail("{}: tensor '{}': missing or non-string 'dtype'", where, name);
    if (shape_it == entry.end() || !shape_it->is_array()) fail("{}: tensor '{}': missing or non-array 'shape'", where, name);
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      fail("{}: tensor '{}': 'data_offsets' must be an array of two integers", where, name);
    }
    TensorView view;
    view.name = name;
    const std::string dtype_str = dtype_it->get<std::string>();
    const auto known = std::find_if(std::begin(kDTypes), std::end(kDTypes), [&](const DTypeInfo& d) { return d.name == dtype_str; });
    if (known == std::end(kDTypes)) fail("{}: tensor '{}': unknown dtype '{}'", where, name, dtype_str);
    view.dtype = known->dtype;
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
      fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes)", where, name, begin, end, data_size);
    }
    const auto numel = checked_product(view.shape);
    const auto expected = numel ? checked_mul(*numel, known->size) : std::nullopt;
    if (!expected) fail("{}: tensor '{}': shape {} overflows", where, name, view.shape_string());
    if (*expected != end - begin) {
      fail("{}: tensor '{}': {} bytes in the file but shape {} x {} needs {}", where, name, end - begin,
           view.shape_string(), dtype_str, *expected);
    }
    view.data = bytes.data() + data_start + begin;
    view.nbytes = end - begin;
    view.file = file;
    auto [it, inserted] = tensors.emplace(name, std::move(view));
    extents.push_back({begin, end, &it->first});
  }

  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
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

WeightStore WeightStore::open_files(const std::vector<std::filesystem::path>& files) {
  WeightStore store;
  for (const auto& path : files) {
    store.files_.push_back(std::make_unique<SafetensorsFile>(path));
    for (const auto& [name, view] : store.files_.back()->tensors()) {
      auto [it, inserted] = store.index_.emplace(name, &view);
      if (!inserted) fail("tensor '{}' appears in both {} and {}", name, it->second->file->string(), path.string());
    }
  }
  return store;
}

WeightStore WeightStore::open_model_dir(const std::filesystem::path& dir) {
  const auto index_path = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (!std::filesystem::exists(index_path, ec)) {
    const auto single = dir / "model.safetensors";
    if (!std::filesystem::exists(single, ec)) {
      fail("{}: no model.safetensors or model.safetensors.index.json in the model directory", dir.string());
    }
    return open_files({single});
  }

  const nlohmann::json index = read_json_file(index_path);
  const std::string where = index_path.string();
  try {
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    fail("{}: missing object 'weight_map'", where);
  }
  std::map<std::string, std::vector<std::string>> tensors_by_shard;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) fail("{}: weight_map['{}'] is not a file name", where, tensor);
    const std::string file = shard.get<std::string>();
    // Shards live beside the index; a name that leaves the directory is refused.
    const std::filesystem::path rel(file);
    if (file.empty() || rel.is_absolute() || rel.has_parent_path() || file == "." || file == "..") {
      fail("{}: weight_map['{}'] = '{}' is not a plain file name in the model directory", where, tensor, file);
    }
    tensors_by_shard[file].push_back(tensor);
  }
  if (tensors_by_shard.empty()) fail("{}: weight_map is empty", where);

  std::vector<std::filesystem::path> shard_paths;
  for (const auto& [file, names] : tensors_by_shard) shard_paths.push_back(dir / file);
  WeightStore store = open_files(shard_paths);
  for (const auto& [file, names] : tensors_by_shard) {
    for (const auto& name : names) {
      const TensorView* view = store.find(name);
      if (view == nullptr || view->file->filename() != file) {
        fail("{}: tensor '{}' is mapped to {} but that file does not hold it", where, name, file);
      }
    }
  }
  return store;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected structure: {}", where, e.what());
  }
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
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

std::string WeightStore::describe() const {
  if (files_.empty()) return "(no files)";
  if (files_.size() == 1) return files_.front()->path().string();
  return fmt::format("{} shards in {}", files_.size(), files_.front()->path().parent_path().string());
}

}  // namespace mote
