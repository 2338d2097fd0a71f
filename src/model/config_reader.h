// Typed, range-checked reads of config.json keys, with errors that name the
// file and key; shared by the common part of the config and each family's.
#pragma once

#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "mote/util/error.h"

namespace mote {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}

  const nlohmann::json* find(const char* key) const {
    const auto it = j_.find(key);
    return (it == j_.end() || it->is_null()) ? nullptr : &*it;
  }

  int get_int(const char* key, int min_value) const {
    const nlohmann::json* v = find(key);
    if (v == nullptr) fail("{}: missing key '{}'", where_, key);
    return to_int(*v, key, min_value);
  }
  int get_int_or(const char* key, int fallback, int min_value) const {
    const nlohmann::json* v = find(key);
    return v == nullptr ? fallback : to_int(*v, key, min_value);
  }
  double get_double(const char* key) const {
    const nlohmann::json* v = find(key);
    if (v == nullptr) fail("{}: missing key '{}'", where_, key);
    return to_double(*v, key);
  }
  double get_double_or(const char* key, double fallback) const {
    const nlohmann::json* v = find(key);
    return v == nullptr ? fallback : to_double(*v, key);
  }
  bool get_bool_or(const char* key, bool fallback) const {
    const nlohmann::json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) fail("{}: key '{}' must be true or false", where_, key);
    return v->get<bool>();
  }
  std::string get_string_or(const char* key, const std::string& fallback) const {
    const nlohmann::json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) fail("{}: key '{}' must be a string", where_, key);
    return v->get<std::string>();
  }

  int to_int(const nlohmann::json& v, const char* key, int min_value) const {
    if (!v.is_number_integer()) fail("{}: key '{}' must be an integer", where_, key);
    const auto value = v.get<int64_t>();
    if (value < min_value || value > (1 << 30)) fail("{}: key '{}' = {} is out of range", where_, key, value);
    return static_cast<int>(value);
  }
  double to_double(const nlohmann::json& v, const char* key) const {
    if (!v.is_number()) fail("{}: key '{}' must be a number", where_, key);
    const double value = v.get<double>();
    if (!std::isfinite(value)) fail("{}: key '{}' must be finite", where_, key);
    return value;
  }

  const std::string& where() const { return where_; }

 private:
  const nlohmann::json& j_;
  std::string where_;
};

}  // namespace mote
