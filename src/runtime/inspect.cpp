#include "mote/runtime/inspect.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "mote/io/h5.h"
#include "mote/model/expert_counters.h"
#include "mote/model/loaded_model.h"
#include "mote/results/profile_file.h"
#include "mote/results/scan_file.h"
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

std::string header(hid_t file, const std::filesystem::path& path) {
  std::string out =
      fmt::format("{}: a mote {} file (format {} v{}), written by mote {}\n", path.string(), root_string(file, "job"),
                  root_string(file, "format"), root_int(file, "format_version"), root_string(file, "mote_version"));
  out += fmt::format("command:   {}\n", root_string(file, "command_line"));
  return out;
}

// A scan: what was measured, on how many prompts and experts, at what cost,
// and the experts whose knockout changed the metric most.
std::string describe_scan(hid_t file, const std::filesystem::path& path, int top) {
  const ScanData s = read_scan_file(path);
  H5Handle g(H5Gopen2(file, "scan", H5P_DEFAULT), H5Gclose);
  const auto prompts = h5_read_string_list(g.id(), "prompts", 1u << 24, path.string() + ": /scan");
  size_t scanned = 0;
  for (const double e : s.effect) scanned += !std::isnan(e);
  std::string out = header(file, path);
  out += fmt::format("model:     {} ({}), {} MoE layers x {} routed experts\n", root_string(file, "model"),
                     root_string(file, "model_type"), s.moe_layers, s.experts);
  out +=
      fmt::format("scan:      metric {} ({}), knockouts {}, search {}\n", s.metric, s.metric_spec, s.policy, s.search);
  out += fmt::format("           {} prompts, {} experts scanned alone, {} requests in {:.1f} s\n", prompts.size(),
                     scanned, root_int(g.id(), "requests"), [&] {
                       double seconds = 0;
                       H5Handle a(H5Aopen(g.id(), "seconds", H5P_DEFAULT), H5Aclose);
                       if (a.id() >= 0) H5Aread(a.id(), H5T_NATIVE_DOUBLE, &seconds);
                       return seconds;
                     }());
  std::vector<double> score(s.effect.size());
  for (size_t i = 0; i < score.size(); ++i) score[i] = std::isnan(s.effect[i]) ? -INFINITY : s.effect[i];
  out += fmt::format("\ntop {} experts by effect (metric at baseline minus with the expert off, mean over prompts):\n",
                     top);
  out += "  moe_layer  decoder_layer  expert     effect   effect_sd\n";
  for (const size_t i : top_indices(score, top)) {
    if (std::isinf(score[i])) break;
    const int m = static_cast<int>(i) / s.experts;
    out += fmt::format("  {:>9}  {:>13}  {:>6}  {:>9.4f}  {:>10.4f}\n", m, s.decoder_index[static_cast<size_t>(m)],
                       static_cast<int>(i) % s.experts, s.effect[i], s.effect_sd[i]);
  }
  out += fmt::format("rank it into a mask with: mote rank --by effect {} --top N --out MASK.ini\n", path.string());
  return out;
}

// An experiment's table: the behaviour per condition and class.
std::string describe_experiment(hid_t file, const std::string& where) {
  H5Handle g(H5Gopen2(file, "experiment", H5P_DEFAULT), H5Gclose);
  if (g.id() < 0) fail("{}: cannot open /experiment", where);
  const auto conditions = h5_read_string_list(g.id(), "conditions", 1u << 16, where + ": /experiment");
  const auto classes = h5_read_string_list(g.id(), "classes", 1u << 16, where + ": /experiment");
  H5Handle rate_ds(H5Dopen2(g.id(), "rate", H5P_DEFAULT), H5Dclose);
  if (rate_ds.id() < 0 || h5_dims(rate_ds.id()) != std::vector<hsize_t>{conditions.size(), classes.size()}) {
    fail("{}: '/experiment/rate' must be [condition, class]", where);
  }
  std::vector<double> rate(conditions.size() * classes.size());
  if (!rate.empty() && H5Dread(rate_ds.id(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, rate.data()) < 0) {
    fail("{}: cannot read '/experiment/rate'", where);
  }
  std::string metric;
  h5_read_string_attr(g.id(), "metric", metric);
  std::string out = fmt::format("\nexperiment: behaviour {}\n{:<14}", metric, "condition");
  for (const auto& c : classes) out += fmt::format(" {:>14}", c);
  out += "\n";
  for (size_t i = 0; i < conditions.size(); ++i) {
    out += fmt::format("{:<14}", conditions[i]);
    for (size_t k = 0; k < classes.size(); ++k) out += fmt::format(" {:>14.3f}", rate[i * classes.size() + k]);
    out += "\n";
  }
  return out;
}

// How many requests keep routing traces and logits.
std::string describe_traces(hid_t file) {
  if (H5Lexists(file, "requests", H5P_DEFAULT) <= 0) return "";
  H5Handle requests(H5Gopen2(file, "requests", H5P_DEFAULT), H5Gclose);
  H5G_info_t info{};
  if (requests.id() < 0 || H5Gget_info(requests.id(), &info) < 0) return "";
  size_t traces = 0, logits = 0;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const std::string name = std::to_string(i);
    if (H5Lexists(requests.id(), name.c_str(), H5P_DEFAULT) <= 0) continue;
    H5Handle r(H5Gopen2(requests.id(), name.c_str(), H5P_DEFAULT), H5Gclose);
    if (r.id() < 0) continue;
    traces += H5Lexists(r.id(), "routing", H5P_DEFAULT) > 0;
    logits += H5Lexists(r.id(), "logits", H5P_DEFAULT) > 0;
  }
  return fmt::format("per request: routing traces in {} of {}, logits in {}\n", traces, info.nlinks, logits);
}

}  // namespace

