// `mote serve`: options in, a serve job (runtime/serve.h) out.
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>

#include "mote/cli/commands.h"
#include "mote/cli/logging.h"
#include "mote/cli/options.h"
#include "mote/expert_parallel/expert_exchange.h"
#include "mote/expert_parallel/mpi_session.h"
#include "mote/runtime/serve.h"
#include "mote/server/server.h"
#include "mote/util/error.h"

namespace mote {

int run_serve(const std::vector<std::string>& args, const std::string& command_line, MpiSession& mpi) {
  JobOptions job;
  job.command_line = command_line;
  ServerOptions s;
  std::string max_body = "8MiB";
  po::options_description options("Server options");
  // clang-format off
  options.add_options()
      ("host", po::value(&s.host)->default_value(s.host), "address to listen on (0.0.0.0: every interface; there is no TLS)")
      ("port", po::value(&s.port)->default_value(s.port), "TCP port; 0 picks a free one (the log names it)")
      ("api-key", po::value(&s.api_key), "require 'Authorization: Bearer KEY' on every route but /health")
      ("served-model-name", po::value(&s.served_model_name), "the model's name in the API (default: the model directory's name)")
      ("max-queue", po::value(&s.max_queue)->default_value(s.max_queue),
       "requests that may wait for a slot; more are refused with 429")
      ("max-body", po::value(&max_body)->default_value(max_body), "largest request body (413 past it), e.g. 8MiB")
      ("max-connections", po::value(&s.max_connections)->default_value(s.max_connections),
       "connections held at once (one thread each); more clients wait in the listen backlog until one closes")
      ("timeout", po::value(&s.timeout_seconds)->default_value(s.timeout_seconds),
       "seconds a client may take to send a request or to read a response (an idle connection closes after 5 s)")
      ("shutdown-timeout", po::value(&s.shutdown_seconds)->default_value(s.shutdown_seconds, "30"),
       "after SIGTERM or SIGINT, seconds the running requests get to finish before they are cancelled")
      ("stream-interval", po::value(&s.stream_interval_ms)->default_value(s.stream_interval_ms),
       "milliseconds a stream waits after a write before the next, gathering the tokens between (0: every token "
       "at once; the first token is never held)")
      ("record", po::value(&job.out),
       "append every request served to this HDF5 profile (docs/hdf5-format.md), written at shutdown; until then "
       "requests are kept in FILE.checkpoint/ within 2 s of finishing")
      ("resume", po::bool_switch(&job.resume),
       "continue the --record of a server that did not shut down (its FILE.checkpoint/)");
  // clang-format on
  // The job's options that a server has: the model, its generation
  // defaults, masks and how it spreads over the ranks.
  const std::set<std::string> shared = {
      "model",        "chat-template", "max-new-tokens", "temperature",         "top-p",
      "seed",         "ignore-eos",    "batch-size",     "max-step-tokens",     "threads",
      "coordinators", "placement",     "placement-file", "coordinator-experts", "mask",
      "wire-dtype",   "weights",       "log-level"};
  po::options_description model_options(
      "Model and generation options (as for 'mote generate'; a request's own fields win)");
  const po::options_description every_job_option = job_options(job);
  for (const auto& option : every_job_option.options()) {
    if (shared.count(option->long_name()) != 0) model_options.add(option);
  }
  po::options_description all;
  all.add(options).add(model_options);
  const ParsedOptions parsed = parse_options(args, all);
  if (parsed.help) {
    if (mpi.rank() == 0) {
      std::cout << "Usage: mote serve [--model DIR] [--port 8080] [--mask NAME=FILE ...] [options]\n"
                   "       mpirun -n N mote serve ...   (or launch/mote-run -n N serve ...)\n\n"
                   "An OpenAI-compatible HTTP server (docs/serve.md): POST /v1/chat/completions and /v1/completions\n"
                   "(streamed with \"stream\": true), GET /v1/models, /health and /metrics, POST /tokenize and\n"
                   "/detokenize. A request picks a mask set named with --mask by its \"mask\" field (\"none\" runs\n"
                   "unsteered) and gets its expert counts back with \"record\": true; requests of different masks\n"
                   "share batches. Greedy requests give exactly what 'mote generate' gives for the same prompt and\n"
                   "mask, whatever else runs. Rank 0 answers HTTP; the routed experts are spread over the ranks as\n"
                   "in a job. SIGTERM or SIGINT stops taking requests, lets the running ones finish (at most\n"
                   "--shutdown-timeout seconds) and exits 0. Binds 127.0.0.1 unless told otherwise.\n\n"
                << options << "\n"
                << model_options
                << "  --config FILE                         job file (INI) with any of the options above\n";
    }
    return 0;
  }
  job.config_file = parsed.config_file;
  job.gen.stop_at_eos = !parsed.values["ignore-eos"].as<bool>();
  s.max_body_bytes = static_cast<size_t>(parse_byte_size(max_body, "--max-body"));
  if (s.served_model_name.empty()) {
    // The model directory's own name, as clients would write it.
    const std::filesystem::path dir = std::filesystem::path(job.model_dir).lexically_normal();
    s.served_model_name = (dir.has_filename() ? dir : dir.parent_path()).filename().string();
  }
  validate(s);
  validate_generation(job);
  if (job.resume && job.out.empty()) fail("--resume continues a --record: give --record FILE");
  parse_wire_dtype(job.wire_dtype);
  parse_weight_memory(job.weights);
  setup_logging(job.log_level, mpi.rank());
  std::optional<Server> server;
  if (mpi.rank() == 0) server.emplace(s);
  return run_serve(job, mpi, server ? &*server : nullptr);
}

}  // namespace mote
