#include "mote/runtime/memory_plan.h"

#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mote/io/safetensors.h"
#include "mote/model/loaded_model.h"
#include "mote/model/weights.h"
#include "mote/ops/weight.h"
#include "mote/util/error.h"

namespace mote {
namespace {

uint64_t& slot(RankPlan& r, TensorPart part) {
  switch (part) {
    case TensorPart::Embeddings:
      return r.embeddings;
    case TensorPart::Attention:
      return r.attention;
    case TensorPart::Dense:
      return r.dense;
    case TensorPart::Shared:
      return r.shared;
    case TensorPart::Routed:
      return r.routed;
    case TensorPart::RouterAndNorms:
      break;
  }
  return r.router_and_norms;
}

// Bytes a tensor takes as DeepSeek ships it, for a model not downloaded yet.
uint64_t derived_bytes(const TensorSpec& spec, const ModelConfig& c, size_t element) {
  uint64_t n = 1;
  for (int64_t d : spec.shape) n *= static_cast<uint64_t>(d);
  if (spec.is_bias) return n * 4;
  if (spec.packed != TensorSpec::Packed::No) return n;
  if (c.fp8 && spec.quantizable && spec.shape.size() == 2) {
    const uint64_t blocks = static_cast<uint64_t>((spec.shape[0] + kFp8Block - 1) / kFp8Block) *
                            ((spec.shape[1] + kFp8Block - 1) / kFp8Block);
    return n + 4 * blocks;
  }
  return n * element;
}

size_t element_size_of(const std::filesystem::path& config_path) {
  const auto j = nlohmann::json::parse(std::ifstream(config_path), nullptr, false);
  const std::string dtype = j.is_object() && j.contains("torch_dtype") && j["torch_dtype"].is_string()
                                ? j["torch_dtype"].get<std::string>()
                                : "bfloat16";
  return dtype == "float32" ? 4 : 2;
}

// Sizes print in GB, or in MB for models too small to read in GB.
double g_unit = 1e9;
std::string gb(uint64_t bytes) { return fmt::format("{:.2f}", static_cast<double>(bytes) / g_unit); }

}  // namespace

MemoryPlan plan_memory(const PlanRequest& req) {
  MemoryPlan plan;
  plan.request = req;
  const int coordinators = plan.request.coordinators = coordinator_count(req.coordinators, req.world_size);
  plan.config = read_model_dir_config(req.model_dir);
  const ModelConfig& c = plan.config;
  const int moe_layers = static_cast<int>(c.moe_layers().size());
  const Placement placement = req.placement_file.empty()
                                  ? Placement::by_rule(req.placement, moe_layers, c.n_routed_experts, req.world_size,
                                                       req.coordinator_experts, coordinators)
                                  : Placement::from_file(req.placement_file, moe_layers, c.n_routed_experts,
                                                         req.world_size, req.coordinator_experts, coordinators);
  plan.placement_name = placement.name();
  if (req.batch_size < 1 || req.context_tokens < 1 || req.max_step_tokens < 1)
    fail("batch size, context and step tokens must be at least 1");

  // Sizes from the headers of the files that are present; the index alone
  // says where the others would be.
  const auto index = WeightStore::read_index(req.model_dir);
  std::map<std::string, uint64_t> header_bytes;
  std::vector<std::filesystem::path> present;
  size_t missing_files = 0;
  std::set<std::string> files;
  if (index.empty()) {
    files.insert("model.safetensors");
  } else {
    for (const auto& [tensor, file] : index) files.insert(file);
  }
  for (const auto& file : files) {
    std::error_code ec;
    if (std::filesystem::exists(req.model_dir / file, ec)) {
      present.push_back(req.model_dir / file);
    } else {
      ++missing_files;
    }
  }
  if (index.empty() && present.empty())
    fail("{}: no model.safetensors or model.safetensors.index.json in the model directory", req.model_dir.string());
  if (!present.empty()) {
    const WeightStore store = WeightStore::open_files(present, [](std::string_view) { return false; });
    for (const auto& [name, view] : store.all()) header_bytes[name] = view->nbytes;
  }
  plan.sizes_from = missing_files == 0 ? fmt::format("safetensors headers ({} files)", present.size())
                    : present.empty()
                        ? "config.json and the index (no weight files present)"
                        : fmt::format("safetensors headers ({} files) and config.json for the {} files not present",
                                      present.size(), missing_files);

  const size_t element = element_size_of(req.model_dir / "config.json");
  plan.ranks.assign(static_cast<size_t>(req.world_size), RankPlan{});
  std::pair<int, int> last_expert{-1, -1};
  for (const TensorSpec& spec : expected_tensors(c)) {
    uint64_t values = spec.packed == TensorSpec::Packed::Scales ? 0 : 1;
    for (const int64_t d : spec.shape) values *= static_cast<uint64_t>(d);
    if (spec.packed == TensorSpec::Packed::Blocks) values *= 2;  // two e2m1 values a byte
    plan.parameters += values;
    if (spec.part == TensorPart::Routed) plan.routed_parameters += values;
    std::vector<std::string> names{spec.name};
    if (c.fp8 && spec.quantizable && spec.shape.size() == 2) names.push_back(spec.name + "_scale_inv");
    uint64_t bytes = 0;
    bool from_header = true;
    for (const auto& name : names) {
      if (const auto it = header_bytes.find(name); it != header_bytes.end()) {
        bytes += it->second;
        continue;
      }
      const auto in_index = index.find(name);
      const bool file_present =
          index.empty() || (in_index != index.end() && std::filesystem::exists(req.model_dir / in_index->second));
      if (!index.empty() && in_index == index.end())
        fail("{}: the index does not map tensor '{}'", req.model_dir.string(), name);
      if (file_present) fail("missing tensor '{}' in {}", name, req.model_dir.string());
      from_header = false;
    }
    if (!from_header) bytes = derived_bytes(spec, c, element);
    plan.model_bytes += bytes;
    if (spec.part == TensorPart::Routed && spec.expert < 0) {
      // All the layer's experts stacked in one tensor: an equal slice each,
      // an expert counted at its slice of the layer's first tensor.
      const bool first = std::pair(spec.moe_layer, 0) != last_expert;
      for (int e = 0; e < c.n_routed_experts; ++e) {
        RankPlan& owner = plan.ranks[static_cast<size_t>(placement.owner(spec.moe_layer, e))];
        owner.routed += bytes / static_cast<uint64_t>(c.n_routed_experts);
        if (first) ++owner.routed_experts;
      }
      last_expert = {spec.moe_layer, 0};
    } else if (spec.part == TensorPart::Routed) {
      RankPlan& owner = plan.ranks[static_cast<size_t>(placement.owner(spec.moe_layer, spec.expert))];
      owner.routed += bytes;
      // An expert's tensors come together: count it at its first.
      if (std::pair(spec.moe_layer, spec.expert) != last_expert) ++owner.routed_experts;
      last_expert = {spec.moe_layer, spec.expert};
    } else {
      for (int r = 0; r < coordinators; ++r) slot(plan.ranks[static_cast<size_t>(r)], spec.part) += bytes;
    }
  }

  // KV cache (fp32: MLA's latent + rope key, or GQA's keys and values, per
  // layer and position) and the
  // largest working buffers of one step, on the coordinator; an expert
  // shard's buffers are the tokens it may be sent in one step.
  // Sliding-window layers (gpt-oss) hold their window, whatever the context.
  const int context = std::min(req.context_tokens, c.max_position_embeddings);
  uint64_t full_layers = 0, window_rows = 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    if (c.is_sliding_layer(l))
      window_rows += static_cast<uint64_t>(std::min(c.sliding_window, context));
    else
      ++full_layers;
  }
  const uint64_t entry_bytes = static_cast<uint64_t>(c.kv_entry_size()) * 4;
  plan.kv_bytes_per_token = full_layers * entry_bytes;
  plan.kv_window_bytes = window_rows * entry_bytes;
  const uint64_t rows = static_cast<uint64_t>(std::max(req.max_step_tokens, req.batch_size));
  const uint64_t hidden = static_cast<uint64_t>(c.hidden_size), heads = static_cast<uint64_t>(c.num_attention_heads);
  const uint64_t k = static_cast<uint64_t>(c.num_experts_per_tok);
  const uint64_t widest_ffn = std::max<uint64_t>(
      c.intermediate_size, static_cast<uint64_t>(c.moe_intermediate_size) * std::max(c.n_shared_experts, 1));
  const uint64_t coordinator_rows =
      4 * rows *
      (4 * hidden +
       (c.attention == AttentionKind::Mla
            ? heads * (c.qk_head_dim() + 2 * c.kv_lora_rank + c.v_head_dim) + c.kv_lora_rank + c.qk_rope_head_dim
            : 2 * heads * c.head_dim + 2 * static_cast<uint64_t>(c.kv_entry_size())) +
       c.n_routed_experts + 2 * k * hidden + 2 * widest_ffn);
  // Records out and results back; a job of one rank exchanges nothing.
  const uint64_t exchange = req.world_size == 1 ? 0 : rows * k * (hidden * 4 + 64) * 2;
  const uint64_t shard_work = rows * k * (hidden * 4 * 2 + 2 * 4 * static_cast<uint64_t>(c.moe_intermediate_size) + 64);
  // The process: about 30 MB of code, libraries and MPI buffers on every
  // rank (29-36 MB on every fixture), and the tokenizer every rank loads
  // (to check the vocabulary and stop tokens against the model), which
  // peaks at about 7 times its tokenizer.json while it loads (DeepSeek-V3's
  // 7.8 MB file: 55 MB; gpt-oss's 28 MB: 190 MB).
  std::error_code ec;
  const uint64_t tokenizer_file = std::filesystem::file_size(req.model_dir / "tokenizer.json", ec);
  const uint64_t tokenizer = ec ? 0 : 5'000'000 + 7 * tokenizer_file;
  for (int r = 0; r < req.world_size; ++r) {
    RankPlan& rp = plan.ranks[static_cast<size_t>(r)];
    rp.process = 30'000'000 + tokenizer;
    rp.buffers = shard_work + exchange;
    if (r < coordinators) {
      rp.kv_cache = (plan.kv_bytes_per_token * static_cast<uint64_t>(context) + plan.kv_window_bytes) *
                    static_cast<uint64_t>(req.batch_size);
      rp.buffers += coordinator_rows + static_cast<uint64_t>(req.batch_size) * c.vocab_size * 4;
    }
    if (req.mem_per_rank > 0 && rp.total() > req.mem_per_rank) plan.over_limit.push_back(r);
  }
  return plan;
}

