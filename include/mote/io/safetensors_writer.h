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

// Rounds fp32 to bf16 (round to nearest even), as PyTorch does.
uint16_t float_to_bf16(float value);
// Rounds fp32 to e4m3fn (round to nearest even, saturating at +-448, never
// NaN for a finite input), as PyTorch's float8_e4m3fn cast does.
uint8_t float_to_e4m3(float value);

}  // namespace mote
