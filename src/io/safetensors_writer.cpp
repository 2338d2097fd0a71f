#include "mote/io/safetensors_writer.h"

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mote/util/error.h"

namespace mote {

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorData>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors) {
    offset = (offset + 7) / 8 * 8;
    offsets.push_back(offset);
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
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
    out.write(reinterpret_cast<const char*>(tensors[i].bytes.data()),
              static_cast<std::streamsize>(tensors[i].bytes.size()));
    written += tensors[i].bytes.size();
  }
  if (!out) fail("{}: write failed", path.string());
}

}  // namespace mote
