// A read-only memory map of a whole file. Weights stay in the page cache in
// their file dtype; pages of tensors a rank never touches are never read.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace mote {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mote
