// Writes safetensors files (used for synthetic models and test fixtures).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "mote/io/safetensors.h"

namespace mote {

struct TensorData {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // little-endian, shape x dtype size
};

// Writes `tensors` in order, each aligned to 8 bytes in the data section.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorData>& tensors);

}  // namespace mote
