// `mote generate`: prompts in, text out (stdout) and an HDF5 file with
// tokens, optional logits and routing traces per request.
#include <cereal/archives/binary.hpp>
#include <mpi.h>
#include <omp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cmath>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "mote/cli/commands.h"
#include "mote/cli/logging.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/expert_parallel/placement.h"
#include "mote/io/counters_output.h"
#include "mote/io/json_file.h"
#include "mote/io/mask_file.h"
#include "mote/io/mask_output.h"
#include "mote/io/output_file.h"
#include "mote/io/prompt_file.h"
#include "mote/io/request_output.h"
#include "mote/model/moe_transformer.h"
#include "mote/model/loaded_model.h"
#include "mote/runtime/generator.h"
#include "mote/runtime/checkpoint.h"
#include "mote/runtime/progress.h"
#include "mote/runtime/prompt_encoding.h"
#include "mote/util/error.h"
#include "mote/util/memory.h"
#include "mote/util/parallel.h"
#include "mote/util/stop_signal.h"

namespace mote {
namespace {

struct GenerateJob {
  std::string model_dir;
  std::string prompts;
  std::string chat_template;
  std::string out;
  GenerationOptions gen;
  int threads = 0;
  std::string log_level;
  std::string placement = "contiguous";
  std::string placement_file;
  bool coordinator_experts = true;
  std::string wire_dtype = "f32";
  std::vector<std::string> masks;
  std::vector<std::string> class_prompts;
  bool profile = false;
  int checkpoint_every = 0;
  bool resume = false;
  std::string resume_from;

