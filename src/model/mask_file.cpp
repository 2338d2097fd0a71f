#include "mote/model/mask_file.h"

#include <boost/program_options.hpp>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

#include "mote/io/ini_file.h"
#include "mote/util/error.h"
#include "mote/util/utf8.h"

namespace mote {
namespace {

namespace po = boost::program_options;

const char* const kListKeys[] = {"off", "on", "gain", "include"};
const char* const kSingleKeys[] = {"layer-index", "off-policy", "on-policy", "shared-gain"};

// Reads a mask file into `mask`, following includes.
class MaskReader {
 public:
  MaskReader(const ModelConfig& config, ExpertMask& mask) : config_(config), moe_(config.moe_layers()), mask_(mask) {}

  // Returns whether the file had any [mote] key.
  bool read(const std::filesystem::path& path, bool allow_other_keys) {
    std::error_code ec;
    const auto canonical = std::filesystem::weakly_canonical(path, ec);
    const std::string id = ec ? path.string() : canonical.string();
    if (open_.count(id) > 0) fail("{}: includes itself (through include = ...)", path.string());
    if (open_.size() >= 16) fail("{}: mask files nested more than 16 deep", path.string());
    // A file included twice adds nothing the first reading did not: read
    // each once, so that includes fanning out cost their size, not the
    // number of paths through them.
    if (const auto done = done_.find(id); done != done_.end()) return done->second;
    if (files_.size() >= kMaxFiles)
      fail("{}: the mask includes more than {} files in all", files_.front().string(), kMaxFiles);
    open_.insert(id);

    const std::string text = read_ini_file(path, allow_other_keys ? "job file" : "mask file");
    std::error_code size_ec;
    bytes_ += std::filesystem::file_size(path, size_ec);  // as read, comments too
    if (bytes_ > kMaxBytes)
      fail("{}: the mask and its includes hold more than {} MiB in all",
           files_.empty() ? path.string() : files_.front().string(), kMaxBytes >> 20);
    files_.push_back(path);
    const bool any = read_text(text, path.string(), &path, allow_other_keys);
    open_.erase(id);
    done_[id] = any;
    return any;
  }

