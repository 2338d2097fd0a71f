#include "mote/expert_parallel/placement.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "mote/io/json_file.h"
#include "mote/util/error.h"

namespace mote {

Placement::Placement(int moe_layers, int experts, int world_size, std::string name)
    : moe_layers_(moe_layers),
      experts_(experts),
      world_size_(world_size),
      name_(std::move(name)),
      owner_(static_cast<size_t>(moe_layers) * experts, 0) {}

int coordinator_count(int requested, int world_size) {
  if (requested < 0) fail("--coordinators {} must be at least 1 (or all: every rank)", requested);
  if (requested > world_size) fail("--coordinators {} is more than the job's {} ranks", requested, world_size);
  return requested == 0 ? world_size : requested;
}

Placement Placement::by_rule(const std::string& kind, int moe_layers, int experts, int world_size,
                             bool coordinator_experts, int coordinators) {
  if (world_size < 1) fail("world size {} must be at least 1", world_size);
  if (coordinators < 1 || coordinators > world_size)
    fail("{} coordinators cannot be among {} ranks", coordinators, world_size);
  if (!coordinator_experts && world_size == 1) {
    fail(
        "--coordinator-experts false: a job of one rank has no rank but its coordinator to hold the routed experts; "
        "run more ranks "
        "than coordinators, or leave the option out");
  }
  if (!coordinator_experts && coordinators == world_size) {
    fail(
        "every rank is a coordinator and coordinators hold no experts (--coordinator-experts false): no rank would "
        "hold them; "
        "give --coordinators K below the world size");
  }
  const bool with_coordinators = coordinator_experts;
  std::vector<int> holders;
  for (int r = with_coordinators ? 0 : coordinators; r < world_size; ++r) holders.push_back(r);
  const int h = static_cast<int>(holders.size());
  Placement p(moe_layers, experts, world_size, kind);
  for (int l = 0; l < moe_layers; ++l) {
    for (int e = 0; e < experts; ++e) {
      int slot = 0;
      if (kind == "contiguous") {
        slot = static_cast<int>(static_cast<int64_t>(e) * h / experts);
      } else if (kind == "round-robin") {
        slot = e % h;
      } else {
        fail("--placement '{}' is not one of contiguous, round-robin (or give --placement-file)", kind);
      }
      p.owner_[static_cast<size_t>(l) * experts + e] = holders[slot];
    }
  }
  return p;
}

Placement Placement::from_file(const std::filesystem::path& path, int moe_layers, int experts, int world_size,
                               bool coordinator_experts, int coordinators) try {
  const auto j = read_json_file(path);
  const std::string where = path.string();
  if (!j.is_object() || !j.contains("owner") || !j["owner"].is_array())
    fail("{}: expected {{\"owner\": [[rank, ...], ...]}}", where);
  const auto& owner = j["owner"];
  if (static_cast<int>(owner.size()) != moe_layers) {
    fail("{}: 'owner' has {} rows but the model has {} MoE layers", where, owner.size(), moe_layers);
  }
  Placement p(moe_layers, experts, world_size, "file:" + where);
  for (int l = 0; l < moe_layers; ++l) {
    const auto& row = owner[l];
    if (!row.is_array() || static_cast<int>(row.size()) != experts) {
      fail("{}: owner[{}] must list {} ranks, one per routed expert", where, l, experts);
    }
    for (int e = 0; e < experts; ++e) {
      if (!row[e].is_number_integer()) fail("{}: owner[{}][{}] is not an integer", where, l, e);
      const int64_t rank = row[e].get<int64_t>();
      if (rank >= world_size) {
        // Most often a placement made for more ranks: say so, with its size.
        int64_t largest = rank;
        for (const auto& r : owner) {
          if (!r.is_array()) continue;
          for (const auto& v : r) {
            if (v.is_number_integer()) largest = std::max(largest, v.get<int64_t>());
          }
        }
        fail(
            "{}: a placement for {} ranks or more (owner[{}][{}] = {}), but this job has {}; run it with as many "
            "ranks, or make a "
            "placement for {} with 'mote place -n {}'",
            where, largest + 1, l, e, rank, world_size, world_size, world_size);
      }
      if (rank < 0) fail("{}: owner[{}][{}] = {} is not a rank", where, l, e, rank);
      if (rank < coordinators && !coordinator_experts && world_size > 1) {
        fail("{}: owner[{}][{}] = {} is a coordinator, but coordinators hold no experts (--coordinator-experts false)",
             where, l, e, rank);
      }
      p.owner_[static_cast<size_t>(l) * experts + e] = static_cast<int>(rank);
    }
  }
  return p;
} catch (const nlohmann::json::exception& e) {
  fail("{}: unexpected structure: {}", path.string(), e.what());
}

int Placement::count_on(int rank) const {
  int n = 0;
  for (int o : owner_) n += o == rank;
  return n;
}

std::string Placement::table() const {
  std::string out;
  for (int l = 0; l < moe_layers_; ++l) {
    for (int e = 0; e < experts_; ++e) {
      if (e > 0) out += ' ';
      out += std::to_string(owner(l, e));
    }
    out += '\n';
  }
  return out;
}

}  // namespace mote