  std::string summary() const {
    return fmt::format(
        "{} job: model {}, prompts {}{}, out {}\n"
        "  max_new_tokens {}, temperature {}, top_p {}, seed {}, stop at EOS {}, save logits {}, trace {}\n"
        "  batch size {}, max step tokens {}, threads per rank {}\n"
        "  placement {}, coordinator holds experts {}, wire dtype {}",
        profile ? "profile" : "generate", model_dir, prompts.empty() ? "-" : prompts,
        class_prompts.empty() ? "" : fmt::format(" + {} class files", class_prompts.size()), out.empty() ? "(none)" : out, gen.max_new_tokens, gen.sampling.temperature, gen.sampling.top_p,
        gen.seed, gen.stop_at_eos, gen.save_logits, gen.trace, gen.batch_size, gen.max_step_tokens, threads,
        placement_file.empty() ? placement : "file " + placement_file, coordinator_experts, wire_dtype);
  }
};

po::options_description generate_options(GenerateJob& job) {
  po::options_description o("Options (also accepted as 'key = value' lines of a --config job file)");
  o.add_options()
      ("model", po::value(&job.model_dir)->default_value(default_model_dir()), "Hugging Face model directory")
      ("prompts", po::value(&job.prompts), "prompt file: JSONL requests or plain text, one per line")
      ("class-prompts", po::value(&job.class_prompts)->composing(),
       "CLASS=FILE: a plain-text file of prompts, one per line, all of class CLASS (repeatable; after --prompts)")
      ("chat-template", po::value(&job.chat_template),
       "Jinja chat template for conversations (default: the model's chat_template.jinja, else the chat_template of its "
       "tokenizer_config.json); a prompt line's own \"chat_template\" wins")
      ("out", po::value(&job.out), "HDF5 file to write (written aside, renamed when complete)")
      ("max-new-tokens", po::value(&job.gen.max_new_tokens)->default_value(64), "tokens to generate per request at most")
      ("temperature", po::value(&job.gen.sampling.temperature)->default_value(0.0f, "0"), "sampling temperature; 0 is greedy")
      ("top-p", po::value(&job.gen.sampling.top_p)->default_value(1.0f, "1"), "nucleus sampling: keep this much probability mass")
      ("seed", po::value(&job.gen.seed)->default_value(0), "random seed for sampling (each request has its own stream)")
      ("save-logits", po::bool_switch(&job.gen.save_logits), "store the logits of every position fed")
      ("trace", po::bool_switch(&job.gen.trace), "store routed experts and gate weights of every position fed")
      ("ignore-eos", po::bool_switch(), "keep generating after an end-of-sequence token")
      ("batch-size", po::value(&job.gen.batch_size)->default_value(8), "requests decoded together")
      ("max-step-tokens", po::value(&job.gen.max_step_tokens)->default_value(2048), "prompt tokens fed per step at most")
      ("threads", po::value(&job.threads)->default_value(0),
       "compute threads per rank; 0 uses OMP_NUM_THREADS, else the host's cores shared among the job's ranks on it")
      ("placement", po::value(&job.placement)->default_value("contiguous"),
       "how routed experts are spread over ranks: contiguous (blocks of experts) or round-robin")
      ("placement-file", po::value(&job.placement_file),
       "JSON file {\"owner\": [[rank per expert] per MoE layer]}; overrides --placement")
      ("coordinator-experts", po::value(&job.coordinator_experts)->default_value(true, "true"),
       "whether rank 0 (the coordinator) also holds routed experts")
      ("mask", po::value(&job.masks)->composing(),
       "MoTE mask file (docs/steering.md): FILE applies to every request without a \"mask\" field; NAME=FILE "
       "defines a mask set that requests pick with \"mask\": \"NAME\" (repeatable)")
      ("checkpoint-every", po::value(&job.checkpoint_every)->default_value(0),
       "with --out: save finished requests to OUT.checkpoint/ every N requests (0: only when stopped by SIGTERM or SIGINT)")
      ("resume", po::bool_switch(&job.resume),
       "continue the same job from OUT.checkpoint/ after a crash or a stop; the final file equals an uninterrupted run's")
      ("resume-from", po::value(&job.resume_from),
       "DIR: continue the job from the checkpoint directory DIR (for example OUT.checkpoint on a full disk); its parts are "
       "copied to this --out's checkpoint first")
      ("wire-dtype", po::value(&job.wire_dtype)->default_value("f32"),
       "precision of hidden states sent to and from expert ranks: f32 or bf16 (rounded the same way on one rank)")
      ("log-level", po::value(&job.log_level)->default_value("info"), "trace, debug, info, warn, error or off");
  return o;
}

void print_usage(const po::options_description& options, bool profile) {
  const char* name = profile ? "profile" : "generate";
  std::cout << "Usage: mote " << name << " --prompts FILE [options]\n"
            << "       mpirun -n N mote " << name << " ...   (or launch/mote-run -n N " << name << " ...)\n\n";
  if (profile) {
    std::cout << "An fTRI profiling job: runs prompt sets built to elicit a behaviour and others that do not, and\n"
                 "counts which routed experts fire, per class (the prompt file's \"class\", or one file per class\n"
                 "with --class-prompts) and phase (prompt or generated tokens), per request and in total, into\n"
                 "--out (docs/ftri.md, docs/hdf5-format.md). Rank the experts afterwards with 'mote rank'.\n"
                 "Under MPI the routed experts are spread over the ranks (--placement); the counts are\n"
                 "bit-identical for any number of ranks.\n\n";
  } else {
    std::cout << "Generates a continuation of every prompt with the model and prints it. With --out, also\n"
                 "writes an HDF5 file with the tokens and expert counts of each request (docs/hdf5-format.md).\n"
                 "Under MPI, rank 0 runs attention, routing and sampling and the routed experts are spread\n"
                 "over the ranks (--placement); results are bit-identical for any number of ranks.\n\n";
  }
  std::cout << "Prompt files hold one request per line, JSONL or plain text:\n"
               "  {\"id\": \"q1\", \"class\": \"neutral\", \"prompt\": \"raw text\"}\n"
               "  {\"id\": \"q2\", \"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}\n"
               "Raw prompts get the tokenizer's special tokens (BOS) unless \"add_special_tokens\": false;\n"
               "messages are rendered with the model's chat template (docs/chat-templates.md), which writes its own\n"
               "BOS; a conversation may carry \"add_generation_prompt\", \"chat_template\" and the template's variables.\n"
               "Supported models (config.json model_type): deepseek_v3 (DeepSeek-V3, DeepSeek-R1; BF16, F16, F32\n"
               "or FP8 block-scaled weights), deepseek_v2 (DeepSeek-V2, V2-Lite), qwen3_moe (Qwen3-MoE), mixtral\n"
               "(Mixtral) and olmoe (OLMoE). Exit status: 0 done, 1 error, 128 + N stopped by signal N with a checkpoint.\n\n"
            << options << "  --config FILE                         job file (INI) with any of the options above\n"
            << "  -h [ --help ]                         this text\n";
}

// FNV-1a: a stable hash of what decides a job's results, to refuse resuming
// a checkpoint with different prompts, masks, model or options. World size
// and placement are left out: they do not change the results.
// What `mote generate` echoes of a conversation: its last message's text.
std::string last_message(const nlohmann::ordered_json& chat) {
  const auto& last = chat["messages"].back();
  if (last.contains("content") && last["content"].is_string()) return last["content"].get<std::string>();
  return last.dump();
}

uint64_t fnv1a(uint64_t h, std::string_view text) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// What makes a model directory this model: its small files' contents and
// every tensor's name, dtype, shape and place in its file.
std::string model_fingerprint(const std::filesystem::path& dir, const WeightStore& store) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char* name : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(dir / name, ec)) h = fnv1a(fnv1a(h, name), read_text_file(dir / name));
  }
  for (const auto& [name, view] : store.all()) {
    h = fnv1a(h, fmt::format("{}|{}|{}|{}|{}|{}\n", name, dtype_name(view->dtype), view->shape_string(), view->offset, view->nbytes,
                             view->file->filename().string()));
  }
  return fmt::format("{:016x}", h);
}

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
    if (name == "job-fingerprint.txt" || (name.starts_with("part-") && (name.ends_with(".h5") || name.ends_with(".h5.sum")))) {
      std::filesystem::copy_file(entry.path(), to / name, ec);
      if (ec) fail("--resume-from {}: cannot copy {} to {}: {}", from.string(), name, to.string(), ec.message());
      parts += name.ends_with(".h5");
    }
  }
  spdlog::info("--resume-from {}: copied {} checkpoint parts to {}", from.string(), parts, to.string());
}