  // Reads checked INI text (check_ini_text); `path` is where includes are
  // relative to, or null for text that may not include files.
  bool read_text(const std::string& text, const std::string& where, const std::filesystem::path* path,
                 bool allow_other_keys) {
    const auto key_lines = ini_key_lines(text);
    const auto line_of = [&](const std::string& key, int occurrence = 0) {
      const auto it = key_lines.find(key);
      return it == key_lines.end() || static_cast<size_t>(occurrence) >= it->second.size()
                 ? 0
                 : it->second[static_cast<size_t>(occurrence)];
    };
    std::istringstream in(text);
    po::variables_map vm;
    try {
      po::store(po::parse_config_file(in, mask_file_options(), allow_other_keys), vm);
    } catch (const po::error_with_option_name& e) {
      const std::string key =
          e.get_option_name().starts_with("--") ? e.get_option_name().substr(2) : e.get_option_name();
      fail("{}:{}: key '{}': {}", where, line_of(key), key, e.what());
    } catch (const po::error& e) {
      fail("{}: {}", where, e.what());
    }

    const auto single = [&](const char* key) -> std::optional<std::string> {
      const std::string full = std::string("mote.") + key;
      if (vm.count(full) == 0) return std::nullopt;
      return vm[full].as<std::string>();
    };
    const auto mote_line = [&](const char* key, int occurrence = 0) {
      return line_of(std::string("mote.") + key, occurrence);
    };
    const auto list = [&](const char* key) {
      const std::string full = std::string("mote.") + key;
      return vm.count(full) ? vm[full].as<std::vector<std::string>>() : std::vector<std::string>{};
    };
    bool any = false;
    for (const auto& entry : vm) any |= entry.first.starts_with("mote.");

    if (const auto v = single("off-policy")) {
      const auto p = parse_off_policy(*v);
      if (!p) fail("{}:{}: off-policy = {}: not one of reroute, drop, zero", where, mote_line("off-policy"), *v);
      set_policy(off_policy_, *p, where, mote_line("off-policy"), "off-policy");
    }
    if (const auto v = single("on-policy")) {
      const auto p = parse_on_policy(*v);
      if (!p) fail("{}:{}: on-policy = {}: not one of natural, max", where, mote_line("on-policy"), *v);
      set_policy(on_policy_, *p, where, mote_line("on-policy"), "on-policy");
    }
    if (const auto v = single("shared-gain")) {
      const float g = parse_gain(*v, where, mote_line("shared-gain"), "shared-gain");
      if (shared_gain_ && *shared_gain_ != g)
        fail("{}:{}: shared-gain = {} conflicts with shared-gain = {} set before", where, mote_line("shared-gain"), *v,
             *shared_gain_);
      shared_gain_ = g;
    }

    const auto off = list("off"), on = list("on"), gain = list("gain");
    bool decoder_index = false;
    if (!off.empty() || !on.empty() || !gain.empty()) {
      const auto li = single("layer-index");
      if (!li)
        fail(
            "{}: the file lists entries but does not say how it numbers layers: add 'layer-index = moe' or "
            "'layer-index = decoder' to [mote]",
            where);
      if (*li != "moe" && *li != "decoder")
        fail("{}:{}: layer-index = {}: not one of moe, decoder", where, mote_line("layer-index"), *li);
      decoder_index = *li == "decoder";
    }
    for (size_t i = 0; i < off.size(); ++i) {
      const int line = mote_line("off", static_cast<int>(i));
      const auto [l, e, g] = parse_entry(off[i], false, decoder_index, where, line, "off");
      (void)g;
      if (mask_.is_on(l, e))
        fail("{}:{}: off = {} conflicts with an earlier 'on' for the same expert", where, line, off[i]);
      mask_.set_off(l, e);
    }
    for (size_t i = 0; i < on.size(); ++i) {
      const int line = mote_line("on", static_cast<int>(i));
      const auto [l, e, g] = parse_entry(on[i], false, decoder_index, where, line, "on");
      (void)g;
      if (mask_.is_off(l, e))
        fail("{}:{}: on = {} conflicts with an earlier 'off' for the same expert", where, line, on[i]);
      if (!mask_.is_on(l, e)) {
        mask_.set_on(l, e);
        check_forced(l, where, line, on[i]);
      }
    }
    for (size_t i = 0; i < gain.size(); ++i) {
      const int line = mote_line("gain", static_cast<int>(i));
      const auto [l, e, g] = parse_entry(gain[i], true, decoder_index, where, line, "gain");
      if (mask_.is_off(l, e)) fail("{}:{}: gain = {} is for an expert that is switched off", where, line, gain[i]);
      float& slot = mask_.gains[mask_.index(l, e)];
      if (gain_set_.count(mask_.index(l, e)) > 0 && slot != g)
        fail("{}:{}: gain = {} conflicts with an earlier gain {} for the same expert", where, line, gain[i], slot);
      slot = g;
      gain_set_.insert(mask_.index(l, e));
    }
    for (size_t i = 0; const auto& inc : list("include")) {
      const int line = mote_line("include", static_cast<int>(i++));
      if (path == nullptr) fail("{}:{}: include = {}: this mask cannot include files", where, line, short_excerpt(inc));
      if (inc.empty()) fail("{}:{}: include = (empty)", where, line);
      // Relative to the including file, as C, ssh and nginx resolve includes.
      const std::filesystem::path target =
          std::filesystem::path(inc).is_absolute() ? std::filesystem::path(inc) : path->parent_path() / inc;
      try {
        if (!read(target, false)) fail("{}: holds no [mote] entries (an empty mask file)", target.string());
      } catch (const Error& e) {
        if (std::string_view(e.what()).starts_with(where + ":")) throw;
        fail("{}:{}: include = {}: {}", where, line, short_excerpt(inc, 200), e.what());
      }
    }
    return any;
  }

