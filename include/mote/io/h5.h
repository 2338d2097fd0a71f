// Thin helpers over the HDF5 C API: owned handles, typed datasets and
// attributes, and errors that say which object failed instead of HDF5's
// own error stack on stderr.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mote {

class H5Handle {
 public:
  H5Handle() = default;
  H5Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), close_(closer) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t id() const { return id_; }
  // Closes now and reports whether closing succeeded (HDF5 writes on close).
  bool close() {
    const bool ok = id_ < 0 || close_ == nullptr || close_(id_) >= 0;
    id_ = -1;
    return ok;
  }
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Turns off HDF5's automatic error printing; our errors carry the context.
void h5_silence_errors();

// The extent of a dataset (empty for a scalar or an unreadable one).
std::vector<hsize_t> h5_dims(hid_t dataset);

// Reads an integer scalar attribute; false if it is missing or unreadable.
bool h5_read_int_attr(hid_t obj, const char* name, int64_t& value);
// A scalar variable-length string attribute (at most 4096 bytes kept);
// false when it is absent or of another kind.
bool h5_read_string_attr(hid_t obj, const char* name, std::string& value);

H5Handle h5_create_group(hid_t parent, const std::string& name);
// A group that records the order its members were created in, so that
// readers (h5py) list them in that order.
H5Handle h5_create_ordered_group(hid_t parent, const std::string& name);

// Names the axes of dataset `name` under `parent` in an "axes" attribute,
// comma-separated ("class,phase,moe_layer,expert").
void h5_axes(hid_t parent, const std::string& name, const std::string& axes);

void h5_attr_string(hid_t obj, const std::string& name, const std::string& value);
void h5_attr_int(hid_t obj, const std::string& name, int64_t value);
void h5_attr_double(hid_t obj, const std::string& name, double value);

// A scalar variable-length UTF-8 string dataset.
void h5_string_dataset(hid_t parent, const std::string& name, const std::string& value);
// A 1-D dataset of fixed-length (null-padded) UTF-8 strings.
void h5_string_list(hid_t parent, const std::string& name, const std::vector<std::string>& values);
// Reads a list h5_string_list() wrote (fixed-length strings, at most
// `max_count` of at most 4 KiB each); errors name `where` and the dataset.
std::vector<std::string> h5_read_string_list(hid_t parent, const char* name, size_t max_count,
                                             const std::string& where);

// N-D numeric datasets; chunked and deflate-compressed when `compress` and
// the data is not tiny.
void h5_dataset(hid_t parent, const std::string& name, const std::vector<hsize_t>& dims, const int32_t* data,
                bool compress = false);
void h5_dataset(hid_t parent, const std::string& name, const std::vector<hsize_t>& dims, const float* data,
                bool compress = false);
void h5_dataset(hid_t parent, const std::string& name, const std::vector<hsize_t>& dims, const uint64_t* data,
                bool compress = false);
void h5_dataset(hid_t parent, const std::string& name, const std::vector<hsize_t>& dims, const uint32_t* data,
                bool compress = false);
void h5_dataset(hid_t parent, const std::string& name, const std::vector<hsize_t>& dims, const double* data,
                bool compress = false);

}  // namespace mote
