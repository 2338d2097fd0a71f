// DeepSeek-V3 and R1 (model_type deepseek_v3): MLA (q_lora_rank optional),
// interleaved rope with YaRN, first_k_dense_replace dense layers, shared
// experts, and the sigmoid router: bias-corrected selection over groups
// scored by their two best experts, weights from the unbiased sigmoid,
// renormalised and scaled.
#include "deepseek_common.h"
#include "mote/model/family.h"

namespace mote {
namespace {

void read_config(const ConfigReader& r, ModelConfig& c) {
  deepseek::read_mla_and_moe(r, c);
  c.router = RouterKind::SigmoidGrouped;
  c.router_bias = true;
  if (c.scoring_func != "sigmoid")
    fail("{}: scoring_func '{}' is not supported for deepseek_v3 (supported: sigmoid)", r.where(), c.scoring_func);
  if (c.topk_method != "noaux_tc")
    fail("{}: topk_method '{}' is not supported for deepseek_v3 (supported: noaux_tc)", r.where(), c.topk_method);
}

}  // namespace

extern const Family kDeepseekV3Family{"deepseek_v3", read_config, TensorNames{}};

}  // namespace mote