std::string format_plan_text(const MemoryPlan& p) {
  const ModelConfig& c = p.config;
  std::string out = fmt::format("model {}: {}\n", p.request.model_dir.string(), c.summary());
  out += fmt::format("{:.2f} B parameters ({:.2f} B in routed experts), {:.2f} GB of weights; ",
                     static_cast<double>(p.parameters) / 1e9, static_cast<double>(p.routed_parameters) / 1e9,
                     static_cast<double>(p.model_bytes) / 1e9);
  out += fmt::format("sizes from {}\n", p.sizes_from);
  out += fmt::format("world size {}, {} coordinator{}, placement {}, coordinators hold experts: {}\n",
                     p.request.world_size, p.request.coordinators, p.request.coordinators == 1 ? "" : "s",
                     p.placement_name, p.request.coordinator_experts);
  const std::string window = p.kv_window_bytes > 0
                                 ? fmt::format(" (full layers) + {:.1f} KB per request (sliding layers' windows)",
                                               static_cast<double>(p.kv_window_bytes) / 1e3)
                                 : "";
  out += fmt::format("KV cache: {:.1f} KB per token{}; {} requests x {} tokens = {:.1f} MB on each coordinator\n",
                     static_cast<double>(p.kv_bytes_per_token) / 1e3, window, p.request.batch_size,
                     std::min(p.request.context_tokens, c.max_position_embeddings),
                     static_cast<double>(p.ranks[0].kv_cache) / 1e6);
  uint64_t largest = 0;
  for (const auto& r : p.ranks) largest = std::max(largest, r.total());
  g_unit = largest >= 10'000'000'000ull ? 1e9 : 1e6;
  const char* unit = g_unit == 1e9 ? "GB" : "MB";
  out += fmt::format(
      "\n{} per rank (1 {} = {} bytes; buffers: the working memory of a full step; process: code, libraries,\n"
      "MPI and the tokenizer)\n",
      unit, unit, g_unit == 1e9 ? "1e9" : "1e6");
  out += fmt::format("{:>5} {:>8} {:>10} {:>9} {:>8} {:>12} {:>8} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9}\n", "rank",
                     "experts", "embedding", "attention", "dense", "router+norms", "shared", "routed", "weights", "kv",
                     "buffers", "process", "total");
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    const RankPlan& x = p.ranks[r];
    out += fmt::format("{:>5} {:>8} {:>10} {:>9} {:>8} {:>12} {:>8} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9}{}\n", r,
                       x.routed_experts, gb(x.embeddings), gb(x.attention), gb(x.dense), gb(x.router_and_norms),
                       gb(x.shared), gb(x.routed), gb(x.weights()), gb(x.kv_cache), gb(x.buffers), gb(x.process),
                       gb(x.total()),
                       std::find(p.over_limit.begin(), p.over_limit.end(), static_cast<int>(r)) != p.over_limit.end()
                           ? "  exceeds --mem-per-rank"
                           : "");
  }
  if (p.request.mem_per_rank > 0) {
    const std::string limit =
        p.request.mem_per_rank_text.empty()
            ? fmt::format("{} bytes", p.request.mem_per_rank)
            : fmt::format("--mem-per-rank {} ({} bytes)", p.request.mem_per_rank_text, p.request.mem_per_rank);
    out += p.over_limit.empty() ? fmt::format("every rank fits in {}\n", limit)
                                : fmt::format("{} of {} ranks exceed {}\n", p.over_limit.size(), p.ranks.size(), limit);
  }
  return out;
}

