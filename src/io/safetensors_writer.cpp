#include "mote/io/safetensors_writer.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mote/util/error.h"

namespace mote {

uint16_t float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN stays NaN
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint8_t float_to_e4m3(float value) {
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const float a = std::fabs(value);
  if (std::isnan(value)) return 0x7F;
  if (a >= 448.0f) return sign | 0x7E;
  if (a < std::ldexp(1.0f, -6)) {
    // Subnormal range: multiples of 2^-9 (8 of them make the smallest normal).
    const auto q = static_cast<int>(std::nearbyint(std::ldexp(a, 9)));
    return static_cast<uint8_t>(sign | q);
  }
  int e = 0;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  auto q = static_cast<int>(std::nearbyint((m * 2.0f - 1.0f) * 8.0f));
  int biased = e - 1 + 7;
  if (q == 8) {
    q = 0;
    ++biased;
  }
  if (biased > 15 || (biased == 15 && q == 7)) return sign | 0x7E;
  return static_cast<uint8_t>(sign | biased << 3 | q);
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorData>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors) {
    offset = (offset + 7) / 8 * 8;
    offsets.push_back(offset);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string h = header.dump();
  h.append((8 - (8 + h.size()) % 8) % 8, ' ');  // data starts 8-byte aligned
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("{}: cannot create file", path.string());
  const uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xFF));
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  uint64_t written = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    for (; written < offsets[i]; ++written) out.put('\0');
    out.write(reinterpret_cast<const char*>(tensors[i].bytes.data()), static_cast<std::streamsize>(tensors[i].bytes.size()));
    written += tensors[i].bytes.size();
  }
  if (!out) fail("{}: write failed", path.string());
}

}  // namespace mote