void validate(const GenerateJob& job) {
  const auto& g = job.gen;
  if (g.max_new_tokens < 0) fail("--max-new-tokens {} must not be negative", g.max_new_tokens);
  if (!std::isfinite(g.sampling.temperature) || g.sampling.temperature < 0) fail("--temperature {} must be 0 or positive", g.sampling.temperature);
  if (!(g.sampling.top_p > 0.0f && g.sampling.top_p <= 1.0f)) fail("--top-p {} must be in (0, 1]", g.sampling.top_p);
  if (g.batch_size < 1) fail("--batch-size {} must be at least 1", g.batch_size);
  if (g.max_step_tokens < 1) fail("--max-step-tokens {} must be at least 1", g.max_step_tokens);
  if (job.threads < 0) fail("--threads {} must not be negative", job.threads);
  if (job.checkpoint_every < 0) fail("--checkpoint-every {} must not be negative", job.checkpoint_every);
  if ((job.checkpoint_every > 0 || job.resume || !job.resume_from.empty()) && job.out.empty()) {
    fail("--checkpoint-every, --resume and --resume-from need --out");
  }
}

}  // namespace

void print_generation_options(std::ostream& out) {
  GenerateJob job;
  out << generate_options(job);
}

int run_generate(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi, bool profile,
                 const JobFinish& finish) {
  GenerateJob job;
  job.profile = profile;
  const auto options = generate_options(job);
  // A job file's [mote] section is its mask: accepted there, not on the command line.
  po::options_description mask_keys;
  for (const char* key : {"off", "on", "gain", "include"}) mask_keys.add_options()((std::string("mote.") + key).c_str(), po::value<std::vector<std::string>>()->composing());
  for (const char* key : {"layer-index", "off-policy", "on-policy", "shared-gain"}) mask_keys.add_options()((std::string("mote.") + key).c_str(), po::value<std::string>());
  const ParsedOptions parsed = parse_options(args, options, nullptr, &mask_keys);
  if (parsed.help) {
    if (mpi.rank() == 0) print_usage(options, profile);
    return 0;
  }
  if (job.prompts.empty() && job.class_prompts.empty()) fail("give --prompts FILE or --class-prompts CLASS=FILE");
  job.gen.stop_at_eos = !parsed.values["ignore-eos"].as<bool>();
  validate(job);
  const WireDType wire_dtype = parse_wire_dtype(job.wire_dtype);
  setup_logging(job.log_level, mpi.rank());
  if (job.threads == 0 && std::getenv("OMP_NUM_THREADS") == nullptr && mpi.local_ranks() > 1) {
    // Several ranks on this host and nobody said how many threads: share
    // the host's cores between them rather than each taking all.
    job.threads = std::max(1, omp_get_num_procs() / mpi.local_ranks());
  }
  if (job.threads > 0) {
    const int cores = omp_get_num_procs();
    if (job.threads > cores) {
      spdlog::warn("--threads {} is more than the {} cores this rank can use; using {}", job.threads, cores, cores);
      job.threads = cores;
    }
    omp_set_num_threads(job.threads);  // loading's loops
    set_parallel_threads(job.threads);
  }
  job.threads = parallel_threads();
  const bool coordinator = mpi.rank() == 0;

  // Open the output first: an unwritable path fails before any work. It
  // must not be one of the job's inputs (checked again once the mask
  // files' includes are known).
  std::optional<OutputFile> out;
  std::vector<std::filesystem::path> inputs{job.prompts, parsed.config_file, job.placement_file, job.chat_template};
  for (const std::string& cp : job.class_prompts) inputs.push_back(cp.substr(cp.find('=') + 1));
  if (coordinator && parsed.values.count("out") > 0) {
    out.emplace(job.out);
    out->refuse_inputs(inputs, job.model_dir);
  }

  // Every rank reads the config; each maps only the experts it owns.
  const ModelConfig config = read_model_dir_config(job.model_dir);
  const int moe_layers = static_cast<int>(config.moe_layers().size());
  const Placement placement =
      job.placement_file.empty()
          ? Placement::by_rule(job.placement, moe_layers, config.n_routed_experts, mpi.size(), job.coordinator_experts)
          : Placement::from_file(job.placement_file, moe_layers, config.n_routed_experts, mpi.size(), job.coordinator_experts);
  const int rank = mpi.rank();
  // The chat template is read (and parsed) before any weights are mapped: a
  // broken one is found in seconds, not after a model is loaded.
  std::map<std::string, std::optional<ChatTemplate>> chat_templates;
  if (coordinator) {
    std::optional<std::filesystem::path> file;
    if (!job.chat_template.empty()) file = job.chat_template;
    chat_templates[""] = ChatTemplate::load(job.model_dir, file);
  }
  const auto model_files = load_model(job.model_dir, [&](int l, int e) { return placement.owner(l, e) == rank; }, coordinator);
  if (coordinator) {
    spdlog::info("{}", job.summary());
    spdlog::info("model {}", config.summary());
    spdlog::info("{} ranks; routed experts per rank: {}", mpi.size(), [&] {
      std::string list;
      for (int r = 0; r < mpi.size(); ++r) list += (r ? ", " : "") + std::to_string(placement.count_on(r));
      return list;
    }());
  }
  mpi.job_started = true;

  // Mask sets: read on rank 0, broadcast once to every rank (bitsets and
  // gains). Id 0 is "unsteered"; requests refer to the others by name.
  std::vector<ExpertMask> masks(1);
  masks[0].name = "none";
  const ExpertMask* default_mask = nullptr;
  if (coordinator) {
    const auto add = [&](ExpertMask mask) {
      for (const auto& m : masks) {
        if (m.name == mask.name) fail("mask set '{}' is defined twice", mask.name);
      }
      mask.id = static_cast<int32_t>(masks.size());
      masks.push_back(std::move(mask));
    };
    std::vector<std::filesystem::path> files;
    if (!parsed.config_file.empty()) {
      if (auto m = read_job_file_mask(parsed.config_file, config, "default", &files)) {
        if (find_ini_line(parsed.config_file, "mask") > 0) {
          fail("{}:{}: the job file has both 'mask =' and a [mote] section; keep one of them", parsed.config_file,
               find_ini_line(parsed.config_file, "mask"));
        }
        add(std::move(*m));
      }
      inputs.insert(inputs.end(), files.begin(), files.end());
    }
    for (const std::string& spec : job.masks) {
      const auto eq = spec.find('=');
      if (eq == std::string::npos) {
        // The command line's unnamed mask replaces a job file's [mote] section.
        std::erase_if(masks, [](const ExpertMask& m) { return m.name == "default"; });
        add(read_mask_file(spec, config, "default", &files));
      } else {
        const std::string name = spec.substr(0, eq);
        if (name.empty() || name == "none" || name == "default") fail("--mask {}: '{}' cannot name a mask set", spec, name);
        add(read_mask_file(spec.substr(eq + 1), config, name, &files));
      }
      inputs.insert(inputs.end(), files.begin(), files.end());
    }
    for (size_t i = 0; i < masks.size(); ++i) {
      masks[i].id = static_cast<int32_t>(i);
      if (i > 0 && masks[i].switches_nothing()) {
        spdlog::warn("mask set '{}' switches nothing: no expert off or on, no gain, shared gain 1 (recorded in /masks/{})", masks[i].name,
                     masks[i].name);
      }
    }
    if (out) out->refuse_inputs(inputs, job.model_dir);
  }
  {
    std::string blob;
    if (coordinator) {
      std::ostringstream os;
      cereal::BinaryOutputArchive archive(os);
      archive(masks);
      blob = std::move(os).str();
    }
    uint64_t size = blob.size();
    MPI_Bcast(&size, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    blob.resize(size);
    MPI_Bcast(blob.data(), static_cast<int>(size), MPI_BYTE, 0, MPI_COMM_WORLD);
    if (!coordinator) {
      std::istringstream is(blob);
      cereal::BinaryInputArchive archive(is);
      archive(masks);
    }
  }
  for (const auto& m : masks) {
    if (m.name == "default") default_mask = &m;
  }
  if (coordinator && masks.size() > 1) {
    for (const auto& m : masks) {
      if (m.id == 0) continue;
      spdlog::info("mask set '{}': {} off ({}), {} on ({}), shared gain {}", m.name, m.count_off(), off_policy_name(m.off_policy),
                   [&] {
                     int n = 0;
                     for (int l = 0; l < m.moe_layers; ++l) n += m.count_on(l);
                     return n;
                   }(),
                   on_policy_name(m.on_policy), m.shared_gain);
    }
  }

  // The coordinator reads the prompts; the class count sizes everyone's counters.
  std::vector<PromptSpec> specs;
  std::vector<std::string> classes;
  std::vector<EncodedPrompt> encoded;
  std::vector<GenerationRequest> requests;
  std::vector<const ExpertMask*> request_masks;
  std::vector<std::string> request_errors;  // non-empty: the request cannot run and is recorded as failed
  std::optional<Checkpoint> checkpoint;
  FinishedRequests finished;
  if (coordinator) {
    std::vector<std::string> spec_files;
    if (!job.prompts.empty()) {
      specs = read_prompt_file(job.prompts);
      spec_files.assign(specs.size(), job.prompts);
    }
    for (const std::string& cp : job.class_prompts) {
      const auto eq = cp.find('=');
      if (eq == std::string::npos || eq == 0) fail("--class-prompts {}: expected CLASS=FILE", cp);
      const std::string cls = cp.substr(0, eq), file = cp.substr(eq + 1);
      auto more = read_prompt_file(file);
      for (auto& spec : more) {
        if (!spec.prompt) fail("{}:{}: --class-prompts files hold plain-text prompts, one per line", file, spec.line);
        spec.cls = cls;
        spec.id = cls + ":" + spec.id;
        for (const auto& earlier : specs) {
          if (earlier.id == spec.id) fail("{}:{}: duplicate id '{}'", file, spec.line, spec.id);
        }
        specs.push_back(std::move(spec));
        spec_files.push_back(file);
      }
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      const PromptSpec& spec = specs[i];
      const std::string where = fmt::format("{}:{} (id '{}')", spec_files[i], spec.line, spec.id);
      const ExpertMask* mask = default_mask;
      if (!spec.mask.empty()) {
        const auto it = std::find_if(masks.begin(), masks.end(), [&](const ExpertMask& m) { return m.name == spec.mask; });
        if (it == masks.end()) fail("{}: names mask set '{}', which no --mask NAME=FILE defines", where, spec.mask);
        mask = it->id == 0 ? nullptr : &*it;
      }
      request_masks.push_back(mask);
      const ChatTemplate* chat = nullptr;
      if (spec.chat) {
        auto it = chat_templates.find(spec.chat_template);
        if (it == chat_templates.end()) {
          it = chat_templates.emplace(spec.chat_template, ChatTemplate::load(job.model_dir, std::filesystem::path(spec.chat_template))).first;
        }
        if (it->second) {
          chat = &*it->second;
          check_chat_variables(*chat, spec, where);
        }
      }
      // A prompt that cannot run fails alone; the job runs the others.
      std::string error = spec.error;
      EncodedPrompt prompt;
      if (error.empty()) {
        try {
          prompt = encode_prompt(model_files->tokenizer, chat, spec);
        } catch (const jinja::RaisedError& e) {
          error = fmt::format("the chat template refuses the conversation: {}", e.message());
        } catch (const jinja::TemplateError&) {
          throw;  // a broken template (or one past its bounds) fails the job, not each request
        } catch (const Error& e) {
          error = e.what();
        }
      }
      if (error.empty() && prompt.tokens.empty()) error = "the prompt encodes to no tokens";
      if (error.empty() && prompt.tokens.size() > static_cast<size_t>(config.max_position_embeddings)) {
        error = fmt::format("the prompt has {} tokens but the model takes at most {} positions (max_position_embeddings)",
                            prompt.tokens.size(), config.max_position_embeddings);
      }
      if (!error.empty()) spdlog::warn("{}: request skipped: {}", where, error);
      if (prompt.double_bos) {
        spdlog::warn("{}: the prompt text starts with BOS and another BOS was added; set \"add_special_tokens\": false", where);
      }
      if (!error.empty() && prompt.text.empty() && spec.prompt) prompt.text = *spec.prompt;
      request_errors.push_back(std::move(error));
      encoded.push_back(std::move(prompt));
      auto cls = std::find(classes.begin(), classes.end(), spec.cls);
      if (cls == classes.end()) cls = classes.insert(classes.end(), spec.cls);
      requests.push_back({encoded.back().tokens, request_masks.back(), i, static_cast<int16_t>(cls - classes.begin())});
    }
    if (classes.size() > 32767) fail("more than 32767 classes");
    if (out) {
      uint64_t h = 0xcbf29ce484222325ull;
      for (const auto& e : encoded) h = fnv1a(fnv1a(h, e.text), "\x1f");
      for (const auto& spec : specs) h = fnv1a(fnv1a(fnv1a(h, spec.id), spec.cls), spec.mask);
      for (const auto& m : masks) h = fnv1a(fnv1a(h, m.name), m.description);
      h = fnv1a(h, fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", std::filesystem::absolute(job.model_dir).string(), job.gen.max_new_tokens,
                               job.gen.sampling.temperature, job.gen.sampling.top_p, job.gen.seed, job.gen.stop_at_eos,
                               job.gen.save_logits, job.gen.trace, job.wire_dtype));
      // The model itself, not just its path: a directory updated in place
      // between a crash and the resume is another model.
      h = fnv1a(h, model_fingerprint(job.model_dir, model_files->store));
      const std::filesystem::path dir = job.out + ".checkpoint";
      std::error_code ec;
      if (!job.resume_from.empty()) {
        adopt_checkpoint(job.resume_from, dir);
        job.resume = true;
      }
      if (!job.resume && std::filesystem::exists(dir, ec)) {
        fail("{} holds a checkpoint of an earlier run: continue it with --resume, or remove it", dir.string());
      }
      checkpoint.emplace(dir, fmt::format("{:016x}\n", h), job.checkpoint_every);
      if (job.resume) {
        finished = checkpoint->load();
        for (const auto& [index, result] : finished) {
          if (index >= requests.size() || !request_errors[index].empty()) fail("{}: holds request {}, which this job does not run", dir.string(), index);
        }
        if (checkpoint->parts() == 0) spdlog::warn("--resume: {} holds no checkpoint; starting from the beginning", dir.string());
        spdlog::info("resuming: {} of {} requests finished before", finished.size(), requests.size());
      }
    }
    spdlog::info("{} requests in {} classes", requests.size(), classes.size());
  }
  int n_classes = static_cast<int>(classes.size());
  MPI_Bcast(&n_classes, 1, MPI_INT, 0, MPI_COMM_WORLD);

  const WireFormat wire{config.hidden_size, config.num_experts_per_tok, wire_dtype};
  ExpertCounters processed(n_classes, moe_layers, config.n_routed_experts);
  ExpertWorker worker(model_files->weights, config, placement, rank, wire, &processed, &masks);
  ExpertCounters reduced(n_classes, moe_layers, config.n_routed_experts);
  // Per-rank memory, gathered on rank 0 at the end: peak RSS and the
  // resident part of the weight files (falls as 1/N for expert weights).
  std::vector<uint64_t> rank_memory(2 * static_cast<size_t>(mpi.size()));
  const auto gather_memory = [&] {
    const uint64_t mine[2] = {peak_rss_bytes(), mapped_rss_bytes(model_files->store.paths())};
    MPI_Gather(mine, 2, MPI_UINT64_T, rank_memory.data(), 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  };
  const auto reduce_counters = [&] {
    MPI_Reduce(processed.tokens.data(), reduced.tokens.data(), static_cast<int>(processed.tokens.size()), MPI_UINT64_T, MPI_SUM, 0,
               MPI_COMM_WORLD);
    MPI_Reduce(processed.gate_sum.data(), reduced.gate_sum.data(), static_cast<int>(processed.gate_sum.size()), MPI_DOUBLE, MPI_SUM, 0,
               MPI_COMM_WORLD);
  };

  // How the job ended, decided by the coordinator: 0 complete, else the
  // stop signal that ended it early. Every rank exits with the same code.
  int stopped_by = 0;
  const auto exit_code = [&] { return stopped_by == 0 ? 0 : 128 + stopped_by; };
  if (!coordinator) {
    ShardServer server(MPI_COMM_WORLD, wire, worker);
    const int64_t served = server.run();
    MPI_Bcast(&stopped_by, 1, MPI_INT, 0, MPI_COMM_WORLD);
    reduce_counters();
    gather_memory();
    spdlog::debug("served {} MoE-layer exchanges", served);
    return exit_code();
  }

  MpiExpertExecutor executor(MPI_COMM_WORLD, placement, wire, worker);
  MoeTransformer model(config, model_files->weights, &executor);
  ExpertCounters routed(n_classes, moe_layers, config.n_routed_experts);
  job.gen.routing_counts = &routed;
  job.gen.sample_vocab = model_files->tokenizer.vocab_size();
  job.gen.stop_requested = [&] { return stop_signal() != 0 || executor.peer_stop_signal() != 0; };
  Generator generator(model, model_files->eos_ids, job.gen);
  std::optional<H5Handle> requests_group;
  if (out) requests_group.emplace(h5_create_group(out->root(), "requests"));
  // Finished requests go into checkpoint parts when asked for, else straight
  // into the result file (which becomes a part if the job is stopped).
  const bool write_parts = checkpoint && job.checkpoint_every > 0;

  // Class totals are summed from the per-request counts in request order, so
  // they do not depend on batching, world size or interruptions.
  ExpertCounters class_totals(n_classes, moe_layers, config.n_routed_experts);
  std::vector<std::string> texts(specs.size());
  std::vector<uint64_t> class_tokens(static_cast<size_t>(n_classes) * kPhaseCount, 0);

  // Print in prompt-file order while requests finish in any order.
  std::map<size_t, GenerationResult> waiting;
  size_t next_to_print = 0;
  const auto& tokenizer = model_files->tokenizer;
  // Requests finished before a resume are not run again; they wait, in
  // order, with the new ones for printing and the totals.
  std::vector<GenerationRequest> todo;
  std::vector<size_t> todo_index;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (finished.count(i) == 0 && request_errors[i].empty()) {
      todo.push_back(requests[i]);
      todo_index.push_back(i);
    }
  }
  ExpertCounters run_totals(n_classes, moe_layers, config.n_routed_experts);  // what this run computed
  std::vector<bool> ran(requests.size(), false);
  for (size_t i : todo_index) ran[i] = true;
  const size_t finished_before = finished.size();
  for (auto& [index, result] : finished) waiting.emplace(index, std::move(result));
  finished.clear();

  const auto record_of = [&](size_t index, const GenerationResult& result) {
    const std::string mask_name = request_masks[index] != nullptr ? request_masks[index]->name : "";
    return RequestRecord{index, specs[index].id, specs[index].cls, mask_name, encoded[index].text, tokenizer.decode(result.generated),
                         result.error.empty() ? request_errors[index] : result.error, &encoded[index].tokens, &result,
                         config.vocab_size, model.moe_layer_count(),
                         model.top_k(), config.n_routed_experts};
  };
  bool stdout_failed = false;
  const auto show = [&](size_t index, const std::string& body) {
    if (stdout_failed) return;
    const PromptSpec& s = specs[index];
    std::cout << "### " << s.id << " (" << s.cls << ")\n"
              << "> " << (s.prompt ? *s.prompt : last_message(*s.chat)) << "\n"
              << body << "\n\n" << std::flush;
    if (!std::cout) {
      // The reader went away (SIGPIPE) or the disk behind a redirect is
      // full: stop cleanly, keeping what finished, as for SIGTERM.
      stdout_failed = true;
      const int err = errno;
      spdlog::error("standard output: write failed ({}); stopping the job", std::strerror(err));
      request_stop(SIGPIPE);
    }
  };
  const auto print_ready = [&] {
    for (;;) {
      if (next_to_print < specs.size() && !request_errors[next_to_print].empty()) {
        show(next_to_print, "[request failed: " + request_errors[next_to_print] + "]");
        ++next_to_print;
        continue;
      }
      if (waiting.empty() || waiting.begin()->first != next_to_print) return;
      const auto& done = waiting.begin()->second;
      const int cls = requests[next_to_print].cls;
      const size_t per_class = done.expert_counts.size();
      for (size_t i = 0; i < per_class; ++i) {
        class_totals.tokens[cls * per_class + i] += done.expert_counts[i];
        class_totals.gate_sum[cls * per_class + i] += done.expert_gate_sum[i];
        if (ran[next_to_print]) {
          run_totals.tokens[cls * per_class + i] += done.expert_counts[i];
          run_totals.gate_sum[cls * per_class + i] += done.expert_gate_sum[i];
        }
      }
      class_tokens[static_cast<size_t>(cls) * kPhaseCount + kPromptPhase] += static_cast<uint64_t>(done.prompt_positions);
      class_tokens[static_cast<size_t>(cls) * kPhaseCount + kGeneratedPhase] += static_cast<uint64_t>(done.generated_positions);
      std::vector<int32_t> shown = done.generated;
      if (done.stop == StopReason::Eos) shown.pop_back();
      texts[next_to_print] = tokenizer.decode(shown);
      show(next_to_print, done.error.empty() ? texts[next_to_print] : "[request failed: " + done.error + "]");
      waiting.erase(waiting.begin());
      ++next_to_print;
    }
  };

  Progress progress(todo.size());
  size_t finished_now = 0;
  std::vector<std::string> run_errors(specs.size());  // requests that failed while running
  const bool completed = generator.run(todo, [&](size_t todo_position, GenerationResult&& result) {
    const size_t index = todo_index[todo_position];
    if (!result.error.empty()) {
      run_errors[index] = result.error;
      spdlog::warn("{}:{} (id '{}'): request failed: {}", specs[index].line > 0 ? job.prompts : "-", specs[index].line, specs[index].id,
                   result.error);
    }
    progress.request_done(result.generated.size());
    ++finished_now;
    if (write_parts) {
      write_request(checkpoint->requests_group(), record_of(index, result));
      checkpoint->request_written();
    } else if (out) {
      write_request(requests_group->id(), record_of(index, result));
    }
    result.logits.clear();  // printing and totals need only the tokens and counts
    result.route_experts.clear();
    result.route_weights.clear();
    waiting.emplace(index, std::move(result));
    print_ready();
  });
  progress.finish();
  executor.shutdown();
  if (!completed) stopped_by = stop_signal() != 0 ? stop_signal() : executor.peer_stop_signal();
  MPI_Bcast(&stopped_by, 1, MPI_INT, 0, MPI_COMM_WORLD);
  reduce_counters();
  gather_memory();
  if (const auto diff = reduced.first_difference(routed)) {
    // What the experts processed, summed over ranks, must equal what the
    // router decided, to the last bit.
    fail("expert counters reduced from the ranks disagree with the coordinator's routing record: {}", *diff);
  }

  if (stopped_by != 0) {
    // Stopped: keep what finished (in-flight requests run again on resume).
    const size_t saved = finished_before + finished_now;
    if (!checkpoint) {
      spdlog::warn("{}: stopped after {} of {} requests; nothing was saved (no --out)", signal_name(stopped_by), saved, requests.size());
      return exit_code();
    }
    if (write_parts) {
      checkpoint->flush();
    } else if (finished_now > 0) {
      requests_group->reset();
      checkpoint->adopt(*out);
    }
    spdlog::warn("{}: stopped after {} of {} requests, saved in {}; run the same command with --resume to finish",
                 signal_name(stopped_by), saved, requests.size(), checkpoint->dir().string());
    return exit_code();
  }
  print_ready();  // requests all finished before a resume print here

  // The per-request counts add up to the same totals: token counts exactly,
  // gate sums up to summation order.
  for (size_t i = 0; i < reduced.tokens.size(); ++i) {
    const double a = reduced.gate_sum[i], b = run_totals.gate_sum[i];
    if (reduced.tokens[i] != run_totals.tokens[i] || std::abs(a - b) > 1e-9 * std::max(1.0, std::abs(a))) {
      fail("per-request expert counts do not add up to the ranks' counters at entry {}: {} / {} vs {} / {}", i,
           run_totals.tokens[i], b, reduced.tokens[i], a);
    }
  }

  const GenerationStats& st = generator.stats();
  const auto rate = [](double amount, double seconds) { return amount / std::max(seconds, 1e-9); };
  const double compute_seconds = st.prefill_seconds + st.decode_seconds;
  const double gigabytes = static_cast<double>(st.weight_bytes) / 1e9;
  spdlog::info("prefill: {} tokens in {:.3f} s ({:.1f} tokens/s); decode: {} tokens in {:.3f} s ({:.1f} tokens/s)",
               st.prompt_tokens, st.prefill_seconds, rate(static_cast<double>(st.prompt_tokens), st.prefill_seconds),
               st.generated_tokens, st.decode_seconds, rate(static_cast<double>(st.generated_tokens), st.decode_seconds));
  spdlog::info("weights streamed on rank 0: {:.2f} GB in {:.3f} s of compute ({:.2f} GB/s)", gigabytes, compute_seconds,
               rate(gigabytes, compute_seconds));
  std::vector<uint64_t> peak_rss, weights_resident;
  std::string memory_line;
  for (int r = 0; r < mpi.size(); ++r) {
    peak_rss.push_back(rank_memory[2 * static_cast<size_t>(r)]);
    weights_resident.push_back(rank_memory[2 * static_cast<size_t>(r) + 1]);
    memory_line += fmt::format("{}rank {}: {:.1f} MB peak, {:.1f} MB of weights resident", r ? "; " : "", r,
                               static_cast<double>(peak_rss.back()) / 1e6, static_cast<double>(weights_resident.back()) / 1e6);
  }
  spdlog::info("memory: {}", memory_line);
  std::vector<std::string> all_errors = request_errors;
  for (size_t i = 0; i < run_errors.size(); ++i) {
    if (!run_errors[i].empty()) all_errors[i] = run_errors[i];
  }
  const auto failed = static_cast<size_t>(std::count_if(all_errors.begin(), all_errors.end(), [](const auto& e) { return !e.empty(); }));
  if (failed > 0) {
    spdlog::warn("{} of {} requests failed (see the warnings above{})", failed, requests.size(),
                 out ? ", and the 'error' attribute in /requests" : "");
  }

  if (finish) finish(out ? out->root() : -1, specs, texts, all_errors);
  if (out) {
    if (write_parts) checkpoint->flush();
    if (checkpoint->parts() > 0) {
      // The result holds the parts' requests plus class totals and masks.
      out->ensure_room(checkpoint->bytes() + checkpoint->bytes() / 8 + (1u << 20));
      checkpoint->copy_into(requests_group->id());
    }
    GenerationResult none;
    none.stop = StopReason::Error;
    none.expert_counts.assign(static_cast<size_t>(kPhaseCount) * moe_layers * config.n_routed_experts, 0);
    none.expert_gate_sum.assign(none.expert_counts.size(), 0.0);
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!request_errors[i].empty()) write_request(requests_group->id(), record_of(i, none));
    }
    // Complete or not at all: every request of the job has its group.
    H5G_info_t info{};
    if (H5Gget_info(requests_group->id(), &info) < 0 || info.nlinks != specs.size()) {
      fail("{}: the result holds {} of the job's {} requests; it is not moved into place (the checkpoint is kept)", job.out,
           info.nlinks, specs.size());
    }
    // Requests finish in any order; the result lists them in prompt-file
    // order (a group that tracks creation order, links moved in index order).
    requests_group->reset();
    if (H5Lmove(out->root(), "requests", out->root(), "requests_unordered", H5P_DEFAULT, H5P_DEFAULT) < 0) {
      fail("{}: cannot reorder /requests", job.out);
    }
    {
      H5Handle ordered = h5_create_ordered_group(out->root(), "requests");
      H5Handle unordered(H5Gopen2(out->root(), "requests_unordered", H5P_DEFAULT), H5Gclose);
      for (size_t i = 0; i < specs.size(); ++i) {
        const std::string name = std::to_string(i);
        if (H5Lmove(unordered.id(), name.c_str(), ordered.id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0) {
          fail("{}: cannot move request {} into /requests", job.out, i);
        }
      }
    }
    H5Ldelete(out->root(), "requests_unordered", H5P_DEFAULT);
    const hid_t root = out->root();
    h5_attr_string(root, "format", "mote");
    h5_attr_int(root, "format_version", 1);
    h5_attr_string(root, "job", job.profile ? "profile" : "generate");
    h5_attr_string(root, "mote_version", MOTE_VERSION);
    h5_attr_string(root, "command_line", command_line);
    h5_attr_string(root, "model", job.model_dir);
    h5_attr_string(root, "model_type", config.model_type);
    h5_attr_string(root, "model_config_fnv1a",
                   fmt::format("{:016x}", fnv1a(0xcbf29ce484222325ull, read_text_file(std::filesystem::path(job.model_dir) / "config.json"))));
    h5_attr_int(root, "world_size", mpi.size());
    h5_attr_string(root, "placement", placement.name());
    h5_attr_string(root, "placement_table", placement.table());
    h5_attr_string(root, "wire_dtype", job.wire_dtype);
    h5_attr_int(root, "seed", static_cast<int64_t>(job.gen.seed));
    h5_attr_double(root, "temperature", job.gen.sampling.temperature);
    h5_attr_double(root, "top_p", job.gen.sampling.top_p);
    h5_attr_int(root, "max_new_tokens", job.gen.max_new_tokens);
    h5_attr_int(root, "stop_at_eos", job.gen.stop_at_eos ? 1 : 0);
    h5_attr_int(root, "request_count", static_cast<int64_t>(specs.size()));
    h5_attr_int(root, "failed_request_count", static_cast<int64_t>(failed));
    write_counters(root, class_totals, classes, config.moe_layers());
    h5_dataset(root, "tokens", {static_cast<hsize_t>(n_classes), kPhaseCount}, class_tokens.data());
    h5_axes(root, "tokens", "class,phase");
    h5_attr_string(root, "axes_note",
                   "a moe_layer axis counts MoE layers only, in order (0 = the first MoE layer); /moe_layer_decoder_index gives "
                   "each one's decoder-layer index; class and phase axes follow /classes and /phases");
    write_masks(root, masks);
    H5Handle ranks = h5_create_group(root, "ranks");
    h5_dataset(ranks.id(), "peak_rss_bytes", {peak_rss.size()}, peak_rss.data());
    h5_dataset(ranks.id(), "weights_resident_bytes", {weights_resident.size()}, weights_resident.data());
    h5_dataset(ranks.id(), "routed_experts", {static_cast<hsize_t>(mpi.size())}, [&] {
      std::vector<int32_t> counts;
      for (int r = 0; r < mpi.size(); ++r) counts.push_back(placement.count_on(r));
      return counts;
    }().data());
    ranks.reset();
    out->commit();
    checkpoint->remove();
    spdlog::info("wrote {}", job.out);
  }
  return 0;
}

}  // namespace mote
