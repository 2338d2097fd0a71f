// The control condition of a MoTE experiment: N random (MoE layer, expert)
// pairs switched off (or forced on), excluding a given set, optionally with
// the same number per layer as a given mask. Forced sets are ones the
// router can honour: at most top-k experts per layer, spread over at most
// topk_group of its groups. Seeded and platform-independent.
#pragma once

#include <cstdint>

#include "mote/model/config.h"
#include "mote/model/expert_mask.h"

namespace mote {

struct RandomMaskSpec {
  int count = 0;  // experts to switch off or force on (ignored with `like`)
  uint64_t seed = 0;
  const ExpertMask* exclude = nullptr;  // its off (and on) experts are never chosen
  const ExpertMask* like = nullptr;     // same number of off (with `on`: on) experts per MoE layer as this
  OffPolicy off_policy = OffPolicy::Reroute;
  bool on = false;  // force experts on instead of switching them off
  OnPolicy on_policy = OnPolicy::Natural;
};

ExpertMask random_mask(const ModelConfig& config, const RandomMaskSpec& spec, const std::string& name);

}  // namespace mote
