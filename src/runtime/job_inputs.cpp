// A job's inputs: the model as this rank holds it, the mask sets, the
// requests, and the checkpoint of an earlier run.
#include <spdlog/spdlog.h>
#include <cereal/archives/binary.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>
#include <unordered_set>

#include "job_steps.h"
#include "mote/expert_parallel/mpi_calls.h"
#include "mote/io/json_file.h"
#include "mote/jinja/template.h"
#include "mote/model/mask_file.h"
#include "mote/tokenizer/pretokenizer.h"
#include "mote/util/error.h"
#include "mote/util/hash.h"
#include "mote/util/stop_signal.h"
#include "mote/util/utf8.h"

namespace mote {

// What makes a model directory this model: its small files' contents,
// every tensor's name, dtype, shape and place in its file, and a sample of
// every tensor's bytes (64 at its start and 64 at its middle, read from the
// files whether or not this rank maps them), so that weights rewritten in
// place under the same header are another model. Two small reads per
// tensor: a few seconds for DeepSeek-R1's 91,000 tensors from a cold disk.
std::string model_fingerprint(const std::filesystem::path& dir, const WeightStore& store) {
  uint64_t h = kFnv1aBasis;
  for (const char* name :
       {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(dir / name, ec)) h = fnv1a(fnv1a(h, name), read_text_file(dir / name));
  }
  struct Open {
    int fd;
    uint64_t data_start;  // tensor offsets count from here, after the header
  };
  std::map<std::filesystem::path, Open> files;
  struct Closer {
    std::map<std::filesystem::path, Open>& files;
    ~Closer() {
      for (const auto& [path, f] : files) ::close(f.fd);
    }
  } closer{files};
  constexpr uint64_t kSample = 64;
  char sample[kSample];
  for (const auto& [name, view] : store.all()) {
    stop_point("loading the model");
    h = fnv1a(h, fmt::format("{}|{}|{}|{}|{}|{}\n", name, dtype_name(view->dtype), view->shape_string(), view->offset,
                             view->nbytes, view->file->filename().string()));
    auto it = files.find(*view->file);
    if (it == files.end()) {
      const int fd = ::open(view->file->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd < 0) fail("{}: cannot open to fingerprint the weights: {}", view->file->string(), std::strerror(errno));
      uint64_t header = 0;  // little-endian, as the header was validated
      if (::pread(fd, &header, 8, 0) != 8) {
        ::close(fd);
        fail("{}: cannot read the header length to fingerprint the weights", view->file->string());
      }
      it = files.emplace(*view->file, Open{fd, 8 + header}).first;
    }
    for (const uint64_t at : {view->offset, view->offset + view->nbytes / 2}) {
      const uint64_t n = std::min(kSample, view->offset + view->nbytes - at);
      if (n == 0) continue;
      if (::pread(it->second.fd, sample, n, static_cast<off_t>(it->second.data_start + at)) !=
          static_cast<ssize_t>(n)) {
        fail("{}: cannot read tensor '{}' to fingerprint the weights (cut short?)", view->file->string(), name);
      }
      h = fnv1a(h, std::string_view(sample, n));
    }
  }
  return fmt::format("{:016x}", h);
}

namespace {

// --resume-from: the parts of a checkpoint elsewhere (another disk) are
// copied into this job's checkpoint directory, which must hold none yet.
void adopt_checkpoint(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(from / "job-fingerprint.txt", ec)) {
    fail("--resume-from {}: not a mote checkpoint directory (it has no job-fingerprint.txt)", from.string());
  }
  if (std::filesystem::exists(to, ec)) {
    if (std::filesystem::equivalent(from, to, ec)) return;
    fail("--resume-from {}: {} already exists; resume with --resume instead, or remove it", from.string(), to.string());
  }
  std::filesystem::create_directories(to, ec);
  if (ec) fail("{}: cannot create the checkpoint directory: {}", to.string(), ec.message());
  size_t parts = 0;
  for (const auto& entry : std::filesystem::directory_iterator(from)) {
    const std::string name = entry.path().filename().string();
    if (name == "job-fingerprint.txt" ||
        (name.starts_with("part-") && (name.ends_with(".h5") || name.ends_with(".h5.sum")))) {
      std::filesystem::copy_file(entry.path(), to / name, ec);
      if (ec) fail("--resume-from {}: cannot copy {} to {}: {}", from.string(), name, to.string(), ec.message());
      parts += name.ends_with(".h5");
    }
  }
  spdlog::info("--resume-from {}: copied {} checkpoint parts to {}", from.string(), parts, to.string());
}

}  // namespace

