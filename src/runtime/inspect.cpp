#include "mote/runtime/inspect.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "mote/expert_parallel/expert_counters.h"
#include "mote/io/h5.h"
#include "mote/io/profile_file.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/memory_plan.h"
#include "mote/util/error.h"

namespace mote {
namespace {

// A root string attribute, or "?" (read only when it is a short string).
std::string root_string(hid_t file, const char* name) {
  std::string value;
  return h5_read_string_attr(file, name, value) ? value : "?";
}

int64_t root_int(hid_t file, const char* name) {
  int64_t v = -1;
  return h5_read_int_attr(file, name, v) ? v : -1;
}

// Activation frequency of every (layer, expert) in class `c`, all phases.
std::vector<double> frequencies(const ProfileData& d, size_t c) {
  const size_t per_phase = static_cast<size_t>(d.moe_layers) * d.experts;
  const double positions = static_cast<double>(d.tokens[c * kPhaseCount] + d.tokens[c * kPhaseCount + 1]);
  std::vector<double> f(per_phase, 0.0);
  for (size_t i = 0; i < per_phase; ++i) {
    const uint64_t n = d.counts[(c * kPhaseCount) * per_phase + i] + d.counts[(c * kPhaseCount + 1) * per_phase + i];
    f[i] = positions > 0 ? static_cast<double>(n) / positions : 0.0;
  }
  return f;
}

std::vector<size_t> top_indices(const std::vector<double>& score, int top) {
  std::vector<size_t> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
  order.resize(std::min(order.size(), static_cast<size_t>(std::max(top, 0))));
  return order;
}

}  // namespace

std::string describe_result_file(const std::filesystem::path& path, int top) {
  const ProfileData d = read_profile_file(path);  // validates the counters' shapes
  h5_silence_errors();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file.id() < 0) fail("{}: cannot open as HDF5", path.string());
  std::string out = fmt::format("{}: a mote {} file (format {} v{}), written by mote {}\n", path.string(), root_string(file.id(), "job"),
                                root_string(file.id(), "format"), root_int(file.id(), "format_version"),
                                root_string(file.id(), "mote_version"));
  out += fmt::format("command:   {}\n", root_string(file.id(), "command_line"));
  out += fmt::format("model:     {} ({}), {} MoE layers x {} routed experts\n", root_string(file.id(), "model"),
                     root_string(file.id(), "model_type"), d.moe_layers, d.experts);
  out += fmt::format("run:       {} ranks, placement {}, seed {}, max_new_tokens {}\n", root_int(file.id(), "world_size"),
                     root_string(file.id(), "placement"), root_int(file.id(), "seed"), root_int(file.id(), "max_new_tokens"));
  out += fmt::format("requests:  {} ({} failed)\n", root_int(file.id(), "request_count"), root_int(file.id(), "failed_request_count"));
  out += fmt::format("masks:     {}\n", d.masks.empty() ? "none (every request unsteered)" : fmt::format("{}", fmt::join(d.masks, ", ")));
  out += "\nclass                 prompt tokens  generated tokens  routed tokens\n";
  const size_t per_phase = static_cast<size_t>(d.moe_layers) * d.experts;
  for (size_t c = 0; c < d.classes.size(); ++c) {
    uint64_t routed = 0;
    for (size_t i = 0; i < 2 * per_phase; ++i) routed += d.counts[c * 2 * per_phase + i];
    out += fmt::format("{:<20} {:>14} {:>17} {:>14}\n", d.classes[c], d.tokens[c * kPhaseCount], d.tokens[c * kPhaseCount + 1], routed);
  }
  for (size_t c = 0; c < d.classes.size(); ++c) {
    const auto f = frequencies(d, c);
    out += fmt::format("\ntop {} experts of class '{}' (activation frequency over its token positions):\n", top, d.classes[c]);
    out += "  moe_layer  decoder_layer  expert  frequency\n";
    for (const size_t i : top_indices(f, top)) {
      const int m = static_cast<int>(i) / d.experts;
      out += fmt::format("  {:>9}  {:>13}  {:>6}  {:>9.4f}\n", m, d.decoder_index[static_cast<size_t>(m)], static_cast<int>(i) % d.experts, f[i]);
    }
  }
  return out;
}

std::string describe_model_dir(const std::filesystem::path& dir, int world_size) {
  PlanRequest req;
  req.model_dir = dir;
  req.world_size = world_size;
  const MemoryPlan plan = plan_memory(req);
  std::string out = format_plan_text(plan);
  const auto tokenizer = dir / "tokenizer.json";
  std::error_code ec;
  out += fmt::format("tokenizer: {}\n", std::filesystem::exists(tokenizer, ec) ? tokenizer.string() : "missing");
  return out;
}

std::string diff_profiles(const std::filesystem::path& a_path, const std::filesystem::path& b_path, int top) {
  const ProfileData a = read_profile_file(a_path, "mote diff"), b = read_profile_file(b_path, "mote diff");
  if (a.moe_layers != b.moe_layers || a.experts != b.experts) {
    fail("{} has {} MoE layers x {} experts but {} has {} x {}: not profiles of the same model", a_path.string(), a.moe_layers, a.experts,
         b_path.string(), b.moe_layers, b.experts);
  }
  std::string out = fmt::format("A = {}\nB = {}\nchange = frequency in B - frequency in A (tokens routed / token positions, all phases)\n",
                                a_path.string(), b_path.string());
  bool any = false;
  for (size_t ca = 0; ca < a.classes.size(); ++ca) {
    const auto it = std::find(b.classes.begin(), b.classes.end(), a.classes[ca]);
    if (it == b.classes.end()) continue;
    any = true;
    const size_t cb = static_cast<size_t>(it - b.classes.begin());
    const auto fa = frequencies(a, ca), fb = frequencies(b, cb);
    std::vector<double> change(fa.size()), magnitude(fa.size());
    double l1 = 0;
    for (size_t i = 0; i < fa.size(); ++i) {
      change[i] = fb[i] - fa[i];
      magnitude[i] = std::abs(change[i]);
      l1 += magnitude[i];
    }
    const size_t per_phase = static_cast<size_t>(a.moe_layers) * a.experts;
    const auto count = [&](const ProfileData& d, size_t c, size_t i) { return d.counts[c * 2 * per_phase + i] + d.counts[(c * 2 + 1) * per_phase + i]; };
    out += fmt::format("\nclass '{}': token positions {} (A) and {} (B); summed |change| {:.4f}\n", a.classes[ca],
                       a.tokens[ca * 2] + a.tokens[ca * 2 + 1], b.tokens[cb * 2] + b.tokens[cb * 2 + 1], l1);
    out += "  moe_layer  expert   freq A   freq B    change  tokens A  tokens B\n";
    for (const size_t i : top_indices(magnitude, top)) {
      out += fmt::format("  {:>9}  {:>6}  {:>7.4f}  {:>7.4f}  {:>+8.4f}  {:>8}  {:>8}\n", static_cast<int>(i) / a.experts, static_cast<int>(i) % a.experts,
                         fa[i], fb[i], change[i], count(a, ca, i), count(b, cb, i));
    }
  }
  if (!any) fail("{} and {} have no class in common", a_path.string(), b_path.string());
  return out;
}

}  // namespace mote