std::string format_plan_json(const MemoryPlan& p) {
  nlohmann::json ranks = nlohmann::json::array();
  for (size_t r = 0; r < p.ranks.size(); ++r) {
    const RankPlan& x = p.ranks[r];
    ranks.push_back({{"rank", r},
                     {"routed_experts", x.routed_experts},
                     {"embeddings_bytes", x.embeddings},
                     {"attention_bytes", x.attention},
                     {"dense_bytes", x.dense},
                     {"router_and_norms_bytes", x.router_and_norms},
                     {"shared_bytes", x.shared},
                     {"routed_bytes", x.routed},
                     {"weights_bytes", x.weights()},
                     {"kv_cache_bytes", x.kv_cache},
                     {"buffers_bytes", x.buffers},
                     {"process_bytes", x.process},
                     {"total_bytes", x.total()}});
  }
  const nlohmann::json j{{"model", p.request.model_dir.string()},
                         {"model_type", p.config.model_type},
                         {"fp8", p.config.fp8.has_value()},
                         {"sizes_from", p.sizes_from},
                         {"world_size", p.request.world_size},
                         {"coordinators", p.request.coordinators},
                         {"placement", p.placement_name},
                         {"batch_size", p.request.batch_size},
                         {"context_tokens", p.request.context_tokens},
                         {"kv_bytes_per_token", p.kv_bytes_per_token},
                         {"kv_window_bytes_per_request", p.kv_window_bytes},
                         {"parameters", p.parameters},
                         {"routed_parameters", p.routed_parameters},
                         {"model_bytes", p.model_bytes},
                         {"mem_per_rank_bytes", p.request.mem_per_rank},
                         {"ranks_over_limit", p.over_limit},
                         {"ranks", ranks}};
  return j.dump(2) + "\n";
}

}  // namespace mote
