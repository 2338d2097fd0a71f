// Summaries of repeated measurements: a scan's change over prompts, an
// experiment's rate over its random controls.
#pragma once

#include <span>

namespace mote {

struct Spread {
  double mean = 0, sd = 0, min = 0, max = 0;
};

// Mean, sample standard deviation (over n - 1; 0 for one value), minimum
// and maximum; all 0 for no values.
Spread spread(std::span<const double> values);

}  // namespace mote
