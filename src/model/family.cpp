#include "mote/model/family.h"

#include "mote/util/error.h"

namespace mote {

extern const Family kDeepseekV3Family;
extern const Family kDeepseekV2Family;
extern const Family kQwen3MoeFamily;
extern const Family kMixtralFamily;
extern const Family kOlmoeFamily;
extern const Family kGptOssFamily;

namespace {
const Family* const kFamilies[] = {&kDeepseekV3Family, &kDeepseekV2Family, &kQwen3MoeFamily,
                                   &kMixtralFamily,    &kOlmoeFamily,      &kGptOssFamily};
}

const Family* find_family(std::string_view model_type) {
  for (const Family* f : kFamilies) {
    if (f->model_type == model_type) return f;
  }
  return nullptr;
}

const Family& family_of(const ModelConfig& config) {
  const Family* f = find_family(config.model_type);
  if (f == nullptr) fail("model_type '{}' is not supported (supported: {})", config.model_type, supported_families());
  return *f;
}

std::string supported_families() {
  std::string out;
  for (const Family* f : kFamilies) out += (out.empty() ? "" : ", ") + std::string(f->model_type);
  return out;
}

}  // namespace mote
