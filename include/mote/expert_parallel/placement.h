// Which rank owns each routed expert of each MoE layer:
// owner[moe_layer][expert] -> rank. Built from a rule (contiguous blocks or
// round-robin over the expert-holding ranks) or read from a JSON file.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace mote {

// The coordinators of a job of `world_size` ranks: `requested`, or every
// rank for 0 (--coordinators all, the default everywhere); more than the
// world size is an error naming both.
int coordinator_count(int requested, int world_size);

class Placement {
 public:
  // `kind`: "contiguous" or "round-robin". The coordinators (ranks
  // 0..coordinators-1) hold experts only when `coordinator_experts` is set;
  // some rank must hold them.
  static Placement by_rule(const std::string& kind, int moe_layers, int experts, int world_size,
                           bool coordinator_experts, int coordinators = 1);
  // A JSON file {"owner": [[rank, ...] per expert] per MoE layer}; every
  // rank must be in [0, world_size), and a coordinator only with `coordinator_experts`.
  static Placement from_file(const std::filesystem::path& path, int moe_layers, int experts, int world_size,
                             bool coordinator_experts, int coordinators = 1);

  int owner(int moe_layer, int expert) const { return owner_[static_cast<size_t>(moe_layer) * experts_ + expert]; }
  int world_size() const { return world_size_; }
  int moe_layers() const { return moe_layers_; }
  int experts() const { return experts_; }
  // Experts held by `rank`, over all MoE layers.
  int count_on(int rank) const;
  const std::string& name() const { return name_; }
  // owner table as text, one line per MoE layer, for provenance.
  std::string table() const;

 private:
  Placement(int moe_layers, int experts, int world_size, std::string name);
  int moe_layers_, experts_, world_size_;
  std::string name_;
  std::vector<int> owner_;
};

}  // namespace mote
