// Byte-pair encoding of one pre-tokenized piece: start from one symbol per
// byte and repeatedly apply the lowest-ranked merge, leftmost first. A heap
// keeps this O(n log n) even for hostile inputs with very long pieces.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mote {

class BpeMerges {
 public:
  // Registers the merge (left, right) -> merged with priority `rank`
  // (lower merges first). Returns false if the pair was already registered.
  bool add(int32_t left, int32_t right, int32_t merged, int32_t rank);
  // Rewrites `symbols` (initially one id per byte) in place.
  void apply(std::vector<int32_t>& symbols) const;
  size_t size() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace mote
