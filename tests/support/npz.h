// Reads the arrays of a NumPy .npz file (a zip of .npy files, stored or
// deflated, as np.savez and np.savez_compressed write them), so that tests
// can compare against reference outputs saved by Python tools.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

namespace mote::test {

struct NpyArray {
  std::string descr;  // e.g. "<f4", "<i4"
  std::vector<int64_t> shape;
  std::vector<char> data;  // C order

  size_t size() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
  template <typename T>
  std::vector<T> as() const {
    const bool ok = (std::is_same_v<T, float> && descr == "<f4") || (std::is_same_v<T, int32_t> && descr == "<i4") ||
                    (std::is_same_v<T, int64_t> && descr == "<i8") || (std::is_same_v<T, double> && descr == "<f8");
    if (!ok || data.size() != size() * sizeof(T))
      throw std::runtime_error("npy: array of type " + descr + " read as another type");
    std::vector<T> out(size());
    std::memcpy(out.data(), data.data(), data.size());
    return out;
  }
};

inline NpyArray parse_npy(const std::vector<char>& bytes, const std::string& where) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
    throw std::runtime_error(where + ": not an npy array");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, at = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
    at = 10;
  } else {
    for (int i = 3; i >= 0; --i) header_len = header_len << 8 | static_cast<unsigned char>(bytes[8 + i]);
    at = 12;
  }
  const std::string header(bytes.data() + at, header_len);
  std::smatch m;
  NpyArray a;
  if (!std::regex_search(header, m, std::regex("'descr': *'([^']+)'")))
    throw std::runtime_error(where + ": npy header lacks descr");
  a.descr = m[1];
  if (header.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error(where + ": Fortran-order arrays are not read");
  if (!std::regex_search(header, m, std::regex("'shape': *\\(([^)]*)\\)")))
    throw std::runtime_error(where + ": npy header lacks shape");
  const std::string dims = m[1];
  const std::regex number("[0-9]+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it)
    a.shape.push_back(std::stoll(it->str()));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(at + header_len), bytes.end());
  return a;
}

// The arrays of `path` by name (without ".npy").
inline std::map<std::string, NpyArray> read_npz(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> zip((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (zip.empty()) throw std::runtime_error(path.string() + ": cannot read");
  const auto u16 = [&](size_t at) {
    return static_cast<uint32_t>(static_cast<unsigned char>(zip.at(at)) | static_cast<unsigned char>(zip.at(at + 1))
                                                                              << 8);
  };
  const auto u32 = [&](size_t at) { return u16(at) | u16(at + 2) << 16; };
  const auto u64 = [&](size_t at) { return static_cast<uint64_t>(u32(at)) | static_cast<uint64_t>(u32(at + 4)) << 32; };
  std::map<std::string, NpyArray> out;
  size_t at = 0;
  while (at + 30 <= zip.size() && u32(at) == 0x04034b50) {
    const uint32_t method = u16(at + 8);
    uint64_t compressed = u32(at + 18), uncompressed = u32(at + 22);
    const size_t name_len = u16(at + 26), extra_len = u16(at + 28);
    const std::string name(zip.data() + at + 30, name_len);
    // Zip64 sizes live in an extra field when the 32-bit ones are all ones (numpy forces zip64).
    for (size_t e = at + 30 + name_len; e + 4 <= at + 30 + name_len + extra_len;) {
      const uint32_t id = u16(e), len = u16(e + 2);
      if (id == 1) {
        size_t f = e + 4;
        if (uncompressed == 0xFFFFFFFFu) uncompressed = u64(f), f += 8;
        if (compressed == 0xFFFFFFFFu) compressed = u64(f);
      }
      e += 4 + len;
    }
    const size_t data_at = at + 30 + name_len + extra_len;
    if (data_at + compressed > zip.size()) throw std::runtime_error(path.string() + ": truncated entry " + name);
    std::vector<char> raw(uncompressed);
    if (method == 0) {
      std::memcpy(raw.data(), zip.data() + data_at, uncompressed);
    } else if (method == 8) {
      z_stream z{};
      inflateInit2(&z, -15);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zip.data() + data_at));
      z.avail_in = static_cast<uInt>(compressed);
      z.next_out = reinterpret_cast<Bytef*>(raw.data());
      z.avail_out = static_cast<uInt>(raw.size());
      const int rc = inflate(&z, Z_FINISH);
      inflateEnd(&z);
      if (rc != Z_STREAM_END) throw std::runtime_error(path.string() + ": cannot inflate " + name);
    } else {
      throw std::runtime_error(path.string() + ": unsupported compression in " + name);
    }
    std::string key = name.ends_with(".npy") ? name.substr(0, name.size() - 4) : name;
    out.emplace(key, parse_npy(raw, path.string() + ":" + name));
    at = data_at + compressed;
  }
  if (out.empty()) throw std::runtime_error(path.string() + ": no arrays (not an npz file?)");
  return out;
}

}  // namespace mote::test
