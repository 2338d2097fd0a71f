// The KV cache: per sequence slot, layer and position, for MLA the
// normalised compressed latent (kv_lora_rank values) and the rotated rope
// key (qk_rope_head_dim values), not full per-head keys and values; for GQA
// the rotated keys then the values of every KV head.
#pragma once

#include <vector>

#include "mote/model/config.h"

namespace mote {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int slots);

  // Makes room for `capacity` positions in `slot`, discarding what it held.
  void reset(int slot, int capacity);
  int capacity(int slot) const { return capacity_[slot]; }
  int slots() const { return static_cast<int>(storage_.size()); }
  int entry_size() const { return entry_; }

  // The entry of (slot, layer, pos): latent first, rope key after it.
  float* entry(int slot, int layer, int pos) {
    return storage_[slot].data() + (static_cast<size_t>(layer) * capacity_[slot] + pos) * entry_;
  }
  const float* entry(int slot, int layer, int pos) const {
    return storage_[slot].data() + (static_cast<size_t>(layer) * capacity_[slot] + pos) * entry_;
  }

 private:
  int layers_;
  int entry_;
  std::vector<std::vector<float>> storage_;
  std::vector<int> capacity_;
};

}  // namespace mote
