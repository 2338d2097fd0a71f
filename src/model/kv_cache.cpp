#include "mote/model/kv_cache.h"

#include <algorithm>

namespace mote {

KvCache::KvCache(const ModelConfig& c, int slots)
    : entry_(c.kv_entry_size()), window_(static_cast<size_t>(c.num_hidden_layers), 0), slots_(slots) {
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    if (c.is_sliding_layer(l)) window_[static_cast<size_t>(l)] = c.sliding_window;
  }
}

void KvCache::reset(int slot, int capacity) {
  Slot& s = slots_[slot];
  s.capacity = capacity;
  s.rows.resize(window_.size());
  s.start.resize(window_.size());
  size_t floats = 0;
  for (size_t l = 0; l < window_.size(); ++l) {
    s.rows[l] = window_[l] > 0 ? std::min(window_[l], capacity) : capacity;
    s.start[l] = floats;
    floats += static_cast<size_t>(s.rows[l]) * entry_;
  }
  s.data.assign(floats, 0.0f);
}

}  // namespace mote
