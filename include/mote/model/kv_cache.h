// The KV cache: per sequence slot, layer and position, for MLA the
// normalised compressed latent (kv_lora_rank values) and the rotated rope
// key (qk_rope_head_dim values), not full per-head keys and values; for GQA
// the rotated keys then the values of every KV head. A sliding-window layer
// (gpt-oss) keeps only its last sliding_window positions, in a ring: its
// memory does not grow with the context.
#pragma once

#include <cstddef>
#include <vector>

#include "mote/model/config.h"

namespace mote {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int slots);

  // Makes room for `capacity` positions in `slot`, discarding what it held.
  void reset(int slot, int capacity);
  int capacity(int slot) const { return slots_[slot].capacity; }
  int slots() const { return static_cast<int>(slots_.size()); }
  int entry_size() const { return entry_; }
  // Floats held for `slot`, every layer.
  size_t floats(int slot) const { return slots_[slot].data.size(); }
  // Positions a layer holds at most: its window, or the slot's capacity.
  int rows(int slot, int layer) const { return slots_[slot].rows[static_cast<size_t>(layer)]; }

  // The entry of (slot, layer, pos): latent first, rope key after it. On a
  // sliding layer, positions a window apart share an entry.
  float* entry(int slot, int layer, int pos) { return slots_[slot].data.data() + offset(slot, layer, pos); }
  const float* entry(int slot, int layer, int pos) const { return slots_[slot].data.data() + offset(slot, layer, pos); }

 private:
  struct Slot {
    int capacity = 0;
    std::vector<int> rows;      // per layer
    std::vector<size_t> start;  // per layer: its first float
    std::vector<float> data;
  };
  size_t offset(int slot, int layer, int pos) const {
    const Slot& s = slots_[slot];
    const auto l = static_cast<size_t>(layer);
    const int row = window_[l] > 0 ? pos % s.rows[l] : pos;
    return s.start[l] + static_cast<size_t>(row) * entry_;
  }

  int entry_;
  std::vector<int> window_;  // per layer; 0: every position
  std::vector<Slot> slots_;
};

}  // namespace mote
