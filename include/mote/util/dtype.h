// Element types of stored tensors, by their safetensors names, and the
// narrowing casts that write them (the widening ones are in ops/weight.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mote {

// MXFP4 is no file dtype: the loader pairs a U8 `_blocks` tensor with its
// `_scales` into one (ops/weight.h), so no safetensors header can name it.
enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, U64, U32, U16, BOOL, F8_E4M3, F8_E5M2, MXFP4 };

std::string_view dtype_name(DType dtype);
// Bytes per element; 0 for MXFP4 (half a byte, see Weight::row_bytes).
size_t dtype_size(DType dtype);
// The dtype a safetensors header names ("BF16"), or nullopt.
std::optional<DType> dtype_from_name(std::string_view name);

// Rounds fp32 to bf16 (round to nearest even), as PyTorch does.
uint16_t float_to_bf16(float value);
// Rounds fp32 to e4m3fn (round to nearest even, saturating at +-448, never
// NaN for a finite input), as PyTorch's float8_e4m3fn cast does.
uint8_t float_to_e4m3(float value);

}  // namespace mote
