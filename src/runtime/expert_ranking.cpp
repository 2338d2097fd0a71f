#include "mote/runtime/expert_ranking.h"

#include <algorithm>
#include <cmath>

#include "mote/model/expert_counters.h"
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
  const bool last_prompt = spec.phase == "last-prompt";
  const std::vector<int> phases = phases_named(spec.phase).value_or(std::vector<int>{});
  if (phases.empty() && !last_prompt)
    fail("--phase '{}' is not one of all, prompt, generated, last-prompt", spec.phase);
  if (spec.score != "freq-diff" && spec.score != "log-odds" && spec.score != "gate-diff") {
    fail("--score '{}' is not one of freq-diff, log-odds, gate-diff", spec.score);
  }
  if (!(spec.smoothing > 0) || !std::isfinite(spec.smoothing)) fail("--smoothing must be positive");
  if (spec.top < 1) fail("--top must be at least 1");
  if (last_prompt && d.last_tokens.empty()) fail("internal error: the last prompt positions' routing was not read");

  // Tokens, routed tokens and gate weights of a class at (layer, expert), over the phase(s).
  const size_t L = static_cast<size_t>(d.moe_layers), E = static_cast<size_t>(d.experts);
  const auto tokens_of = [&](size_t cls) {
    if (last_prompt) return static_cast<double>(d.last_tokens[cls]);
    double n = 0;
    for (int p : phases) n += static_cast<double>(d.tokens[cls * 2 + static_cast<size_t>(p)]);
    return n;
  };
  const auto routed = [&](size_t cls, int l, int e, bool gate) {
    if (last_prompt) {
      const size_t i = (cls * L + static_cast<size_t>(l)) * E + static_cast<size_t>(e);
      return gate ? d.last_gate_sum[i] : static_cast<double>(d.last_counts[i]);
    }
    double v = 0;
    for (int p : phases) {
      const size_t i = ((cls * 2 + static_cast<size_t>(p)) * L + static_cast<size_t>(l)) * E + static_cast<size_t>(e);
      v += gate ? d.gate_sum[i] : static_cast<double>(d.counts[i]);
    }
    return v;
  };
  const double n_t = tokens_of(t), n_c = tokens_of(c);
  if (n_t == 0) fail("class '{}' has no tokens in phase '{}'", spec.target, spec.phase);
  if (n_c == 0) fail("class '{}' has no tokens in phase '{}'", spec.control, spec.phase);

  std::vector<RankedExpert> all;
  for (int l = 0; l < d.moe_layers; ++l) {
    for (int e = 0; e < d.experts; ++e) {
      const double a = routed(t, l, e, false), b = routed(c, l, e, false);
      RankedExpert r{l, e, 0, a / n_t, b / n_c};
      if (spec.score == "freq-diff") {
        r.score = r.target_frequency - r.control_frequency;
      } else if (spec.score == "gate-diff") {
        // The gate weight the expert gets per token of each class (0 where it is not chosen).
        r.target_frequency = routed(t, l, e, true) / n_t;
        r.control_frequency = routed(c, l, e, true) / n_c;
        r.score = r.target_frequency - r.control_frequency;
      } else {
        const double s = spec.smoothing;
        r.score = std::log((a + s) / (n_t - a + s)) - std::log((b + s) / (n_c - b + s));
      }
      all.push_back(r);
    }
  }
  return best_of(std::move(all), spec.top, spec.per_layer);
}

std::vector<RankedExpert> best_of(std::vector<RankedExpert> all, int top, bool per_layer) {
  const auto better = [](const RankedExpert& x, const RankedExpert& y) {
    if (x.score != y.score) return x.score > y.score;
    return x.moe_layer != y.moe_layer ? x.moe_layer < y.moe_layer : x.expert < y.expert;
  };
  std::stable_sort(all.begin(), all.end(), better);
  std::vector<RankedExpert> out;
  if (!per_layer) {
    out.assign(all.begin(), all.begin() + std::min<size_t>(all.size(), static_cast<size_t>(std::max(top, 0))));
  } else {
    std::vector<int> taken;
    for (const auto& r : all) {
      if (static_cast<size_t>(r.moe_layer) >= taken.size()) taken.resize(static_cast<size_t>(r.moe_layer) + 1, 0);
      if (taken[static_cast<size_t>(r.moe_layer)] < top) {
        out.push_back(r);
        ++taken[static_cast<size_t>(r.moe_layer)];
      }
    }
  }
  return out;
}

}  // namespace mote
