// `mote generate` and `mote profile`: options in, a job (runtime/job.h) out.
#include <iostream>

#include "mote/cli/commands.h"
#include "mote/cli/logging.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/io/ini_file.h"
#include "mote/model/mask_file.h"
#include "mote/runtime/job.h"
#include "mote/util/error.h"

namespace mote {

po::options_description job_options(JobOptions& job) {
  po::options_description o("Options (also accepted as 'key = value' lines of a --config job file)");
  // clang-format off
  o.add_options()
      ("model", input_file(&job.model_dir, "DIR")->default_value(default_model_dir()), "Hugging Face model directory")
      ("prompts", input_file(&job.prompts), "prompt file: JSONL requests or plain text, one per line")
      ("class-prompts", input_file(&job.class_prompts, "CLASS=FILE")->composing(),
       "CLASS=FILE: a plain-text file of prompts, one per line, all of class CLASS (repeatable; after --prompts)")
      ("chat-template", input_file(&job.chat_template),
       "Jinja chat template for conversations (default: the model's chat_template.jinja, else the chat_template of its "
       "tokenizer_config.json); a prompt line's own \"chat_template\" wins")
      ("out", output_file(&job.out), "HDF5 file to write (written aside, renamed when complete); --out \"\" writes none, over a job file's out")
      ("max-new-tokens", po::value(&job.gen.max_new_tokens)->default_value(64), "tokens to generate per request at most")
      ("temperature", po::value(&job.gen.sampling.temperature)->default_value(0.0f, "0"), "sampling temperature; 0 is greedy")
      ("top-p", po::value(&job.gen.sampling.top_p)->default_value(1.0f, "1"), "nucleus sampling: keep this much probability mass")
      ("seed", po::value(&job.gen.seed)->default_value(0), "random seed for sampling (each request has its own stream)")
      ("save-logits", po::value(&job.save_logits)->implicit_value("all")->default_value("none"),
       "store logits: all (the bare flag: every position fed) or last (the last prompt position only, where a metric such as "
       "a refusal's opening tokens reads them)")
      ("score-tokens", po::value(&job.score_tokens),
       "LIST: keep, per request, the log-probabilities of these vocabulary tokens (or #ID, comma-separated) at the first answer "
       "position (/requests/N/scores)")
      ("trace", po::bool_switch(&job.gen.trace), "store routed experts and gate weights of every position fed")
      ("no-request-counts", po::bool_switch(),
       "leave each request's expert counts out of the file (class totals are kept): for jobs of very many requests; a stopped "
       "job then cannot be resumed")
      ("ignore-eos", po::bool_switch(), "keep generating after an end-of-sequence token")
      ("batch-size", po::value(&job.gen.batch_size)->default_value(8), "requests decoded together")
      ("max-step-tokens", po::value(&job.gen.max_step_tokens)->default_value(2048), "prompt tokens fed per step at most")
      ("threads", po::value(&job.threads)->default_value(0),
       "compute threads per rank; 0 uses OMP_NUM_THREADS, else the host's cores shared among the job's ranks on it")
      ("coordinators", po::value<std::string>()->default_value("all")->notifier([&job](const std::string& k) {
         job.coordinators = parse_coordinators(k);
       }),
       "K or all: ranks 0..K-1 each run attention, routing and sampling for their share of the requests (handed out as "
       "they free up); every rank serves its routed experts to all of them. all (every rank) is fastest; fewer "
       "coordinators need less memory, as only they hold the non-expert weights and KV caches")
      ("placement", po::value(&job.placement)->default_value("contiguous"),
       "how routed experts are spread over ranks: contiguous (blocks of experts) or round-robin")
      ("placement-file", input_file(&job.placement_file),
       "JSON file {\"owner\": [[rank per expert] per MoE layer]}; overrides --placement")
      ("coordinator-experts", po::value(&job.coordinator_experts)->default_value(true, "true"),
       "whether the coordinators also hold routed experts")
      ("mask", input_file(&job.masks, "[NAME=]FILE")->composing(),
       "MoTE mask file (docs/steering.md): FILE applies to every request without a \"mask\" field; NAME=FILE "
       "defines a mask set that requests pick with \"mask\": \"NAME\" (repeatable)")
      ("checkpoint-every", po::value(&job.checkpoint_every)->default_value(0),
       "with --out: save finished requests to OUT.checkpoint/ every N requests (0: only when stopped by SIGTERM or SIGINT)")
      ("resume", po::bool_switch(&job.resume),
       "continue the same job from OUT.checkpoint/ after a crash or a stop; the final file equals an uninterrupted run's")
      ("resume-from", input_file(&job.resume_from, "DIR"),
       "DIR: continue the job from the checkpoint directory DIR (for example OUT.checkpoint on a full disk); its parts are "
       "copied to this --out's checkpoint first")
      ("wire-dtype", po::value(&job.wire_dtype)->default_value("f32"),
       "precision of hidden states sent to and from expert ranks: f32 or bf16 (rounded the same way on one rank)")
      ("weights", po::value(&job.weights)->default_value("map"),
       "map: read the weights from the memory-mapped files (the page cache, one copy per node); copy: copy the ones "
       "this rank holds into its own memory at load (one copy per rank; faster where mapped file pages are slow to "
       "reread, as on some virtual machines; docs/performance.md)")
      ("log-level", po::value(&job.log_level)->default_value("info"), "trace, debug, info, warn, error or off");
  // clang-format on
  return o;
}

po::options_description job_file_mask_keys() { return mask_file_options(); }

void check_job_file_mask(const ParsedOptions& parsed) {
  if (parsed.config_file.empty() || find_ini_line(parsed.config_file, "mask") == 0) return;
  const po::options_description keys = mask_file_options();
  for (const auto& option : keys.options()) {
    if (parsed.values.count(option->long_name()) > 0) {
      fail("{}:{}: the job file has both 'mask =' and a [mote] section; keep one of them", parsed.config_file,
           find_ini_line(parsed.config_file, "mask"));
    }
  }
}

namespace {

void print_usage(const po::options_description& options, bool profile) {
  const char* name = profile ? "profile" : "generate";
  std::cout << "Usage: mote " << name << " --prompts FILE [options]\n"
            << "       mpirun -n N mote " << name << " ...   (or launch/mote-run -n N " << name << " ...)\n\n";
  if (profile) {
    std::cout << "An fTRI profiling job: runs prompt sets built to elicit a behaviour and others that do not, and\n"
                 "counts which routed experts fire, per class (the prompt file's \"class\", or one file per class\n"
                 "with --class-prompts) and phase (prompt or generated tokens), per request and in total, into\n"
                 "--out (docs/ftri.md, docs/hdf5-format.md). Rank the experts afterwards with 'mote rank'.\n"
                 "Under MPI the routed experts are spread over the ranks (--placement) and ranks 0..K-1 run\n"
                 "the requests (--coordinators K, by default every rank); the counts are bit-identical for any\n"
                 "number of ranks and K.\n\n";
  } else {
    std::cout << "Generates a continuation of every prompt with the model and prints it. With --out, also\n"
                 "writes an HDF5 file with the tokens and expert counts of each request (docs/hdf5-format.md).\n"
                 "Under MPI, ranks 0..K-1 (--coordinators K, by default every rank) run attention, routing and\n"
                 "sampling for their share of the requests and the routed experts are spread over the ranks\n"
                 "(--placement);\n"
                 "results are bit-identical for any number of ranks and coordinators (docs/distributed.md).\n\n";
  }
  std::cout
      << "Prompt files hold one request per line, JSONL or plain text:\n"
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

}  // namespace

int run_generate(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi, bool profile) {
  JobOptions job;
  job.profile = profile;
  job.command_line = command_line;
  const auto options = job_options(job);
  // A job file's [mote] section is its mask: accepted there, not on the command line.
  const po::options_description mask_keys = job_file_mask_keys();
  const ParsedOptions parsed = parse_options(args, options, nullptr, &mask_keys);
  if (parsed.help) {
    if (mpi.rank() == 0) print_usage(options, profile);
    return 0;
  }
  job.config_file = parsed.config_file;
  job.gen.stop_at_eos = !parsed.values["ignore-eos"].as<bool>();
  job.request_counts = !parsed.values["no-request-counts"].as<bool>();
  check_job_file_mask(parsed);
  validate(job);
  parse_wire_dtype(job.wire_dtype);
  parse_weight_memory(job.weights);
  setup_logging(job.log_level, mpi.rank());
  return run_job(job, mpi);
}

}  // namespace mote
