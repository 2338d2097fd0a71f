#include "mote/tokenizer/normalizer.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <nlohmann/json.hpp>

#include "mote/util/error.h"

namespace mote {
namespace {

// NFC through ICU (ICU 72: Unicode 15.0), by way of UTF-16.
std::string nfc(std::string_view text) {
  bool ascii = true;
  for (const char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(text);  // ASCII is always NFC
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&status);
  int32_t wide_len = 0;
  u_strFromUTF8(nullptr, 0, &wide_len, text.data(), static_cast<int32_t>(text.size()), &status);
  status = U_ZERO_ERROR;
  std::u16string wide(static_cast<size_t>(wide_len), u'\0');
  u_strFromUTF8(wide.data(), wide_len, nullptr, text.data(), static_cast<int32_t>(text.size()), &status);
  // NFC never grows a string by more than a factor of 3.
  std::u16string normalized(static_cast<size_t>(wide_len) * 3 + 16, u'\0');
  const int32_t n = unorm2_normalize(norm, wide.data(), wide_len, normalized.data(),
                                     static_cast<int32_t>(normalized.size()), &status);
  int32_t out_len = 0;
  UErrorCode to_status = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &out_len, normalized.data(), n, &to_status);
  std::string out(static_cast<size_t>(out_len), '\0');
  to_status = U_ZERO_ERROR;
  u_strToUTF8(out.data(), out_len, nullptr, normalized.data(), n, &to_status);
  if (U_FAILURE(status) || U_FAILURE(to_status))
    fail("NFC normalization failed: {}", u_errorName(U_FAILURE(status) ? status : to_status));
  return out;
}

}  // namespace

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out += to;
  }
  out.append(text, pos);
  return out;
}

Normalizer::Normalizer(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return;
  if (!spec.is_object()) fail("{}: normalizer must be an object or null", where);
  std::vector<const nlohmann::json*> items;
  if (spec.value("type", "") == "Sequence") {
    const auto it = spec.find("normalizers");
    if (it == spec.end() || !it->is_array()) fail("{}: Sequence normalizer needs an array 'normalizers'", where);
    for (const auto& item : *it) items.push_back(&item);
  } else {
    items.push_back(&spec);
  }
  for (const auto* item : items) {
    if (!item->is_object()) fail("{}: normalizer entry must be an object", where);
    const std::string type = item->value("type", "");
    if (type == "NFC") {
      steps_.push_back({Kind::Nfc, {}, {}});
    } else if (type == "Prepend") {
      if (!item->contains("prepend") || !(*item)["prepend"].is_string())
        fail("{}: Prepend normalizer needs a string 'prepend'", where);
      steps_.push_back({Kind::Prepend, (*item)["prepend"].get<std::string>(), {}});
    } else if (type == "Replace") {
      const auto pattern = item->find("pattern");
      if (pattern == item->end() || !pattern->is_object() || !pattern->contains("String") ||
          !(*pattern)["String"].is_string()) {
        fail("{}: Replace normalizer is supported with a literal 'String' pattern only", where);
      }
      if (!item->contains("content") || !(*item)["content"].is_string())
        fail("{}: Replace normalizer needs a string 'content'", where);
      const std::string from = (*pattern)["String"].get<std::string>();
      if (from.empty()) fail("{}: Replace normalizer with an empty pattern", where);
      steps_.push_back({Kind::Replace, from, (*item)["content"].get<std::string>()});
    } else {
      fail("{}: normalizer '{}' is not supported (supported: NFC, Prepend, Replace, and a Sequence of these)", where,
           type);
    }
  }
}

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::Nfc:
        s = nfc(s);
        break;
      case Kind::Prepend:
        if (!s.empty()) s.insert(0, step.a);
        break;
      case Kind::Replace:
        s = replace_all(s, step.a, step.b);
        break;
    }
  }
  return s;
}

}  // namespace mote
