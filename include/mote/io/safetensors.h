// Safetensors weights: one file, or shards listed in
// model.safetensors.index.json. Headers are validated completely before any
// tensor is handed out: every tensor lies inside its file, no two overlap,
// and each byte length equals shape x dtype size.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mote/io/mapped_file.h"

namespace mote {

enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, U64, U32, U16, BOOL, F8_E4M3, F8_E5M2 };

std::string_view dtype_name(DType dtype);
size_t dtype_size(DType dtype);

// A tensor as it lies in its (memory-mapped) file. `data` may be unaligned.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  uint64_t nbytes = 0;
  const std::filesystem::path* file = nullptr;

  uint64_t numel() const;
  std::string shape_string() const;
};

// Parses and validates a whole safetensors file held in `bytes`; `where`
// names it in errors and `file` is recorded in the views.
std::map<std::string, TensorView> parse_safetensors(std::span<const std::byte> bytes, const std::string& where,
                                                    const std::filesystem::path* file);

// One .safetensors file, mapped and validated.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::map<std::string, TensorView> tensors_;
};

// All weights of a model directory, by tensor name.
class WeightStore {
 public:
  // Opens `dir/model.safetensors.index.json` when it exists (every shard it
  // names must exist and hold exactly the tensors the index maps to it),
  // otherwise `dir/model.safetensors`.
  static WeightStore open_model_dir(const std::filesystem::path& dir);
  // Opens the given files as one store; a tensor name in two files is an error.
  static WeightStore open_files(const std::vector<std::filesystem::path>& files);

  const TensorView* find(std::string_view name) const;
  // The tensor, or an Error naming it and the model directory.
  const TensorView& get(std::string_view name) const;
  const std::map<std::string, const TensorView*, std::less<>>& all() const { return index_; }
  std::string describe() const;
  std::vector<std::filesystem::path> paths() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> index_;
};

}  // namespace mote