  void finish() {
    mask_.off_policy = off_policy_.value_or(OffPolicy::Reroute);
    mask_.on_policy = on_policy_.value_or(OnPolicy::Natural);
    mask_.shared_gain = shared_gain_.value_or(1.0f);
  }

 private:
  struct Entry {
    int layer, expert;
    float gain;
  };

  template <typename T>
  void set_policy(std::optional<T>& slot, T value, const std::string& where, int line, const char* key) {
    if (slot && *slot != value) fail("{}:{}: {} conflicts with the value set in an including file", where, line, key);
    slot = value;
  }

  static float parse_gain(const std::string& text, const std::string& where, int line, const char* key) {
    size_t used = 0;
    float g = 0;
    try {
      g = std::stof(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || text.empty() || !std::isfinite(g) || g < 0) {
      fail("{}:{}: {} = {}: expected a finite gain >= 0", where, line, key, text);
    }
    return g;
  }

  static int parse_index(const std::string& text, bool& ok) {
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) {
      ok = false;
      return 0;
    }
    return std::stoi(text);
  }

  Entry parse_entry(const std::string& value, bool with_gain, bool decoder_index, const std::string& where, int line,
                    const char* key) const {
    std::vector<std::string> parts;
    std::stringstream ss(value);
    for (std::string part; std::getline(ss, part, ':');) parts.push_back(part);
    const size_t want = with_gain ? 3 : 2;
    bool ok = parts.size() == want;
    int layer = ok ? parse_index(parts[0], ok) : 0;
    const int expert = ok ? parse_index(parts[1], ok) : 0;
    if (!ok)
      fail("{}:{}: {} = {}: expected {}", where, line, key, value, with_gain ? "LAYER:EXPERT:GAIN" : "LAYER:EXPERT");
    const float gain = with_gain ? parse_gain(parts[2], where, line, key) : 1.0f;
    if (decoder_index) {
      if (layer >= config_.num_hidden_layers) {
        fail("{}:{}: {} = {}: decoder layer {} does not exist (the model has {})", where, line, key, value, layer,
             config_.num_hidden_layers);
      }
      const auto it = std::find(moe_.begin(), moe_.end(), layer);
      if (it == moe_.end())
        fail("{}:{}: {} = {}: decoder layer {} is a dense layer, it has no routed experts", where, line, key, value,
             layer);
      layer = static_cast<int>(it - moe_.begin());
    } else if (layer >= static_cast<int>(moe_.size())) {
      fail("{}:{}: {} = {}: MoE layer {} does not exist (the model has {})", where, line, key, value, layer,
           moe_.size());
    }
    if (expert >= config_.n_routed_experts) {
      fail("{}:{}: {} = {}: expert {} does not exist (the model has {} routed experts)", where, line, key, value,
           expert, config_.n_routed_experts);
    }
    return {layer, expert, gain};
  }

  void check_forced(int layer, const std::string& where, int line, const std::string& value) const {
    const int forced = mask_.count_on(layer);
    if (forced > config_.num_experts_per_tok) {
      fail("{}:{}: on = {}: {} experts forced on in MoE layer {}, more than the {} a token takes", where, line, value,
           forced, layer, config_.num_experts_per_tok);
    }
    std::set<int> groups;
    for (int e = 0; e < config_.n_routed_experts; ++e) {
      if (mask_.is_on(layer, e)) groups.insert(e / config_.experts_per_group());
    }
    if (static_cast<int>(groups.size()) > config_.topk_group) {
      fail("{}:{}: on = {}: forced experts of MoE layer {} span {} groups, more than topk_group {}", where, line, value,
           layer, groups.size(), config_.topk_group);
    }
  }

