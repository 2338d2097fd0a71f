#include "mote/runtime/expert_ranking.h"

#include <algorithm>
#include <cmath>

#include "mote/expert_parallel/expert_counters.h"
#include "mote/util/error.h"

namespace mote {

std::vector<RankedExpert> rank_experts(const ProfileData& d, const RankingSpec& spec) {
  const auto class_index = [&](const std::string& name) {
    const auto it = std::find(d.classes.begin(), d.classes.end(), name);
    if (it == d.classes.end()) {
      std::string known;
      for (const auto& c : d.classes) known += (known.empty() ? "" : ", ") + c;
      fail("class '{}' is not in the profile (classes: {})", name, known);
    }
    return static_cast<size_t>(it - d.classes.begin());
  };
  const size_t t = class_index(spec.target), c = class_index(spec.control);
  if (t == c) fail("the target and control classes are both '{}'", spec.target);
  std::vector<int> phases;
  if (spec.phase == "all") phases = {kPromptPhase, kGeneratedPhase};
  else if (spec.phase == "prompt") phases = {kPromptPhase};
  else if (spec.phase == "generated") phases = {kGeneratedPhase};
  else fail("--phase '{}' is not one of all, prompt, generated", spec.phase);
  if (spec.score != "freq-diff" && spec.score != "log-odds") fail("--score '{}' is not one of freq-diff, log-odds", spec.score);
  if (!(spec.smoothing > 0) || !std::isfinite(spec.smoothing)) fail("--smoothing must be positive");
  if (spec.top < 1) fail("--top must be at least 1");

  double n_t = 0, n_c = 0;
  for (int p : phases) {
    n_t += static_cast<double>(d.tokens[t * 2 + p]);
    n_c += static_cast<double>(d.tokens[c * 2 + p]);
  }
  if (n_t == 0) fail("class '{}' has no tokens in phase '{}'", spec.target, spec.phase);
  if (n_c == 0) fail("class '{}' has no tokens in phase '{}'", spec.control, spec.phase);

  std::vector<RankedExpert> all;
  for (int l = 0; l < d.moe_layers; ++l) {
    for (int e = 0; e < d.experts; ++e) {
      double a = 0, b = 0;
      for (int p : phases) {
        a += static_cast<double>(d.counts[((t * 2 + p) * d.moe_layers + l) * d.experts + e]);
        b += static_cast<double>(d.counts[((c * 2 + p) * d.moe_layers + l) * d.experts + e]);
      }
      RankedExpert r{l, e, 0, a / n_t, b / n_c};
      if (spec.score == "freq-diff") {
        r.score = r.target_frequency - r.control_frequency;
      } else {
        const double s = spec.smoothing;
        r.score = std::log((a + s) / (n_t - a + s)) - std::log((b + s) / (n_c - b + s));
      }
      all.push_back(r);
    }
  }
  const auto better = [](const RankedExpert& x, const RankedExpert& y) {
    if (x.score != y.score) return x.score > y.score;
    return x.moe_layer != y.moe_layer ? x.moe_layer < y.moe_layer : x.expert < y.expert;
  };
  std::stable_sort(all.begin(), all.end(), better);
  std::vector<RankedExpert> out;
  if (!spec.per_layer) {
    out.assign(all.begin(), all.begin() + std::min<size_t>(all.size(), static_cast<size_t>(spec.top)));
  } else {
    std::vector<int> taken(static_cast<size_t>(d.moe_layers), 0);
    for (const auto& r : all) {
      if (taken[r.moe_layer] < spec.top) {
        out.push_back(r);
        ++taken[r.moe_layer];
      }
    }
  }
  return out;
}

}  // namespace mote
