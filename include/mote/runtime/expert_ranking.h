// fTRI expert ranking: scores every (MoE layer, expert) by how much more
// often it fires on a target class than on a control class.
//
//   f = tokens routed to the expert / token positions of the class (and phase)
//   freq-diff: f_target - f_control        (a risk difference on --phase)
//   log-odds:  ln((a+s)/(n_t-a+s)) - ln((b+s)/(n_c-b+s)), smoothing s
//   gate-diff: g_target - g_control, g = gate weights summed / token positions
//
// Phases: all, prompt, generated tokens, or last-prompt: the last prompt
// position of each request only (where the answer starts), from traces.
#pragma once

#include <string>
#include <vector>

#include "mote/results/profile_file.h"

namespace mote {

struct RankingSpec {
  std::string target, control;
  std::string score = "freq-diff";  // or log-odds
  std::string phase = "all";        // all, prompt, generated, last-prompt
  double smoothing = 0.5;
  int top = 10;
  bool per_layer = false;  // top N in every MoE layer instead of overall
};

struct RankedExpert {
  int moe_layer = 0, expert = 0;
  double score = 0;
  double target_frequency = 0, control_frequency = 0;  // a profile's, by frequency
  double score_sd = 0;                                 // a scan's effect: its standard deviation over prompts
};

// Best first; ties go to the lower (layer, expert).
std::vector<RankedExpert> rank_experts(const ProfileData& data, const RankingSpec& spec);
// The `top` best of `all` by score (in every MoE layer with `per_layer`),
// best first; ties go to the lower (layer, expert).
std::vector<RankedExpert> best_of(std::vector<RankedExpert> all, int top, bool per_layer);

}  // namespace mote
