#include "mote/model/kv_cache.h"

namespace mote {

KvCache::KvCache(const ModelConfig& c, int slots)
    : layers_(c.num_hidden_layers), entry_(c.kv_entry_size()), storage_(slots), capacity_(slots, 0) {}

void KvCache::reset(int slot, int capacity) {
  capacity_[slot] = capacity;
  storage_[slot].assign(static_cast<size_t>(layers_) * capacity * entry_, 0.0f);
}

}  // namespace mote
