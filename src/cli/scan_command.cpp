// `mote scan`: options in, a knockout scan (runtime/scan.h) out.
#include <iostream>

#include "mote/cli/commands.h"
#include "mote/cli/logging.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/runtime/scan.h"
#include "mote/util/error.h"

namespace mote {

int run_scan(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  ScanOptions scan;
  scan.job.command_line = command_line;
  po::options_description options("Scan options");
  // clang-format off
  options.add_options()
      ("class", po::value(&scan.cls), "scan only the prompts of this class (the prompt file's \"class\"); default: all")
      ("metric", po::value(&scan.metric)->default_value("token-prob"),
       "token-prob: probability of --tokens at the first answer position; continuation-logprob: log-probability of "
       "--continuation after the prompt, teacher-forced")
      ("tokens", po::value(&scan.tokens), "token-prob: vocabulary tokens or #ID, comma-separated (e.g. I,S)")
      ("continuation", po::value(&scan.continuation), "continuation-logprob: the text after the prompt")
      ("candidates", input_file(&scan.candidates, "all|FILE")->default_value("all"),
       "experts to switch off one at a time: all, or a mask file whose 'off' entries are the candidates (e.g. from 'mote rank')")
      ("policy", po::value(&scan.policy)->default_value("reroute"), "what off means for the knockouts: reroute, drop or zero")
      ("search", po::value(&scan.search)->default_value("full"),
       "full: every candidate alone; blocks: whole blocks first, then the experts of the best blocks; both: blocks and the "
       "full scan, reporting whether they agree")
      ("block-size", po::value(&scan.block_size)->default_value(0), "experts per block; 0: the router's groups, else 8")
      ("top-blocks", po::value(&scan.top_blocks)->default_value(0), "blocks searched expert by expert; 0: 2 x max(--top, 4)")
      ("greedy", po::value(&scan.greedy)->default_value(0),
       "N rounds of greedy selection: add the expert whose removal lowers the metric most given those already off")
      ("greedy-pool", po::value(&scan.greedy_pool)->default_value(16), "greedy selection chooses among the best N of the single scan")
      ("top", po::value(&scan.top)->default_value(0), "experts with the largest effect to write to --mask-out")
      ("mask-out", output_file(&scan.mask_out), "mask file switching the --top N experts off, for 'mote generate' and 'mote experiment'")
      ("no-prefix-reuse", po::bool_switch(), "recompute every knockout from the first layer (for measuring what reuse saves)");
  // clang-format on
  po::options_description all;
  all.add(options).add(job_options(scan.job));
  const po::options_description mask_keys = job_file_mask_keys();
  const ParsedOptions parsed = parse_options(args, all, nullptr, &mask_keys);
  if (parsed.help) {
    if (mpi.rank() == 0) {
      std::cout
          << "Usage: mote scan --prompts FILE [--class NAME] --metric token-prob --tokens LIST [--candidates "
             "all|FILE]\n"
             "                 [--top N --mask-out MASK.ini] --out SCAN.h5\n"
             "       mpirun -n N mote scan ...   (or launch/mote-run -n N scan ...)\n\n"
             "A causal knockout scan: runs the prompts once per candidate expert with that expert switched off\n"
             "and once without, and records how a behaviour metric read from the logits at the first answer\n"
             "position changes: the effect of an expert is the metric without it off minus with it off, averaged\n"
             "over prompts. Knockouts of many experts share batches (one mask per request), and a knockout at\n"
             "MoE layer m resumes from the baseline run's state there. --mask FILE sets a base condition for all.\n"
             "Writes /scan to --out (docs/hdf5-format.md), prints the best experts, and with --top N --mask-out\n"
             "writes them as a mask file. 'mote rank --by effect SCAN.h5' ranks a scan like a profile.\n"
             "Results are bit-identical for any number of ranks, coordinators and placement (docs/ftri.md).\n\n"
          << options
          << "\nJob options (as for 'mote generate'; --max-new-tokens, sampling, --save-logits, --score-tokens, "
             "--trace and\n"
             "--resume-from do not apply; --checkpoint-every N saves finished requests to OUT.checkpoint/, --resume "
             "continues):\n"
          << job_options(scan.job)
          << "  --config FILE                         job file (INI) with any of the options above\n";
    }
    return 0;
  }
  for (const char* key : {"max-new-tokens", "temperature", "top-p", "seed", "save-logits", "score-tokens", "trace",
                          "ignore-eos", "resume-from"}) {
    if (parsed.values.count(key) > 0 && !parsed.values[key].defaulted())
      fail("--{} does not apply to a scan: it generates nothing", key);
  }
  check_job_file_mask(parsed);
  scan.job.config_file = parsed.config_file;
  scan.job.gen.max_new_tokens = 0;
  scan.prefix_reuse = !parsed.values["no-prefix-reuse"].as<bool>();
  validate(scan);
  parse_wire_dtype(scan.job.wire_dtype);
  parse_weight_memory(scan.job.weights);
  setup_logging(scan.job.log_level, mpi.rank());
  return run_scan(scan, mpi);
}

}  // namespace mote