  const ModelConfig& config_;
  std::vector<int> moe_;
  ExpertMask& mask_;
  std::vector<std::filesystem::path> files_;
  static constexpr size_t kMaxFiles = 1024;
  static constexpr uint64_t kMaxBytes = 64ull << 20;
  std::set<std::string> open_;
  std::map<std::string, bool> done_;
  uint64_t bytes_ = 0;
  std::set<size_t> gain_set_;
  std::optional<OffPolicy> off_policy_;
  std::optional<OnPolicy> on_policy_;
  std::optional<float> shared_gain_;
};

ExpertMask new_mask(const ModelConfig& config, const std::string& name) {
  ExpertMask mask(static_cast<int>(config.moe_layers().size()), config.n_routed_experts);
  mask.name = name;
  return mask;
}

}  // namespace

po::options_description mask_file_options() {
  po::options_description d;
  for (const char* key : kListKeys)
    d.add_options()((std::string("mote.") + key).c_str(), po::value<std::vector<std::string>>()->composing());
  for (const char* key : kSingleKeys) d.add_options()((std::string("mote.") + key).c_str(), po::value<std::string>());
  return d;
}

ExpertMask read_mask_file(const std::filesystem::path& path, const ModelConfig& config, const std::string& name) {
  ExpertMask mask = new_mask(config, name);
  MaskReader reader(config, mask);
  if (!reader.read(path, false)) fail("{}: holds no [mote] entries (an empty mask file)", path.string());
  reader.finish();
  mask.description = format_mask_file(mask);
  return mask;
}

ExpertMask parse_mask_text(const std::string& text, const ModelConfig& config, const std::string& name,
                           const std::string& where) {
  if (text.size() > (1u << 20)) fail("{}: a mask of {} bytes; at most 1 MiB", where, text.size());
  ExpertMask mask = new_mask(config, name);
  MaskReader reader(config, mask);
  if (!reader.read_text(check_ini_text(text, where, "mask"), where, nullptr, false))
    fail("{}: holds no [mote] entries (an empty mask)", where);
  reader.finish();
  mask.description = format_mask_file(mask);
  return mask;
}

std::optional<ExpertMask> read_job_file_mask(const std::filesystem::path& path, const ModelConfig& config,
                                             const std::string& name) {
  ExpertMask mask = new_mask(config, name);
  MaskReader reader(config, mask);
  if (!reader.read(path, true)) return std::nullopt;
  reader.finish();
  mask.description = format_mask_file(mask);
  return mask;
}

std::string format_mask_file(const ExpertMask& m, const std::string& header,
                             const std::vector<std::pair<int, int>>& off_order) {
  std::string out;
  std::stringstream hs(header);
  for (std::string line; std::getline(hs, line);) out += "# " + line + "\n";
  out += "[mote]\nlayer-index = moe\n";
  out += fmt::format("off-policy = {}\non-policy = {}\n", off_policy_name(m.off_policy), on_policy_name(m.on_policy));
  if (m.shared_gain != 1.0f) out += fmt::format("shared-gain = {}\n", m.shared_gain);
  std::set<std::pair<int, int>> written;
  for (const auto& [l, e] : off_order) {
    if (m.is_off(l, e) && written.insert({l, e}).second) out += fmt::format("off = {}:{}\n", l, e);
  }
  for (int l = 0; l < m.moe_layers; ++l) {
    for (int e = 0; e < m.experts; ++e) {
      if (m.is_off(l, e) && !written.contains({l, e})) out += fmt::format("off = {}:{}\n", l, e);
      if (m.is_on(l, e)) out += fmt::format("on = {}:{}\n", l, e);
      if (m.gain(l, e) != 1.0f) out += fmt::format("gain = {}:{}:{}\n", l, e, m.gain(l, e));
    }
  }
  return out;
}

}  // namespace mote
