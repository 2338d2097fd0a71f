// Row r of a row-major [rows, width] buffer, without writing out the
// offset arithmetic at every use.
#pragma once

#include <cstddef>

namespace mote {

template <typename T>
class RowView {
 public:
  RowView(T* data, int width) : data_(data), width_(static_cast<size_t>(width)) {}
  T* operator[](size_t row) const { return data_ + row * width_; }
  T* operator[](int row) const { return data_ + static_cast<size_t>(row) * width_; }

 private:
  T* data_;
  size_t width_;
};

}  // namespace mote
