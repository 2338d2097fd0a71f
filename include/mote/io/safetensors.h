// Safetensors weights: one file, or shards listed in
// model.safetensors.index.json. Every header of a model is read and
// validated completely before any file is memory-mapped: every tensor lies
// inside its file, no two overlap, and each byte length equals shape x
// dtype size. A file is mapped only when it holds a tensor the job uses, so
// a shard of unused layers (DeepSeek's multi-token-prediction layer) is
// never mapped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mote/io/mapped_file.h"
#include "mote/util/dtype.h"

namespace mote {

// A tensor as it lies in its (memory-mapped) file. `data` may be unaligned.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // null until the file is mapped
  uint64_t offset = 0;              // byte offset in the file
  uint64_t nbytes = 0;
  const std::filesystem::path* file = nullptr;

  uint64_t numel() const;
  std::string shape_string() const;
};

// Parses and validates the header of a safetensors file of `file_size`
// bytes, `prefix` holding at least its first 8 + header-length bytes
// (shorter is an error naming the truncation); the views get offsets but no
// data. `where` names the file in errors and `file` is recorded in the views.
std::map<std::string, TensorView> parse_safetensors_header(std::span<const std::byte> prefix, uint64_t file_size,
                                                           const std::string& where, const std::filesystem::path* file);
// The same over a whole file held in `bytes`, with data pointers into it.
std::map<std::string, TensorView> parse_safetensors(std::span<const std::byte> bytes, const std::string& where,
                                                    const std::filesystem::path* file);

// One .safetensors file: its header read and validated at construction,
// the file memory-mapped by map() (at construction unless `map_now` is false).
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path, bool map_now = true);
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return path_; }
  uint64_t size() const { return size_; }
  bool mapped() const { return file_ != nullptr; }
  // Maps the file and points the views at their data; checks that the file
  // still has the size its header was validated against.
  void map();

 private:
  std::filesystem::path path_;
  uint64_t size_ = 0;
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
};

// Which tensors a job uses (by name); files holding none of them stay unmapped.
using TensorFilter = std::function<bool(std::string_view name)>;

// All weights of a model directory, by tensor name.
class WeightStore {
 public:
  // Opens `dir/model.safetensors.index.json` when it exists (every shard it
  // names must exist and hold exactly the tensors the index maps to it),
  // otherwise `dir/model.safetensors`. Every header is validated first; then
  // the files holding a tensor `used` accepts (all, when empty) are mapped.
  static WeightStore open_model_dir(const std::filesystem::path& dir, const TensorFilter& used = {});
  // Opens the given files as one store; a tensor name in two files is an error.
  static WeightStore open_files(const std::vector<std::filesystem::path>& files, const TensorFilter& used = {});
  // The index of `dir` as tensor name -> shard file name, or empty when the
  // directory has a single model.safetensors (errors name the index).
  static std::map<std::string, std::string> read_index(const std::filesystem::path& dir);

  const TensorView* find(std::string_view name) const;
  // The tensor, or an Error naming it and the model directory.
  const TensorView& get(std::string_view name) const;
  const std::map<std::string, const TensorView*, std::less<>>& all() const { return index_; }
  std::string describe() const;
  // Files of the store that are memory-mapped.
  std::vector<std::filesystem::path> paths() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> index_;
};

}  // namespace mote