JobModel load_job_model(const JobOptions& options, int rank, int world_size) {
  JobModel m;
  // Every rank reads the config; each maps only the experts it owns.
  m.config = read_model_dir_config(options.model_dir);
  const int moe_layers = m.moe_layers(), experts = m.config.n_routed_experts;
  m.placement.emplace(options.placement_file.empty()
                          ? Placement::by_rule(options.placement, moe_layers, experts, world_size,
                                               options.coordinator_experts, options.coordinators)
                          : Placement::from_file(options.placement_file, moe_layers, experts, world_size,
                                                 options.coordinator_experts, options.coordinators));
  const bool coordinator = rank < options.coordinators;
  if (rank == 0) {
    std::optional<std::filesystem::path> file;
    if (!options.chat_template.empty()) file = options.chat_template;
    m.chat_templates[""] = ChatTemplate::load(options.model_dir, file);
  }
  const Placement& placement = *m.placement;
  m.loaded = load_model(
      options.model_dir, [&](int l, int e) { return placement.owner(l, e) == rank; }, coordinator,
      parse_weight_memory(options.weights));
  return m;
}

void log_job_start(const JobOptions& options, const JobModel& model, int world_size) {
  spdlog::info("{}", options.summary());
  spdlog::info("model {}", model.config.summary());
  std::string list;
  for (int r = 0; r < world_size; ++r) list += (r ? ", " : "") + std::to_string(model.placement->count_on(r));
  spdlog::info("{} ranks, {} coordinator{}; routed experts per rank: {}", world_size, options.coordinators,
               options.coordinators == 1 ? "" : "s", list);
}

MaskSets read_mask_sets(const JobOptions& options, const ModelConfig& config, bool root) {
  MaskSets m;
  m.sets.resize(1);
  m.sets[0].name = "none";
  if (root) {
    const auto add = [&](ExpertMask mask) {
      for (const auto& other : m.sets) {
        if (other.name == mask.name) fail("mask set '{}' is defined twice", mask.name);
      }
      m.sets.push_back(std::move(mask));
    };
    if (!options.config_file.empty()) {
      if (auto mask = read_job_file_mask(options.config_file, config, "default")) add(std::move(*mask));
    }
    for (const ExpertMask& mask : options.built_masks) add(mask);
    for (const std::string& spec : options.masks) {
      const auto eq = spec.find('=');
      if (eq == std::string::npos) {
        // The command line's unnamed mask replaces a job file's [mote] section.
        std::erase_if(m.sets, [](const ExpertMask& mask) { return mask.name == "default"; });
        add(read_mask_file(spec, config, "default"));
      } else {
        const std::string name = spec.substr(0, eq);
        if (name.empty() || name == "none" || name == "default")
          fail("--mask {}: '{}' cannot name a mask set", spec, name);
        add(read_mask_file(spec.substr(eq + 1), config, name));
      }
    }
    for (size_t i = 0; i < m.sets.size(); ++i) {
      m.sets[i].id = static_cast<int32_t>(i);
      if (i > 0 && m.sets[i].switches_nothing()) {
        spdlog::warn(
            "mask set '{}' switches nothing: no expert off or on, no gain, shared gain 1 (recorded in /masks/{})",
            m.sets[i].name, m.sets[i].name);
      }
    }
  }
  // Bitsets and gains, broadcast once.
  std::string blob;
  if (root) {
    std::ostringstream os;
    cereal::BinaryOutputArchive archive(os);
    archive(m.sets);
    blob = std::move(os).str();
  }
  broadcast(blob, "the mask sets");
  if (!root) {
    std::istringstream is(blob);
    cereal::BinaryInputArchive archive(is);
    archive(m.sets);
  }
  for (const auto& mask : m.sets) {
    if (mask.name == "default") m.default_mask = &mask;
  }
  if (root && m.sets.size() > 1) {
    for (const auto& mask : m.sets) {
      if (mask.id == 0) continue;
      spdlog::info("mask set '{}': {} off ({}), {} on ({}), shared gain {}", mask.name, mask.count_off(),
                   off_policy_name(mask.off_policy), mask.count_on(), on_policy_name(mask.on_policy), mask.shared_gain);
    }
  }
  return m;
}