std::string describe_result_file(const std::filesystem::path& path, int top) {
  h5_silence_errors();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (file.id() < 0) fail("{}: cannot open as HDF5", path.string());
  if (root_string(file.id(), "job") == "scan" || H5Lexists(file.id(), "scan", H5P_DEFAULT) > 0)
    return describe_scan(file.id(), path, top);
  const ProfileData d = read_profile_file(path);  // validates the counters' shapes
  std::string out = header(file.id(), path);
  out += fmt::format("model:     {} ({}), {} MoE layers x {} routed experts\n", root_string(file.id(), "model"),
                     root_string(file.id(), "model_type"), d.moe_layers, d.experts);
  out += fmt::format("run:       {} ranks, placement {}, seed {}, max_new_tokens {}\n",
                     root_int(file.id(), "world_size"), root_string(file.id(), "placement"),
                     root_int(file.id(), "seed"), root_int(file.id(), "max_new_tokens"));
  out += fmt::format("requests:  {} ({} failed)\n", root_int(file.id(), "request_count"),
                     root_int(file.id(), "failed_request_count"));
  out += fmt::format("masks:     {}\n",
                     d.masks.empty() ? "none (every request unsteered)" : fmt::format("{}", fmt::join(d.masks, ", ")));
  out += describe_traces(file.id());
  out += "\nclass                 prompt tokens  generated tokens  routed tokens\n";
  const size_t per_phase = static_cast<size_t>(d.moe_layers) * d.experts;
  for (size_t c = 0; c < d.classes.size(); ++c) {
    uint64_t routed = 0;
    for (size_t i = 0; i < 2 * per_phase; ++i) routed += d.counts[c * 2 * per_phase + i];
    out += fmt::format("{:<20} {:>14} {:>17} {:>14}\n", d.classes[c], d.tokens[c * kPhaseCount],
                       d.tokens[c * kPhaseCount + 1], routed);
  }
  for (size_t c = 0; c < d.classes.size(); ++c) {
    const auto f = frequencies(d, c);
    out += fmt::format("\ntop {} experts of class '{}' (activation frequency over its token positions):\n", top,
                       d.classes[c]);
    out += "  moe_layer  decoder_layer  expert  frequency\n";
    for (const size_t i : top_indices(f, top)) {
      const int m = static_cast<int>(i) / d.experts;
      out += fmt::format("  {:>9}  {:>13}  {:>6}  {:>9.4f}\n", m, d.decoder_index[static_cast<size_t>(m)],
                         static_cast<int>(i) % d.experts, f[i]);
    }
  }
  if (H5Lexists(file.id(), "experiment", H5P_DEFAULT) > 0) out += describe_experiment(file.id(), path.string());
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
    fail("{} has {} MoE layers x {} experts but {} has {} x {}: not profiles of the same model", a_path.string(),
         a.moe_layers, a.experts, b_path.string(), b.moe_layers, b.experts);
  }
  std::string out = fmt::format(
      "A = {}\nB = {}\nchange = frequency in B - frequency in A (tokens routed / token positions, all phases)\n",
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
    const auto count = [&](const ProfileData& d, size_t c, size_t i) {
      return d.counts[c * 2 * per_phase + i] + d.counts[(c * 2 + 1) * per_phase + i];
    };
    out += fmt::format("\nclass '{}': token positions {} (A) and {} (B); summed |change| {:.4f}\n", a.classes[ca],
                       a.tokens[ca * 2] + a.tokens[ca * 2 + 1], b.tokens[cb * 2] + b.tokens[cb * 2 + 1], l1);
    out += "  moe_layer  expert   freq A   freq B    change  tokens A  tokens B\n";
    for (const size_t i : top_indices(magnitude, top)) {
      out +=
          fmt::format("  {:>9}  {:>6}  {:>7.4f}  {:>7.4f}  {:>+8.4f}  {:>8}  {:>8}\n", static_cast<int>(i) / a.experts,
                      static_cast<int>(i) % a.experts, fa[i], fb[i], change[i], count(a, ca, i), count(b, cb, i));
    }
  }
  if (!any) fail("{} and {} have no class in common", a_path.string(), b_path.string());
  return out;
}

}  // namespace mote