std::vector<PromptSpec> read_prompt_specs(const JobOptions& options) {
  std::vector<PromptSpec> specs;
  if (!options.prompts.empty()) specs = read_prompt_file(options.prompts);
  std::unordered_set<std::string> ids;
  for (const auto& spec : specs) ids.insert(spec.id);
  for (const std::string& cp : options.class_prompts) {
    const auto eq = cp.find('=');
    if (eq == std::string::npos || eq == 0) fail("--class-prompts {}: expected CLASS=FILE", cp);
    const std::string cls = cp.substr(0, eq), file = cp.substr(eq + 1);
    auto more = read_prompt_file(file);
    for (auto& spec : more) {
      if (!spec.prompt) fail("{}:{}: --class-prompts files hold plain-text prompts, one per line", file, spec.line);
      spec.cls = cls;
      spec.id = cls + ":" + spec.id;
      if (!ids.insert(spec.id).second) fail("{}:{}: duplicate id '{}'", file, spec.line, spec.id);
      specs.push_back(std::move(spec));
    }
  }
  return specs;
}

void open_checkpoint(JobOptions& options, const JobModel& model, const JobRequests& requests, const MaskSets& masks,
                     std::optional<Checkpoint>& checkpoint, FinishedRequests& finished) {
  if (options.out.empty()) return;
  // A stable hash of what decides the job's results, to refuse resuming a
  // checkpoint with different prompts, masks, model or options. World
  // size, coordinators and placement are left out: they do not change the results.
  uint64_t h = requests.content_hash();
  for (const auto& m : masks.sets) h = fnv1a(fnv1a(h, m.name), m.description);
  const auto& g = options.gen;
  h = fnv1a(h, fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", std::filesystem::absolute(options.model_dir).string(),
                           g.max_new_tokens, g.sampling.temperature, g.sampling.top_p, g.seed, g.stop_at_eos,
                           g.save_logits, g.trace, options.wire_dtype));
  h = fnv1a(h, fmt::format("|{}|{}|{}", g.save_last_logits, options.score_tokens, options.request_counts));
  // The model itself, not just its path: a directory updated in place
  // between a crash and the resume is another model.
  h = fnv1a(h, model_fingerprint(options.model_dir, model.loaded->store));
  options.fingerprint = fmt::format("{:016x}", h);
  const std::filesystem::path dir = options.out + ".checkpoint";
  std::error_code ec;
  if (options.resume && options.resume_from.empty() && !std::filesystem::exists(dir, ec) &&
      std::filesystem::is_regular_file(options.out, ec)) {
    // Resubmitted after it finished: the result of this very job is there.
    h5_silence_errors();
    H5Handle done(H5Fopen(options.out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    std::string written;
    if (done.id() >= 0 && h5_read_string_attr(done.id(), "job_fingerprint", written) &&
        written == options.fingerprint) {
      options.already_finished = true;
      return;
    }
  }
  if (!options.resume_from.empty()) {
    adopt_checkpoint(options.resume_from, dir);
    options.resume = true;
  }
  if (!options.resume && std::filesystem::exists(dir, ec)) {
    fail("{} holds a checkpoint of an earlier run: continue it with --resume, or remove it", dir.string());
  }
  checkpoint.emplace(dir, fmt::format("{:016x}\n", h), options.checkpoint_every);
  if (options.resume) {
    finished = checkpoint->load();
    for (const auto& [index, result] : finished) {
      if (index >= requests.size() || requests.failed(index))
        fail("{}: holds request {}, which this job does not run", dir.string(), index);
    }
    if (checkpoint->parts() == 0)
      spdlog::warn("--resume: {} holds no checkpoint; starting from the beginning", dir.string());
    spdlog::info("resuming: {} of {} requests finished before", finished.size(), requests.size());
  }
}

}  // namespace mote
